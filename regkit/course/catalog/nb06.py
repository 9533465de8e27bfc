"""Notebook 06 (grokking): modular addition, six regularizers (rows of `regkit.course.grokking.PROFILES`)."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.grokking import METHODS
from regkit.course.grokking import PROFILES as RUNS

STEM = "06_grokking"
KNOBS = (
    Knob("methods", list, "names from regkit.course.grokking.METHODS", choices=tuple(METHODS)),
    Knob("seeds", list, "seeds of every method (split, initialization and batches)", minimum=0),
    c.steps("step budget of every run"),
    Knob("stop_after_grokking", bool, "end a run once train and validation accuracy reach 99%"),
    c.DEVICE, c.THREADS,
    Knob("p", int, "the modulus: the data are (a + b) mod p", minimum=2),
    Knob("train_fraction", float, "share of the p^2 pairs used for training", minimum=0),
    Knob("lr", float, "peak learning rate of every method", minimum=0),
    Knob("weight_decay", float, "decay of the AdamW methods (None: each one's own, 0.1 or 1.0)", minimum=0),
)
PROFILES = {
    name: {**row, "seeds": list(range(row["seeds"])), "device": None, "threads": 1 if name == "quick" else None,
           "weight_decay": None}
    for name, row in RUNS.items()
}
# The cpu profile's design (evidence/DESIGN.md "06"): the quick setting with a 3,000-step budget, the three
# methods of the claims and 5 seeds; the notebook packages each run's grokking delay (evidence/06.json).
PROFILES["cpu"] = PROFILES["quick"] | {"steps": 3000, "methods": ["adamw_wd1", "rescale_0.8", "cpr_l2"],
                                       "seeds": [0, 1, 2, 3, 4], "device": "cpu"}
