"""``vla-drive compare``: an honest comparison of RL algorithms for the driving head.

One imitation start per seed, every algorithm with equal budgets (rollouts, sampler steps, knob grid), the knob
chosen on ``synthetic_val``, the test split evaluated once, and a report with paired differences (bootstrap over
scenes clustered by log, seeds paired), collapse counts, learning curves and costs. Modules: ``plan`` (what runs),
``knobs`` (knob -> prediction settings), ``budgets`` (what each run used), ``runner`` (worlds, starts, runs,
evaluation), ``report`` (compare.csv, budgets.csv, compare.md), ``plots`` and ``docs`` (a finished comparison into
the docs). See docs/compare.md.
"""

from vla_drive.eval.compare.plan import CompareError, ComparePlan, load_plan
from vla_drive.eval.compare.runner import run_comparison

__all__ = ["CompareError", "ComparePlan", "load_plan", "run_comparison"]
