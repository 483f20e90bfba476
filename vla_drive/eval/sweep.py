"""Guidance sweep: evaluate a grid of omega on a split, tabulate PDMS / EPDMS and sub-metrics, plot, choose.

The chosen omega is the one with the highest mean score (the smaller omega on ties, for the less greedy policy);
``DrivingVLA.config.guidance_omega`` stores it so that ``predict`` and the exported model use it by default. When
the best omega is the largest of the grid, the sweep widens the grid (each new omega 1.6 times the last, up to
``widen`` times) until a larger omega scores lower, so the chosen value is never just the edge of what was tried.

Choose omega on a validation split and report the test split once with it: a sweep on the split it reports
overstates the score (the CLI warns when the split's name says test).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.evaluate import evaluate_model
from vla_drive.eval.scoring import SceneScorer
from vla_drive.model.card import record_sweep
from vla_drive.model.vla import store_guidance_omega

DEFAULT_OMEGAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
WIDEN_FACTOR = 1.6  # the next omega when the best is the largest tried
DEFAULT_WIDEN = 3  # at most this many omegas added past the grid


def sweep_guidance(
    model,
    dataset: SceneDataset,
    scorer: SceneScorer,
    omegas: Sequence[float] = DEFAULT_OMEGAS,
    *,
    steps: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 16,
    widen: int = DEFAULT_WIDEN,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, float]]:
    """One row per omega: omega, score, every sub-metric (same seed for every omega: a paired comparison), sorted
    by omega; while the best omega is the largest tried, up to ``widen`` larger ones are added (see the module doc).
    ``progress(stage, done, total)`` counts the scenes predicted over the grid."""
    grid = sorted({float(omega) for omega in omegas})
    rows: list[dict[str, float]] = []
    total, done = len(dataset) * len(grid), 0

    def evaluate(omega: float) -> None:
        def predicted(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress("sweep", done, total)

        summary = evaluate_model(
            model,
            dataset,
            scorer,
            steps=steps,
            omega=omega,
            seed=seed,
            temperature=temperature,
            batch_size=batch_size,
            progress=predicted,
        )
        rows.append({"omega": omega, **summary})

    for omega in grid:
        evaluate(omega)
    for _ in range(widen):
        if not at_grid_edge(rows, best_omega(rows)):
            break
        largest = max(row["omega"] for row in rows)
        total += len(dataset)
        evaluate(round(largest * WIDEN_FACTOR, 3) if largest > 0 else 1.0)
    return rows


DEFAULT_TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)  # 0: the noise-free plan, 1: as trained


def sweep_temperature(
    model,
    dataset: SceneDataset,
    scorer: SceneScorer,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    *,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> list[dict[str, float]]:
    """One row per sampler temperature (the knob of a policy without guidance, e.g. imitation): temperature,
    score and every sub-metric, same seed for every temperature, sorted by temperature."""
    rows = []
    for temperature in sorted({float(t) for t in temperatures}):
        summary = evaluate_model(
            model, dataset, scorer, steps=steps, seed=seed, temperature=temperature, batch_size=batch_size
        )
        rows.append({"temperature": temperature, **summary})
    return rows


def best_temperature(rows: Sequence[dict[str, float]]) -> float:
    """The temperature with the highest mean score; the smallest such temperature on ties."""
    return best_knob(rows, "temperature")


def store_sweep(
    model_dir: str | os.PathLike[str],
    rows: Sequence[dict[str, float]],
    split: str,
    version: str,
    temperature: float = 1.0,
) -> float:
    """Store the chosen omega in a saved model and record the sweep (and the sampler temperature it ran at) on its
    model card; returns the omega."""
    chosen = best_omega(rows)
    store_guidance_omega(model_dir, chosen)
    record_sweep(model_dir, split=split, version=version, rows=rows, chosen=chosen, temperature=temperature)
    return chosen


def best_omega(rows: Sequence[dict[str, float]]) -> float:
    """The omega with the highest mean score; the smallest such omega on ties (the less greedy policy)."""
    return best_knob(rows, "omega")


def best_knob(rows: Sequence[dict[str, float]], knob: str) -> float:
    """The value of ``knob`` whose row has the highest mean score; the smallest such value on ties."""
    best = max(rows, key=lambda row: (round(row["score"], 12), -row[knob]))
    return float(best[knob])


def write_sweep(rows: Sequence[dict[str, float]], out_dir: str | os.PathLike[str], title: str = "") -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md`` (a markdown table) and ``sweep.png`` (score and sub-metrics against omega)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    csv_path = out / "sweep.csv"
    with csv_path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = ["omega", "score"] + [c for c in columns if c not in ("omega", "score", "num_scenes", "valid_fraction")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    chosen = best_omega(rows)
    for row in rows:
        cells = [f"{row[c]:.4f}" if c != "omega" else f"{row[c]:g}" for c in shown]
        if row["omega"] == chosen:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    md_path = out / "sweep.md"
    edge = f"; {GRID_EDGE_NOTE}" if at_grid_edge(rows, chosen) else ""
    md_path.write_text("\n".join(lines) + f"\n\nchosen omega: {chosen:g} (highest mean score{edge})\n")
    png_path = out / "sweep.png"
    _plot(rows, shown[1:], png_path, title or "guidance sweep", chosen)
    return {"csv": csv_path, "markdown": md_path, "plot": png_path}


GRID_EDGE_NOTE = "the largest omega tried: the best may lie beyond the grid, widen it"


def at_grid_edge(rows: Sequence[dict[str, float]], chosen: float) -> bool:
    """Whether the chosen omega is the largest of more than one tried."""
    omegas = [row["omega"] for row in rows]
    return len(omegas) > 1 and chosen == max(omegas)


def varying_metrics(rows: Sequence[dict[str, float]], metrics: Sequence[str], tolerance: float = 1e-9) -> list[str]:
    """The metrics whose value changes across the sweep (a constant one says nothing about omega)."""
    return [name for name in metrics if np.ptp([row[name] for row in rows]) > tolerance]


def sweep_figure(rows: Sequence[dict[str, float]], metrics: Sequence[str], title: str, chosen: float):
    """Score against omega on top (the chosen omega marked and labelled), below it only the sub-metrics that vary,
    each legend outside its curves; constant sub-metrics are named in a note instead of drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    omegas = [row["omega"] for row in rows]
    varying = varying_metrics(rows, [name for name in metrics if name != "score"])
    constant = [name for name in metrics if name not in varying and name != "score"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(1, 1.3))
    top.plot(omegas, [row["score"] for row in rows], marker="o", linewidth=2, color="k", label="score")
    best = next(row for row in rows if row["omega"] == chosen)
    top.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
    top.annotate(
        f"chosen omega = {chosen:g}\nscore {best['score']:.4f}"
        + ("\n(largest tried)" if at_grid_edge(rows, chosen) else ""),
        (chosen, best["score"]),
        xytext=(8, -28),
        textcoords="offset points",
        fontsize=8,
        color="tab:red",
    )
    top.set_ylabel("mean score")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0)
    for name in varying:
        bottom.plot(omegas, [row[name] for row in rows], marker=".", linewidth=1, label=name)
    bottom.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
    bottom.set_xlabel("guidance omega")
    bottom.set_ylabel("mean sub-metric")
    bottom.grid(alpha=0.3)
    if varying:
        bottom.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0.0)
    else:
        bottom.text(0.5, 0.5, "no sub-metric changes with omega", transform=bottom.transAxes, ha="center")
    if constant:
        note = "constant over the sweep: " + ", ".join(f"{n} {rows[0][n]:.3f}" for n in constant)
        figure.text(0.01, 0.005, note, fontsize=6, wrap=True)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return figure


def _plot(rows, metrics: list[str], path: Path, title: str, chosen: float) -> None:
    import matplotlib.pyplot as plt

    figure = sweep_figure(rows, metrics, title, chosen)
    try:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
