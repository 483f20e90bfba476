"""``vla-drive eval``: predict a split with a saved model and score it the way the NAVSIM leaderboard does.

One trajectory per scene (the model's chosen omega unless told otherwise, fixed steps and seed) is predicted
batch by batch into a resumable prediction folder, the scenes' metric caches are built once (or read from
``--metric-cache``), a process pool scores the trajectories (PDMS v1.1 or one-stage EPDMS v2), and the run writes:

* ``<version>_scores.csv``: the official CSV layout (unnamed index, token, valid, the metric columns in the
  official order, and the official average row);
* ``summary.md``: the mean of every sub-metric, the score with unscorable scenes counted as zero, and the scenes
  of the split that could not be loaded or scored (with the reason);
* ``worst/*.png``: BEV plots of the lowest-scoring scenes with the metric that failed.

Scenes that cannot be loaded or have no metric cache are reported, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_text
from navsim_eval.csv_io import official_rows, write_score_csv
from navsim_eval.data.loader import SceneLoader
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.pdm.two_frame import apply_two_frame_comfort
from navsim_eval.pool import ScoringPool
from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.bev import drove_the_wrong_way, failing_metrics, plot_scene
from vla_drive.eval.predictions import PredictionStore, predict_scenes
from vla_drive.eval.scoring import build_metric_caches
from vla_drive.model.vla import DrivingVLA, model_fingerprint

LOG = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class EvalSettings:
    """What an evaluation predicts and how it scores."""

    version: str = "v1"  # v1 (PDMS) or v2 (EPDMS, one stage)
    omega: float | None = None  # None = the model's stored guidance omega
    steps: int | None = None  # None = the model's default denoising steps
    seed: int = 0
    batch_size: int = 16
    workers: int = 1  # scoring processes (0 = every CPU)
    worst: int = 6  # BEV plots of this many lowest-scoring scenes
    max_scenes: int | None = None


@dataclass
class EvalResult:
    """Where an evaluation wrote its files, and its headline numbers."""

    out_dir: Path
    csv: Path
    summary: Path
    plots: list[Path]
    metrics: dict[str, float]
    scored: int
    missing: dict[str, str] = field(default_factory=dict)  # token -> why it has no score


def evaluate_split(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    maps_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: EvalSettings | None = None,
    *,
    metric_cache: str | os.PathLike[str] | None = None,
    model_name: str = "",
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate ``model`` (a DrivingVLA) on a NAVSIM split file; see the module doc for what is written."""
    settings = settings or EvalSettings()
    if settings.version not in METRIC_COLUMNS:
        raise ValueError(f"eval: unknown score version {settings.version!r}; expected one of {sorted(METRIC_COLUMNS)}")
    out = Path(out_dir)
    split_file = Path(split_file)
    split = predict_split(model, split_file, data_root, out / "predictions", settings, model_name, progress)
    loader, predictions, missing = split.loader, split.predictions, dict(split.missing)

    caches_root = Path(metric_cache) if metric_cache else out / "metric_cache"
    no_cache = build_metric_caches(loader, maps_root, caches_root, progress=progress)
    missing.update(no_cache)
    store_view = MetricCacheStore(caches_root)
    tokens = [t for t in loader.tokens if t in predictions and t in store_view]
    missing.update(
        {t: "no metric cache" for t in loader.tokens if t in predictions and t not in store_view and t not in missing}
    )
    with ScoringPool(caches_root, settings.version, workers=settings.workers) as pool:
        tables = pool.score([(t, predictions[t][None]) for t in tokens])
    if settings.version == "v2":  # EC of each scene against the plan of the scene 0.5 s before it in its log
        apply_two_frame_comfort(tables)
    if progress is not None:
        progress("score", len(tables), len(tables))

    csv_path = write_score_csv(out / f"{settings.version}_scores.csv", tables, settings.version)
    average = official_rows(tables, settings.version)[-1] if tables else {}
    metrics = {name: float(average[name]) for name in METRIC_COLUMNS[settings.version] if name in average}
    scores = [float(t.columns["score"][0]) if t.valid[0] else 0.0 for t in tables]
    listed = len(tokens) + sum(not token.startswith("log:") for token in missing)  # log entries are no scenes
    metrics["score_with_missing_as_zero"] = float(sum(scores) / listed) if listed else float("nan")
    plots = _plot_worst(tables, predictions, store_view, out / "worst", settings.worst)
    summary = _write_summary(
        out / "summary.md",
        metrics,
        tables,
        missing,
        settings,
        split.omega,
        split.steps,
        model_name,
        split_file.stem,
        plots,
    )
    atomic_write_text(out / "metrics.json", json.dumps({**metrics, "scored": len(tables), "missing": len(missing)}))
    return EvalResult(out, csv_path, summary, plots, metrics, len(tables), missing)


@dataclass
class SplitPredictions:
    """One trajectory per loadable scene of a split, the split's own token list and what could not be loaded."""

    loader: SceneLoader
    predictions: dict[str, np.ndarray]  # token -> [8, 3]
    required_tokens: list[str]  # every token the split names (the leaderboard wants all of them)
    missing: dict[str, str]  # token -> why it has no prediction
    omega: float  # the guidance the predictions used (the model's chosen one unless the settings said otherwise)
    steps: int  # the denoising steps they used


