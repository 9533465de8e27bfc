"""Step-side methods: torch.optim.Optimizer subclasses sharing the tensor-list primitives of
`regkit.optim.functional`."""

from regkit.optim.adam import Adam, AdamW
from regkit.optim.adamp import SGDP, AdamP
from regkit.optim.cpr import AdamCPR
from regkit.optim.cpr_recorder import ConstraintRecorder
from regkit.optim.decay import AdamAdaDecay, AdamAWD
from regkit.optim.graft import NGD, Graft, GraftingSchedule, gradient_magnitude
from regkit.optim.grafted import Grafted
from regkit.optim.rescale import JointNormRescaler
from regkit.optim.sgd import SGD, SGDW
from regkit.optim.timescale import decay_timescale, weight_decay_for_timescale
from regkit.optim.with_cpr import with_cpr
from regkit.optim.with_projection import with_projection

__all__ = [
    "SGD",
    "SGDW",
    "Adam",
    "AdamW",
    "AdamP",
    "SGDP",
    "AdamCPR",
    "ConstraintRecorder",
    "AdamAWD",
    "AdamAdaDecay",
    "JointNormRescaler",
    "NGD",
    "Graft",
    "GraftingSchedule",
    "Grafted",
    "gradient_magnitude",
    "decay_timescale",
    "weight_decay_for_timescale",
    "with_cpr",
    "with_projection",
]
