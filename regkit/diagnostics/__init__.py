"""Diagnostics: what the course measures on models and optimizers, never used by a training step.

``metrics`` (weight and gradient norms, effective step sizes, cosines), ``scale_invariance`` (the toy
objectives of notebook 02), ``rotation`` (per-neuron norms and angular updates, the rotational equilibrium)
and ``effective_decay`` (the per-coordinate decay rates of Adam + L2 vs AdamW). ``optim``, ``penalties``,
``models`` and ``data`` never import this package; ``regkit.train``'s logging hooks use ``metrics``.
"""
