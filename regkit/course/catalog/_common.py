"""Knobs that several notebooks share: one name, type and meaning everywhere."""

from regkit.course.catalog import Knob
from regkit.data.images import IMAGE_DATASETS

DATASET = Knob("dataset", str, 'image data; quick: the embedded "fashion_mnist_subset"', choices=IMAGE_DATASETS)
TRAIN_SIZE = Knob("train_size", int, "training images, 0 for all", minimum=0)
SEEDS = Knob("seeds", list, "seeds of every compared run, e.g. [0, 1, 2]", minimum=0)
ONE_SEED = Knob("seeds", list, "the seed, as a one-item list (sweep --seeds N runs [0] .. [N-1])", minimum=0, length=1)
DEVICE = Knob("device", str, '"auto", "cpu", "cuda", "cuda:1", "mps"; None: cuda, else mps, else cpu')
THREADS = Knob("threads", int, "torch CPU threads (None: torch's default)", minimum=1)


def steps(doc: str = "optimizer steps of every training run", minimum: int = 1) -> Knob:
    return Knob("steps", int, doc, minimum=minimum)


def grid(start: float, ratio: float, count: int) -> list[float]:
    """``count`` values ``start * ratio**k`` (a learning-rate or weight-decay grid)."""
    return [float(start * ratio**k) for k in range(count)]
