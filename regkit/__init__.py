"""regkit: regularization in deep-learning optimizers."""
