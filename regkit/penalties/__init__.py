"""Loss-side methods and two-pass wrappers (gradient-norm penalties, micro-batch penalties)."""
