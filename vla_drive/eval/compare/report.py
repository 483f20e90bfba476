"""The comparison's report: ``compare.csv`` (one row per algorithm, seed and split with every metric),
``scenes.csv`` (every run's test scenes), ``curves.csv`` (learning curves), ``budgets.csv`` and ``compare.md``,
whose tables :func:`report_tables` renders from those CSV files alone (so tables in the docs can be checked
against a committed CSV).

Runs are ranked only when every budget that must be equal is (:func:`~vla_drive.eval.compare.budgets.
budget_conflicts`); otherwise the report lists the differences and keeps the plan's order. Differences are paired
(:mod:`vla_drive.eval.stats`): scene by scene inside a seed, with a 95% interval from a bootstrap over the test
logs of every seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.atomic import atomic_write_text
from navsim_eval.pdm.results import METRIC_COLUMNS
from vla_drive.eval.compare.budgets import RunBudget, budget_conflicts, budgets_csv, read_budgets
from vla_drive.eval.compare.plan import IMITATION, ComparePlan
from vla_drive.eval.compare.runner import FAILED_FILE, RESULT_FILE, SCENES_FILE, run_folder, stale_result
from vla_drive.eval.stats import SeedScores, curve_area, mean_std, paired_difference

COLLAPSE_DROP = 0.05  # a run whose val score falls more than this below its imitation start has collapsed
SCENE_COLUMNS = ("algorithm", "seed", "token", "log", "scenario", "v1_score", "v2_score", "distance", "human_distance")
RUN_COLUMNS = (
    "knob",
    "knob_value",
    "collapsed",
    "start_val",
    "final_val",
    "best_val",
    "checkpoint_iteration",
    "curve_area",
    "drift_from_imitation",
    "distance_ratio",
    "wall_seconds_per_iteration",
    "head_calls_per_plan",
    "predict_seconds_per_scene",
)
METRIC_FIELDS = tuple(f"{v}_{name}" for v in ("v1", "v2") for name in METRIC_COLUMNS[v])
COMPARE_COLUMNS = ("algorithm", "seed", "world_seed", "split", *METRIC_FIELDS, *RUN_COLUMNS)


@dataclass
class Collected:
    """What the run folders hold: result rows, test scenes, curves, budgets and failures."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    scenes: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[RunBudget] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)


def collect(plan: ComparePlan) -> Collected:
    """Read every run of the plan (finished, failed or not run yet)."""
    out = Collected()
    _, problems = plan.resolved()
    for problem in problems:
        out.failures[problem.split("'")[1]] = problem
    for run in plan.runs():
        folder = run_folder(plan, run)
        if not (folder / RESULT_FILE).is_file():
            if (folder / FAILED_FILE).is_file():
                out.failures[run.key] = (folder / FAILED_FILE).read_text().strip()
            else:
                out.pending.append(run.key)
            continue
        stale = stale_result(plan, run)
        if stale:
            out.failures[run.key] = stale
            continue
        result = json.loads((folder / RESULT_FILE).read_text())
        out.rows += result_rows(result)
        out.budgets.append(RunBudget(**result["budget"]))
        out.curves += curve_rows(result)
        if (folder / SCENES_FILE).is_file():
            with (folder / SCENES_FILE).open(newline="") as stream:
                for scene in csv.DictReader(stream):
                    out.scenes.append(
                        {"algorithm": result["algorithm"], "seed": result["seed"]}
                        | {k: scene[k] for k in SCENE_COLUMNS[2:]}
                    )
    return out


def result_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The val and test rows of one run's result."""
    curve = result.get("curve", {})
    start_default = float(result.get("start_val_default", float("nan")))
    iterations, scores = [0.0, *curve.get("val_iteration", [])], [start_default, *curve.get("val_score", [])]
    if len(scores) == 1:
        scores = [float(result.get("val_default", start_default))]
        iterations = [0.0]
    val_score = float(result["val"].get("score", float("nan")))
    test_score = float(result.get("test_v1", {}).get("score", float("nan")))
    nan = not (math.isfinite(val_score) and math.isfinite(test_score))
    training = result.get("training", {})
    iterations_done = int(result["budget"]["iterations"])
    run = {
        "knob": result["knob"],
        "knob_value": result["chosen_knob"],
        "collapsed": int(nan or val_score < float(result["start_val"]) - COLLAPSE_DROP),
        "start_val": scores[0],  # the imitation start at the default knob: where the curve begins
        "final_val": scores[-1],
        "best_val": max(scores),
        "checkpoint_iteration": training.get("selected_iteration", iterations[-1]),  # the one evaluated
        "curve_area": curve_area(iterations, scores),
        "drift_from_imitation": result.get("drift_from_imitation", float("nan")),
        "distance_ratio": result.get("distance_ratio", float("nan")),
        "wall_seconds_per_iteration": training["wall_seconds"] / iterations_done if iterations_done else float("nan"),
        "head_calls_per_plan": result["head_calls_per_plan"],
        "predict_seconds_per_scene": result.get(
            "predict_seconds_per_scene", result["val"]["predict_seconds_per_scene"]
        ),
    }
    base = {"algorithm": result["algorithm"], "seed": result["seed"], "world_seed": result.get("world_seed")}
    val = {f"v1_{name}": result["val"].get(name, float("nan")) for name in METRIC_COLUMNS["v1"]}
    test = {
        f"{v}_{name}": result.get(f"test_{v}", {}).get(name, float("nan"))
        for v in ("v1", "v2")
        for name in METRIC_COLUMNS[v]
    }
    return [{**base, "split": "synthetic_val", **val, **run}, {**base, "split": "synthetic_test", **test, **run}]


