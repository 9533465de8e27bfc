"""Step-side methods: torch.optim.Optimizer subclasses sharing the primitives in ``_functional``."""
