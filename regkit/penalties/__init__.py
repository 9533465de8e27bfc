"""Loss-side methods and two-pass wrappers (gradient-norm penalties, micro-batch penalties)."""

from regkit.penalties.microbatch import (
    PENALTIES,
    MicroBatchStats,
    accumulate_microbatches,
    microbatch_grad_fn,
)

__all__ = ["PENALTIES", "MicroBatchStats", "accumulate_microbatches", "microbatch_grad_fn"]
