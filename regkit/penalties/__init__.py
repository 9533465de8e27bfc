"""Loss-side methods and two-pass wrappers (gradient-norm penalties, micro-batch penalties)."""

from regkit.penalties.grad_norm import GNP, SAM, gr_warmup, gradient_norm, update_gradient
from regkit.penalties.microbatch import (
    PENALTIES,
    MicroBatchStats,
    accumulate_microbatches,
    micro_batch_grad_norms,
    micro_grad_norm_hook,
    microbatch_grad_fn,
)

__all__ = [
    "GNP", "PENALTIES", "SAM", "MicroBatchStats", "accumulate_microbatches", "gr_warmup",
    "gradient_norm", "micro_batch_grad_norms",
    "micro_grad_norm_hook", "microbatch_grad_fn", "update_gradient",
]
