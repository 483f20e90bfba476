"""The budget each run actually used, written beside its results and gathered into ``budgets.csv``; runs whose
budgets differ where they must be equal are not ranked against each other.

Held equal: the imitation start's steps, the rollouts (iterations x scenes x K), the sampler steps of a rollout, the
size of the knob grid and the validation / test scenes. Reported, not equal: the optimizer updates per iteration
(each algorithm's own update spec: epochs x minibatches) and per rollout, and the trainable adapter parameters.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from navsim_eval.atomic import atomic_write_text


@dataclass(frozen=True)
class RunBudget:
    """What one run used (an imitation run has no rollouts: its RL fields are 0)."""

    algorithm: str
    seed: int
    imitation_steps: int
    iterations: int
    scenes_per_iteration: int
    samples_per_scene: int
    rollouts: int
    rollout_steps: int
    knob_grid: int
    val_scenes: int
    test_scenes: int
    updates_per_iteration: int
    updates_per_rollout: float
    adapter_parameters: int


SHARED_FIELDS = ("imitation_steps", "knob_grid", "val_scenes", "test_scenes")  # every run, imitation included
PER_SEED = ("val_scenes", "test_scenes")  # compared inside a seed: each seed may have a world of its own
RL_FIELDS = ("iterations", "scenes_per_iteration", "samples_per_scene", "rollouts", "rollout_steps")
REPORTED_FIELDS = ("updates_per_iteration", "updates_per_rollout", "adapter_parameters")


def budget_conflicts(budgets: Sequence[RunBudget]) -> list[str]:
    """One line per field that must be equal and is not, naming the runs with each value (empty: all equal).
    Validation and test scenes are compared inside a seed only (each seed may have its own world)."""
    problems = []
    rl = [b for b in budgets if b.algorithm != "imitation"]
    groups: list[tuple[str, Sequence[RunBudget]]] = [(name, budgets) for name in SHARED_FIELDS if name not in PER_SEED]
    groups += [(name, rl) for name in RL_FIELDS]
    for seed in sorted({b.seed for b in budgets}):
        groups += [(name, [b for b in budgets if b.seed == seed]) for name in PER_SEED]
    for name, members in groups:
        values: dict[object, list[str]] = {}
        for budget in members:
            values.setdefault(getattr(budget, name), []).append(f"{budget.algorithm}/seed{budget.seed}")
        if len(values) > 1:
            shown = "; ".join(f"{value}: {', '.join(runs)}" for value, runs in values.items())
            problems.append(f"budgets differ in {name} ({shown})")
    return problems


def budgets_csv(budgets: Sequence[RunBudget]) -> str:
    """The text of ``budgets.csv``: one row per run, every field."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=[f.name for f in fields(RunBudget)], lineterminator="\n")
    writer.writeheader()
    for budget in sorted(budgets, key=lambda b: (b.algorithm, b.seed)):
        writer.writerow(asdict(budget))
    return stream.getvalue()


def write_budgets(path: str | os.PathLike[str], budgets: Sequence[RunBudget]) -> Path:
    return atomic_write_text(path, budgets_csv(budgets))


def read_budgets(path: str | os.PathLike[str]) -> list[RunBudget]:
    """The rows of a ``budgets.csv``."""
    types = {f.name: f.type for f in fields(RunBudget)}
    with Path(path).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    convert = {"int": int, "float": float, "str": str}
    return [RunBudget(**{k: convert[types[k]](v) for k, v in row.items()}) for row in rows]