def curve_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    curve = result.get("curve", {})
    rows = [
        {
            "algorithm": result["algorithm"],
            "seed": result["seed"],
            "curve": "val_score",
            "iteration": 0.0,
            "value": result.get("start_val_default"),
        }
    ]
    for kind, x, y in (("val_score", "val_iteration", "val_score"), ("reward", "reward_iteration", "reward")):
        for iteration, value in zip(curve.get(x, []), curve.get(y, []), strict=True):
            rows.append(
                {
                    "algorithm": result["algorithm"],
                    "seed": result["seed"],
                    "curve": kind,
                    "iteration": iteration,
                    "value": value,
                }
            )
    for row in result.get("grid", []):
        rows.append(
            {
                "algorithm": result["algorithm"],
                "seed": result["seed"],
                "curve": f"knob_{result['knob']}",
                "iteration": row["knob"],
                "value": row.get("score"),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------- files


def write_report(plan: ComparePlan, plots: bool = True, into: Path | None = None) -> dict[str, Path]:
    """Write compare.csv, scenes.csv, curves.csv, budgets.csv, compare.md (and the plots) of the plan's runs into
    ``into`` (default ``plan.out``; another folder keeps a report of a subset of the runs beside the whole one)."""
    collected = collect(plan)
    out = Path(into) if into is not None else plan.out
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "compare.csv": atomic_write_text(out / "compare.csv", table_csv(collected.rows, COMPARE_COLUMNS)),
        "scenes.csv": atomic_write_text(out / "scenes.csv", table_csv(collected.scenes, SCENE_COLUMNS)),
        "curves.csv": atomic_write_text(
            out / "curves.csv", table_csv(collected.curves, ("algorithm", "seed", "curve", "iteration", "value"))
        ),
        "budgets.csv": atomic_write_text(out / "budgets.csv", budgets_csv(collected.budgets)),
    }
    rows, scenes, budgets = read_results(out)
    order = [a.label for a in plan.resolved()[0]]
    text = "# Algorithm comparison\n\n" + plan_summary(plan) + "\n\n" + report_tables(rows, scenes, budgets, order)
    text += status_lines(collected)
    if plots:
        from vla_drive.eval.compare.plots import write_plots

        written = write_plots(out, rows, scenes, read_csv(out / "curves.csv"), order)
        text += "\n## Plots\n\n" + "".join(f"![{p.stem}](plots/{p.name})\n" for p in written)
        files.update({p.name: p for p in written})
    files["compare.md"] = atomic_write_text(out / "compare.md", text)
    return files


def plan_summary(plan: ComparePlan) -> str:
    b = plan.budget
    shape = f"--logs {plan.world_logs} " if plan.world_logs else ""
    if plan.world_split_logs and not plan.world_logs:
        shape = "--split-logs " + " ".join(map(str, plan.world_split_logs)) + " "
    world = (
        f"the world {plan.world} for every seed"
        if plan.world
        else (f"one world per seed (navsim-eval synth {shape}--seed <seed>)")
    )
    return (
        f"Seeds {', '.join(map(str, plan.seeds))}; {world}. Budget of every RL run: {b.iterations} iterations x "
        f"{b.scenes_per_iteration} scenes x K = {b.samples_per_scene} ({b.rollouts} rollouts), {b.rollout_steps} "
        f"sampler steps per rollout, from an imitation start of {b.imitation_steps} steps; knobs tuned on "
        f"synthetic_val over {len(plan.knobs.omegas)} values (DIPOLE omega {list(plan.knobs.omegas)} at "
        f"temperature {plan.knobs.omega_temperature:g}, the others "
        f"sampler temperature {list(plan.knobs.temperatures)}, at {b.sample_steps} denoising steps); "
        "synthetic_test evaluated once, at the chosen knob."
    )


def status_lines(collected: Collected) -> str:
    lines = []
    if collected.failures:
        lines += ["", "## Failed runs", ""] + [f"- `{k}`: {v}" for k, v in sorted(collected.failures.items())]
    if collected.pending:
        lines += ["", "## Not run yet", ""] + [f"- `{k}`" for k in collected.pending]
    return "\n".join(lines) + ("\n" if lines else "")


def table_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return stream.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return "" if value is None else value


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as stream:
        return list(csv.DictReader(stream))


def read_results(folder: str | Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[RunBudget]]:
    """compare.csv, scenes.csv and budgets.csv of a report folder (e.g. a committed copy in docs/)."""
    folder = Path(folder)
    return read_csv(folder / "compare.csv"), read_csv(folder / "scenes.csv"), read_budgets(folder / "budgets.csv")


# --------------------------------------------------------------------------------------------------- tables


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def paired_to(scenes: Sequence[Mapping[str, str]], algorithm: str, baseline: str, column: str = "v1_score") -> Any:
    """The paired difference ``algorithm - baseline`` of a test-scene column over the seeds both ran."""
    by_run: dict[tuple[str, int], dict[str, tuple[float, str]]] = {}
    for row in scenes:
        by_run.setdefault((row["algorithm"], int(row["seed"])), {})[row["token"]] = (_f(row[column]), row["log"])
    seeds = {}
    for (name, seed), mine in by_run.items():
        other = by_run.get((baseline, seed))
        if name != algorithm or other is None:
            continue
        tokens = [t for t in mine if t in other]
        seeds[seed] = SeedScores(
            np.array([mine[t][0] for t in tokens]),
            np.array([other[t][0] for t in tokens]),
            [mine[t][1] for t in tokens],
        )
    return paired_difference(seeds) if seeds else None


def diff_cell(diff: Any) -> str:
    """A paired difference as a table cell: mean [low, high], * when the interval excludes 0, - when there is none."""
    if diff is None or not math.isfinite(diff.mean):
        return "-"
    if not diff.has_interval:  # one test log per seed: the bootstrap has nothing to draw from
        return f"{diff.mean:+.4f} (one test log per seed: no interval)"
    star = " *" if diff.excludes_zero() else ""
    return f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]{star}"


