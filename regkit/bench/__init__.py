"""Benchmarks: ratios measured side by side in one run (``python -m regkit.bench NAME``).

Each benchmark is a module ``regkit.bench.<name>`` with a ``main(argv)`` function. Their measuring code
is public here, for notebooks and your own comparisons:

* `measure_steps` times step functions interleaved (median and quartiles, CPU time on the CPU) and
  measures each step's working memory; `StepCost` is one candidate's result, `ratios` and `cost_table`
  relate them to one reference candidate, `peak_step_memory` measures one step alone;
* `penalty_steps` builds one training step of plain SGD, GNP, SAM and the exact gradient-norm penalty
  on a model and batch (the ``penalties`` benchmark; notebook 04 times them).
"""

from regkit.bench._grad_norm import penalty_steps
from regkit.bench._timing import StepCost, cost_table, measure_steps, peak_step_memory, ratios

__all__ = ["StepCost", "cost_table", "measure_steps", "peak_step_memory", "penalty_steps", "ratios"]
