"""Step-side methods: torch.optim.Optimizer subclasses sharing the primitives in ``_functional``."""

from regkit.optim.graft import NGD, Graft, GraftingSchedule, gradient_magnitude

__all__ = ["NGD", "Graft", "GraftingSchedule", "gradient_magnitude"]