def report_tables(
    rows: Sequence[Mapping[str, str]],
    scenes: Sequence[Mapping[str, str]],
    budgets: Sequence[RunBudget],
    order: Sequence[str] | None = None,
) -> str:
    """Every table of the report, from the CSV rows alone (see the module doc)."""
    lines, names = _headline(rows, scenes, budgets, order)
    test = [r for r in rows if r["split"] == "synthetic_test"]
    of = {n: [r for r in test if r["algorithm"] == n] for n in names}
    lines += ["", "## Sub-metrics (test, mean over seeds)", ""]
    metric_columns = [c for c in METRIC_FIELDS if not c.endswith("_score")]
    lines += ["| algorithm | " + " | ".join(metric_columns) + " |", "|" + "---|" * (len(metric_columns) + 1)]
    for name in names:
        cells = [_fmt(mean_std([_f(r[c]) for r in of[name]])[0], 3) for c in metric_columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _per_seed_table(names, scenes) + _scenario_table(names, scenes) + _training_table(names, rows, budgets)
    return "\n".join(lines) + "\n"


def headline_table(
    rows: Sequence[Mapping[str, str]],
    scenes: Sequence[Mapping[str, str]],
    budgets: Sequence[RunBudget],
    order: Sequence[str] | None = None,
) -> str:
    """Whether the runs are ranked and the test-score table (the README shows this part)."""
    return "\n".join(_headline(rows, scenes, budgets, order)[0]) + "\n"


def _headline(rows, scenes, budgets, order) -> tuple[list[str], list[str]]:
    test = [r for r in rows if r["split"] == "synthetic_test"]
    names = list(dict.fromkeys([*(order or []), *(r["algorithm"] for r in test)]))
    names = [n for n in names if any(r["algorithm"] == n for r in test)]
    conflicts = budget_conflicts(budgets)
    of = {n: [r for r in test if r["algorithm"] == n] for n in names}
    pdms = {n: mean_std([_f(r["v1_score"]) for r in of[n]]) for n in names}
    if not conflicts:
        names.sort(key=lambda n: -pdms[n][0] if math.isfinite(pdms[n][0]) else math.inf)
    lines = []
    if conflicts:
        lines += ["**Not ranked: the runs' budgets differ** (budgets.csv):", ""] + [f"- {c}" for c in conflicts] + [""]
    else:
        lines += ["Every run used the same budget (budgets.csv): ranked by mean test PDMS.", ""]
    lines += [
        "## Test scores (synthetic_test, once, at the knob chosen on synthetic_val)",
        "",
        "Mean ± std over seeds; differences are paired (same scenes, same seed) with a 95% bootstrap interval over "
        "test logs, seeds paired; * = the interval excludes 0.",
        "",
        "| "
        + ("rank | " if not conflicts else "")
        + "algorithm | seeds | PDMS v1.1 | EPDMS v2 | Δ PDMS vs imitation | "
        "Δ PDMS vs DIPOLE | Δ EPDMS vs imitation | distance / human | collapses | chosen knob |",
        "|" + "---|" * (10 + (not conflicts)),
    ]
    for rank, name in enumerate(names, 1):
        runs = of[name]
        epdms = mean_std([_f(r["v2_score"]) for r in runs])
        distance = mean_std([_f(r["distance_ratio"]) for r in runs])
        knobs = ", ".join(f"{_f(r['knob_value']):g}" for r in sorted(runs, key=lambda r: int(r["seed"])))
        cells = [
            name,
            str(len(runs)),
            f"{_fmt(pdms[name][0])} ± {_fmt(pdms[name][1])}",
            f"{_fmt(epdms[0])} ± {_fmt(epdms[1])}",
            "-" if name == IMITATION else diff_cell(paired_to(scenes, name, IMITATION)),
            "-" if name == "dipole" else diff_cell(paired_to(scenes, name, "dipole")),
            "-" if name == IMITATION else diff_cell(paired_to(scenes, name, IMITATION, "v2_score")),
            f"{_fmt(distance[0], 3)}",
            f"{sum(int(_f(r['collapsed'])) for r in runs)} / {len(runs)}",
            f"{runs[0]['knob']} {knobs}",
        ]
        lines.append("| " + (f"{rank} | " if not conflicts else "") + " | ".join(cells) + " |")
    return lines, names


def _per_seed_table(names: Sequence[str], scenes: Sequence[Mapping[str, str]]) -> list[str]:
    diffs = {n: paired_to(scenes, n, IMITATION) for n in names if n != IMITATION}
    seeds = sorted({s for d in diffs.values() if d is not None for s in d.per_seed})
    if not seeds:
        return []
    lines = ["", "## Paired PDMS difference to imitation, per seed (test)", ""]
    lines += ["| algorithm | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for name, diff in diffs.items():
        cells = [f"{diff.per_seed[s]:+.4f}" if diff is not None and s in diff.per_seed else "-" for s in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _scenario_table(names: Sequence[str], scenes: Sequence[Mapping[str, str]]) -> list[str]:
    scenarios = sorted({row["scenario"] for row in scenes})
    if not scenarios:
        return []
    lines = ["", "## Per scenario (test PDMS, mean over the scenes of every seed)", ""]
    lines += ["| scenario | scenes | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for scenario in scenarios:
        cells, count = [], 0
        for name in names:
            values = [_f(r["v1_score"]) for r in scenes if r["algorithm"] == name and r["scenario"] == scenario]
            count = max(count, len(values))
            cells.append(_fmt(mean_std(values)[0], 3))
        lines.append(f"| {scenario} | {count} | " + " | ".join(cells) + " |")
    return lines


def _training_table(names: Sequence[str], rows: Sequence[Mapping[str, str]], budgets: Sequence[RunBudget]) -> list[str]:
    val = [r for r in rows if r["split"] == "synthetic_val"]
    lines = [
        "",
        "## Training and cost (validation at the default knob; mean over seeds)",
        "",
        "| algorithm | start val | final val | best val | evaluated checkpoint (iteration) | curve area | "
        "drift from imitation (m) | wall s / iteration | head calls / plan | predict ms / scene | "
        "updates / iteration | updates / rollout | adapter params |",
        "|" + "---|" * 13,
    ]
    for name in names:
        runs = [r for r in val if r["algorithm"] == name]
        mine = [b for b in budgets if b.algorithm == name]

        def mean(column: str, runs=runs) -> float:
            return mean_std([_f(r.get(column)) for r in runs])[0]

        cells = [
            _fmt(mean("start_val")),
            _fmt(mean("final_val")),
            _fmt(mean("best_val")),
            _fmt(mean("checkpoint_iteration"), 1),
            _fmt(mean("curve_area")),
            _fmt(mean("drift_from_imitation"), 3),
            _fmt(mean("wall_seconds_per_iteration"), 2),
            _fmt(mean("head_calls_per_plan"), 0),
            _fmt(1000 * mean("predict_seconds_per_scene"), 1),
            str(mine[0].updates_per_iteration) if mine else "-",
            f"{mine[0].updates_per_rollout:g}" if mine else "-",
            str(mine[0].adapter_parameters) if mine else "-",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Collapse: val score (at the chosen knob) more than 0.05 below the imitation start's (at its chosen knob), "
        "or NaN. Curve area: the mean validation "
        "score over training (start included). Evaluated checkpoint: the RL iteration whose checkpoint scored best "
        "on validation (mean over seeds); its knob sweep and test scores are the ones reported. Wall time per "
        "iteration includes the periodic validation.",
    ]
    return lines
