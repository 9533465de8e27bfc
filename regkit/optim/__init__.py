"""Step-side methods: torch.optim.Optimizer subclasses sharing the primitives in ``_functional``."""

from regkit.optim.adam import Adam, AdamW
from regkit.optim.graft import NGD, Graft, GraftingSchedule, gradient_magnitude
from regkit.optim.sgd import SGD, SGDW

__all__ = ["SGD", "SGDW", "Adam", "AdamW", "NGD", "Graft", "GraftingSchedule", "gradient_magnitude"]
