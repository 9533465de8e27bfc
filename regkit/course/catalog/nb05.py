"""Notebook 05 (implicit regularization of SGD): small batch, large batch, penalties, grafting."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_BATCH
from regkit.penalties.microbatch import PENALTIES

STEM = "05_implicit_regularization_sgd"
KNOBS = (
    Knob("dataset", str, 'quick: "fashion_mnist_subset" (embedded); full: "cifar10" or "cifar100"',
         choices=c.DATASET.choices),
    c.steps("optimizer steps of every run (all runs take the same number, as in the paper)"),
    c.DEVICE, c.ONE_SEED, c.THREADS,
    Knob("batch_size", int, "the large batch (a multiple of every micro-batch size)", minimum=1),
    Knob("micro_batch_size", int, "micro-batch of the penalties and of the small-batch run", minimum=1),
    Knob("penalty", list, "the penalized large-batch runs", choices=PENALTIES),
    Knob("lam", dict, 'penalty weight per penalty, e.g. {"gn": 0.02}; None: the paper\'s', choices=PENALTIES,
         minimum=0),
)
PROFILES = {
    "quick": dict(dataset="fashion_mnist_subset", train_size=4096, test_size=2000, downsample=2, model="small_cnn",
                  width=8, augment=False, batch_size=128, micro_batch_size=16, steps=150, eval_every=25, probe=512,
                  device=None, seeds=[0], threads=1, penalty=list(PENALTIES), lam=None),
    "full": dict(dataset="cifar10", train_size=40_000, test_size=None, downsample=1, model="resnet18", width=64,
                 augment=True, batch_size=5120, micro_batch_size=128, steps=5000, eval_every=250, probe=5120,
                 device=None, seeds=[0], threads=None, penalty=list(PENALTIES), lam=None),
}
# The cpu profile (evidence/DESIGN.md "05"): sections 1-5 run as in quick on full Fashion-MNIST (one seed); the
# evidence section runs ``batch_design`` (small vs large batch at equal epochs, 3 seeds: evidence/05.json).
PROFILES["cpu"] = PROFILES["quick"] | {"dataset": "fashion_mnist", "device": "cpu", "batch_design": CPU_BATCH}
