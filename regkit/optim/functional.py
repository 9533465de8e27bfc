"""The tensor-list primitives of every regkit optimizer, as public API.

Each takes parallel lists of tensors (one entry per parameter) and runs one definition of its math on two
paths: ``foreach=True`` (one ``torch._foreach_*`` call per operation) or a for-loop reference (`each` is
that switch). Names ending in ``_`` update their first list in place. They are defined in
``regkit.optim._functional``, which the optimizers import; this module is the name to use outside the
optimizers (notebooks, your own updates). Example::

    from regkit.optim.functional import add_l2, decay_weights_
    d = add_l2(grads, params, 0.1, foreach=False)      # coupled L2: g + wd * w, in new tensors
    decay_weights_(params, lr=0.01, weight_decay=0.1, foreach=False)  # decoupled: w *= 1 - lr * wd
"""

from regkit.optim._functional import (
    adam_bias_corrections,
    adam_denominator,
    adam_moments_,
    adam_step_,
    add_l2,
    amsgrad_max_,
    cautious_decay_weights_,
    decay_weights_,
    decoupled_decay_,
    descent_grads,
    device_dtype_buckets,
    each,
    momentum_update_,
    nesterov_direction,
    schedule_corrected_decay,
)

__all__ = [
    "adam_bias_corrections",
    "adam_denominator",
    "adam_moments_",
    "adam_step_",
    "add_l2",
    "amsgrad_max_",
    "cautious_decay_weights_",
    "decay_weights_",
    "decoupled_decay_",
    "descent_grads",
    "device_dtype_buckets",
    "each",
    "momentum_update_",
    "nesterov_direction",
    "schedule_corrected_decay",
]
