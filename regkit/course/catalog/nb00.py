"""Notebook 00 (course overview): one small training run."""

from regkit.course.catalog import _common as c

STEM = "00_course_overview"
KNOBS = (c.DATASET, c.steps(), c.TRAIN_SIZE, c.ONE_SEED)
PROFILES = {
    "quick": {"dataset": "fashion_mnist_subset", "steps": 300, "train_size": 10_000, "batch_size": 128, "width": 16,
              "seeds": [0]},
    "full": {"dataset": "auto", "steps": 3_000, "train_size": 0, "batch_size": 128, "width": 32, "seeds": [0]},
}
