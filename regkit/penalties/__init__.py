"""Loss-side methods and two-pass wrappers (gradient-norm penalties, micro-batch penalties)."""

from regkit.penalties.grad_norm import GNP, SAM, gr_warmup, gradient_norm

__all__ = ["GNP", "SAM", "gr_warmup", "gradient_norm"]
