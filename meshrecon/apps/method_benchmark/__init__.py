"""One benchmark for every method: train, evaluate, compare, render.

The library behind ``tools/benchmark_methods.py``:

- :mod:`.methods`: the tasks (one table each) and the methods (one row each).
- :mod:`.runner`: runs ``tools/train_net.py`` per method, reuses finished identical runs.
- :mod:`.gallery`: renders input, ground truth and each method's output from the same cameras.
- :mod:`.report`: ``report.html`` (static, offline), ``report.md``, ``report.json``, plots.
- :mod:`.yardstick`: the paragraph under a table: does each learned method beat Retrieval?
- :mod:`.per_category`: per-category tables (means over categories and over instances).
"""

from .methods import METHODS, TASKS, Column, MethodSpec, Task, get_method, real_variants
from .runner import MethodPlan, RunRecord, config_fingerprint, plan_methods, run_plan

__all__ = [
    "METHODS",
    "TASKS",
    "Column",
    "MethodPlan",
    "MethodSpec",
    "RunRecord",
    "Task",
    "config_fingerprint",
    "get_method",
    "plan_methods",
    "real_variants",
    "run_plan",
]