def predict_split(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    settings: EvalSettings,
    model_name: str = "",
    progress: Progress | None = None,
) -> SplitPredictions:
    """Predict every loadable scene of a split into the resumable prediction ``folder`` (see predictions.py)."""
    split_file = Path(split_file)
    loader = SceneLoader.from_split_file(split_file, data_root, settings.max_scenes)
    missing = _unloaded(loader)
    omega = model.config.guidance_omega if settings.omega is None else float(settings.omega)
    steps = settings.steps or model.config.head.sample_steps
    dataset = SceneDataset.for_model(loader, model)
    store = PredictionStore(
        folder,
        {
            "model": model_name,
            "model_fingerprint": model_fingerprint(model),
            "split": str(split_file.resolve()),
            "data_root": str(Path(data_root).resolve()),
            "omega": omega,
            "steps": steps,
            "seed": settings.seed,
            "batch_size": settings.batch_size,
            "max_scenes": settings.max_scenes,
        },
    )
    done = 0

    def predicted(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress("predict", done, len(dataset))

    result = predict_scenes(
        model,
        dataset,
        steps=steps,
        omega=omega,
        seed=settings.seed,
        batch_size=settings.batch_size,
        store=store,
        progress=predicted,
    )
    missing.update(result.failed)
    scene_filter = loader.scene_filter
    listed = list(scene_filter.tokens) if scene_filter.tokens and not settings.max_scenes else list(loader.tokens)
    required = listed + [t for t in missing if not t.startswith("log:") and t not in listed]
    return SplitPredictions(loader, result.first(), required, missing, omega, steps)


def _unloaded(loader: SceneLoader) -> dict[str, str]:
    """Scenes the split names that could not be loaded, with the reason."""
    report = loader.report
    missing = {token: "listed in the split, found in no log" for token in report.missing_tokens}
    for record in report.skipped_scenes:
        missing[record.token or f"log:{record.log_name}"] = f"{record.kind}: {record.detail}"
    for record in report.skipped_logs:
        missing[f"log:{record.log_name}"] = f"{record.kind}: {record.detail}"
    for log in report.missing_logs:
        missing[f"log:{log}"] = "log named by the split has no file"
    return missing


def worst_scenes(tables: Sequence[ScoreTable], count: int) -> list[ScoreTable]:
    """The ``count`` lowest-scoring scenes by the version's score, then every scene that drove the wrong way (which
    PDMS v1.1 reports but does not score) among the next lowest, up to ``count`` more."""
    if count <= 0:
        return []
    order = sorted(tables, key=lambda t: float(t.columns["score"][0]) if t.valid[0] else -1.0)
    worst = order[:count]
    return worst + [table for table in order[count:] if drove_the_wrong_way(table)][:count]


def _plot_worst(tables: Sequence[ScoreTable], predictions, store: MetricCacheStore, folder: Path, count: int):
    plots = []
    for rank, table in enumerate(worst_scenes(tables, count)):
        try:
            plots.append(
                plot_scene(
                    store[table.token], table, predictions[table.token], folder / f"{rank:02d}_{table.token}.png"
                )
            )
        except Exception as error:  # a plot must never sink an evaluation
            LOG.warning("BEV plot of %s failed: %s", table.token, error)
    return plots


def _write_summary(path: Path, metrics, tables, missing, settings, omega, steps, model_name, split, plots) -> Path:
    lines = [
        f"# Evaluation of {model_name or 'the model'} on {split}",
        "",
        f"{len(tables)} scenes scored ({'PDMS v1.1' if settings.version == 'v1' else 'EPDMS v2, one stage'}); "
        f"omega {omega:g}, {steps} denoising steps, seed {settings.seed}.",
        "",
        "| metric | mean |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    wrong_way = sum(drove_the_wrong_way(table) for table in tables)
    if wrong_way:
        unscored = " (PDMS v1.1 reports driving-direction compliance but does not score it)"
        lines += [
            "",
            f"{wrong_way} of {len(tables)} scenes drove the wrong way{unscored if settings.version == 'v1' else ''}.",
        ]
    if plots:
        lines += ["", "## Lowest-scoring scenes (and scenes that drove the wrong way)", ""]
        by_token = {t.token: t for t in tables}
        for plot in plots:
            token = plot.stem.split("_", 1)[1]
            table = by_token[token]
            score = float(table.columns["score"][0]) if table.valid[0] else 0.0
            wrong_way = " (drove the wrong way)" if drove_the_wrong_way(table) else ""
            lines.append(
                f"- `{token}` score {score:.3f}{wrong_way}: {', '.join(failing_metrics(table)) or 'nothing failed'} "
                f"([plot](worst/{plot.name}))"
            )
    if missing:
        lines += ["", f"## {len(missing)} scenes without a score", ""]
        lines += [f"- `{token}`: {reason}" for token, reason in sorted(missing.items())[:200]]
        if len(missing) > 200:
            lines.append(f"- ... and {len(missing) - 200} more")
    return atomic_write_text(path, "\n".join(lines) + "\n")
