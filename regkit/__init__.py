"""regkit: regularization in deep-learning optimizers."""

from regkit.param_groups import param_groups

__all__ = ["param_groups"]
