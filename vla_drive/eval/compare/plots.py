"""The comparison's plots, drawn from its CSV rows: reward and validation-score curves per algorithm with a band
over seeds (min to max), the knob sweep per algorithm on validation, and the test scores with their 95% intervals
(a bootstrap over test logs, seeds paired)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vla_drive.eval.stats import SeedScores, paired_difference

PLOTS_DIR = "plots"


def write_plots(
    out: Path,
    rows: Sequence[Mapping[str, str]],
    scenes: Sequence[Mapping[str, str]],
    curves: Sequence[Mapping[str, str]],
    order: Sequence[str],
) -> list[Path]:
    """curves.png, knob_sweep.png and test_scores.png under ``<out>/plots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    names = [
        n for n in dict.fromkeys([*order, *(r["algorithm"] for r in rows)]) if any(r["algorithm"] == n for r in rows)
    ]
    written = []
    for name, draw in (("curves", _curves), ("knob_sweep", _knob_sweep), ("test_scores", _test_scores)):
        figure = draw(plt, names, rows, scenes, curves)
        path = folder / f"{name}.png"
        try:
            figure.savefig(path, dpi=110, bbox_inches="tight")
        finally:
            plt.close(figure)
        written.append(path)
    return written


def _series(curves, algorithm: str, kind: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out: dict[int, list[tuple[float, float]]] = {}
    for row in curves:
        if row["algorithm"] == algorithm and row["curve"] == kind and row["value"] not in ("", "nan"):
            out.setdefault(int(row["seed"]), []).append((float(row["iteration"]), float(row["value"])))
    return {seed: tuple(np.array(v) for v in zip(*sorted(points), strict=True)) for seed, points in out.items()}


def _curves(plt, names, rows, scenes, curves):
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for index, name in enumerate(names):
        for axis, kind, label in ((axes[0], "reward", "mean rollout reward"), (axes[1], "val_score", "val PDMS")):
            series = _series(curves, name, kind)
            if not series or (kind == "reward" and name == "imitation"):
                continue
            grid = sorted({x for xs, _ in series.values() for x in xs})
            stacked = np.array([np.interp(grid, xs, ys) for xs, ys in series.values()])
            color = f"C{index}"  # one colour per algorithm in both panels
            axis.plot(grid, stacked.mean(axis=0), label=name, marker=".", color=color)
            axis.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), color=color, alpha=0.2)
            axis.set_xlabel("RL iteration")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
    axes[0].set_title("rollout reward (band: min-max over seeds)")
    axes[1].set_title("validation score at the default knob")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    figure.tight_layout()
    return figure


def _knob_sweep(plt, names, rows, scenes, curves):
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        knob = next((r["knob"] for r in rows if r["algorithm"] == name), "knob")
        for seed, (xs, ys) in sorted(_series(curves, name, f"knob_{knob}").items()):
            axis.plot(xs, ys, marker="o", label=f"seed {seed}")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(knob)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("val PDMS")
    axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def _test_scores(plt, names, rows, scenes, curves):
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 3, 3.5))
    means, lows, highs = [], [], []
    for name in names:
        by_seed: dict[int, tuple[list[float], list[str]]] = {}
        for row in scenes:
            if row["algorithm"] == name:
                values = by_seed.setdefault(int(row["seed"]), ([], []))
                values[0].append(float(row["v1_score"]))
                values[1].append(row["log"])
        interval = paired_difference(
            {s: SeedScores(np.array(v), np.zeros(len(v)), logs) for s, (v, logs) in by_seed.items()}
        )
        means.append(interval.mean)
        lows.append(interval.mean - interval.low if math.isfinite(interval.low) else 0.0)
        highs.append(interval.high - interval.mean if math.isfinite(interval.high) else 0.0)
    axis.bar(range(len(names)), means, yerr=[lows, highs], capsize=4, color="tab:blue", alpha=0.8)
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    bottoms = [m - low for m, low in zip(means, lows, strict=True) if math.isfinite(m)]
    tops = [m + high for m, high in zip(means, highs, strict=True) if math.isfinite(m)]
    if bottoms:  # the whole of every interval in view
        axis.set_ylim(max(0.0, min(bottoms) - 0.02), min(1.0, max(tops) + 0.02))
    axis.set_ylabel("test PDMS v1.1")
    axis.set_title("test scores, 95% interval (bootstrap over test logs)")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure
