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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
from vla_drive.eval.predictions import PredictionError, PredictionStore, ScenePredictions, predict_scenes
from vla_drive.eval.scoring import build_metric_caches
from vla_drive.model.card import ModelCardError, record_evaluation
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
    temperature: float = 1.0  # scale of the sampler's noise (1 = as trained; 0 = the noise-free plan)
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


PREDICTIONS_DIR = "predictions"
_SHARD_DIR = re.compile(r"^shard-(\d+)-of-(\d+)$")
_SCORE_CHUNK = 64  # scenes scored between two progress reports


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
    model_dir: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Evaluate ``model`` (a DrivingVLA) on a NAVSIM split file; see the module doc for what is written. With
    ``model_dir`` (the model's saved directory) the result is also recorded on its model card."""
    settings = settings or EvalSettings()
    _check_version(settings)
    out = Path(out_dir)
    split = predict_split(model, split_file, data_root, out / PREDICTIONS_DIR, settings, model_name, progress)
    return score_split(split, maps_root, out, settings, metric_cache, model_name, progress, model_dir)


def shard_folder(predictions: str | os.PathLike[str], shard: tuple[int, int]) -> Path:
    """Where shard ``(i, n)`` keeps its predictions, inside the prediction folder of the unsharded run."""
    return Path(predictions) / f"shard-{shard[0]}-of-{shard[1]}"


def predict_shard(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    predictions: str | os.PathLike[str],
    settings: EvalSettings,
    shard: tuple[int, int],
    model_name: str = "",
    progress: Progress | None = None,
) -> Path:
    """Predict shard ``(i, n)`` of a split (batch b goes to shard b mod n, as predict_scenes shards ranks) into its
    own resumable folder under the prediction folder ``predictions``; :func:`read_shards` collects them."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= i < n")
    folder = shard_folder(predictions, shard)
    predict_split(model, split_file, data_root, folder, settings, model_name, progress, shard=shard)
    return folder


def merge_shards(
    out_dir: str | os.PathLike[str],
    maps_root: str | os.PathLike[str],
    settings: EvalSettings | None = None,
    *,
    data_root: str | os.PathLike[str] | None = None,
    metric_cache: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Score the shards of ``<out_dir>/predictions`` (all of one split into n, made with the same settings) and
    write the same files an unsharded evaluation writes; the CSV is byte for byte the unsharded one. ``settings``
    gives the scoring (version, workers, plots); the prediction settings come from the shards."""
    settings = settings or EvalSettings()
    _check_version(settings)
    split, meta = read_shards(Path(out_dir) / PREDICTIONS_DIR, data_root)
    model_name = str(meta.get("model", ""))
    if model_dir is None and model_name and (Path(model_name) / "vla_config.json").is_file():
        model_dir = model_name  # the model the shards were predicted with: its card gets the result
    scoring = replace(settings, seed=int(meta["seed"]), max_scenes=meta.get("max_scenes"))
    return score_split(split, maps_root, Path(out_dir), scoring, metric_cache, model_name, progress, model_dir)


def read_shards(
    predictions: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None
) -> tuple[SplitPredictions, dict]:
    """The predictions of every shard in a prediction folder, checked complete and consistent, and their
    settings; ``data_root`` overrides the one the shards recorded (data moved since)."""
    root = Path(predictions)
    found = {}
    for folder in sorted(root.glob("shard-*-of-*")) if root.is_dir() else []:
        match = _SHARD_DIR.match(folder.name)
        if match and folder.is_dir():
            found[(int(match.group(1)), int(match.group(2)))] = folder
    if not found:
        raise PredictionError(
            f"{root}: no shard folders (shard-<i>-of-<n>); predict them first with vla-drive eval --shard i/n"
        )
    counts = sorted({n for _, n in found})
    if len(counts) > 1:
        raise PredictionError(f"{root}: shards of {' and '.join(map(str, counts))}-way splits; remove the stale ones")
    count = counts[0]
    absent = [i for i in range(count) if (i, count) not in found]
    if absent:
        raise PredictionError(f"{root}: shard(s) {absent} of {count} are missing; run vla-drive eval --shard i/{count}")
    stores = [PredictionStore.existing(found[(i, count)]) for i in range(count)]
    reference = {k: v for k, v in stores[0].settings.items() if k != "shard"}
    for store in stores[1:]:
        other = {k: v for k, v in store.settings.items() if k != "shard"}
        if other != reference:
            keys = sorted(k for k in set(other) | set(reference) if other.get(k) != reference.get(k))
            raise PredictionError(
                f"{store.directory}: made with other settings than {stores[0].directory.name} ({', '.join(keys)}); "
                "predict every shard with the same command"
            )
    meta = reference
    loader = SceneLoader.from_split_file(meta["split"], data_root or meta["data_root"], meta.get("max_scenes"))
    missing = _unloaded(loader)
    batch_size = int(meta["batch_size"])
    predictions = ScenePredictions()
    for index in range(-(-len(loader.tokens) // batch_size)):
        store = stores[index % count]
        if not store.done(index):
            raise PredictionError(
                f"{store.directory}: batch {index} is not predicted yet; run that shard's command again to finish it"
            )
        predictions.update(ScenePredictions(*store.read(index)))
    missing.update(predictions.failed)
    split = SplitPredictions(
        loader,
        predictions.first(),
        _required_tokens(loader, missing, meta.get("max_scenes")),
        missing,
        float(meta["omega"]),
        int(meta["steps"]),
        Path(meta["split"]),
    )
    return split, meta


def score_split(
    split: SplitPredictions,
    maps_root: str | os.PathLike[str],
    out: Path,
    settings: EvalSettings,
    metric_cache: str | os.PathLike[str] | None = None,
    model_name: str = "",
    progress: Progress | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Metric caches, scores, the official CSV, summary, BEV plots and metrics.json of predicted scenes."""
    loader, predictions, missing = split.loader, split.predictions, dict(split.missing)
    caches_root = Path(metric_cache) if metric_cache else out / "metric_cache"
    no_cache = build_metric_caches(loader, maps_root, caches_root, progress=progress, workers=settings.workers)
    missing.update(no_cache)
    store_view = MetricCacheStore(caches_root)
    tokens = [t for t in loader.tokens if t in predictions and t in store_view]
    missing.update(
        {t: "no metric cache" for t in loader.tokens if t in predictions and t not in store_view and t not in missing}
    )
    tables = []
    with ScoringPool(caches_root, settings.version, workers=settings.workers) as pool:
        for start in range(0, len(tokens), _SCORE_CHUNK):
            chunk = tokens[start : start + _SCORE_CHUNK]
            tables += pool.score([(t, predictions[t][None]) for t in chunk])
            if progress is not None:
                progress("score", len(tables), len(tokens))
    if settings.version == "v2":  # EC of each scene against the plan of the scene 0.5 s before it in its log
        apply_two_frame_comfort(tables)

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
        split.split_file.stem,
        plots,
    )
    atomic_write_text(out / "metrics.json", json.dumps({**metrics, "scored": len(tables), "missing": len(missing)}))
    result = EvalResult(out, csv_path, summary, plots, metrics, len(tables), missing)
    if model_dir is not None:
        _record_on_card(Path(model_dir), split, settings, result)
    return result


def _record_on_card(model_dir: Path, split: SplitPredictions, settings: EvalSettings, result: EvalResult) -> None:
    """Add the result to the model's evaluation record and card (a read-only model directory only warns)."""
    try:
        record_evaluation(
            model_dir,
            split=split.split_file.stem,
            version=settings.version,
            metrics=result.metrics,
            scenes=result.scored,
            missing=sum(not token.startswith("log:") for token in result.missing),
            omega=split.omega,
            steps=split.steps,
            seed=settings.seed,
        )
    except (OSError, ModelCardError) as error:
        LOG.warning("the result is not recorded on the model card of %s: %s", model_dir, error)


def _check_version(settings: EvalSettings) -> None:
    if settings.version not in METRIC_COLUMNS:
        raise ValueError(f"eval: unknown score version {settings.version!r}; expected one of {sorted(METRIC_COLUMNS)}")


@dataclass
class SplitPredictions:
    """One trajectory per loadable scene of a split, the split's own token list and what could not be loaded."""

    loader: SceneLoader
    predictions: dict[str, np.ndarray]  # token -> [8, 3]
    required_tokens: list[str]  # every token the split names (the leaderboard wants all of them)
    missing: dict[str, str]  # token -> why it has no prediction
    omega: float  # the guidance the predictions used (the model's chosen one unless the settings said otherwise)
    steps: int  # the denoising steps they used
    split_file: Path = field(default_factory=Path)


def predict_split(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    settings: EvalSettings,
    model_name: str = "",
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
) -> SplitPredictions:
    """Predict every loadable scene of a split (or the batches of ``shard``) into the resumable prediction
    ``folder`` (see predictions.py)."""
    split_file = Path(split_file)
    loader = SceneLoader.from_split_file(split_file, data_root, settings.max_scenes)
    missing = _unloaded(loader)
    omega = model.config.guidance_omega if settings.omega is None else float(settings.omega)
    steps = settings.steps or model.config.head.sample_steps
    dataset = SceneDataset.for_model(loader, model)
    store_settings = {
        "model": model_name,
        "model_fingerprint": model_fingerprint(model),
        "split": str(split_file.resolve()),
        "data_root": str(Path(data_root).resolve()),
        "omega": omega,
        "steps": steps,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "max_scenes": settings.max_scenes,
    }
    if settings.temperature != 1.0:  # recorded only when set, so stores written before it stay valid
        store_settings["temperature"] = settings.temperature
    if shard[1] > 1:
        store_settings["shard"] = list(shard)
    store = PredictionStore(folder, store_settings)
    mine = sum(min(settings.batch_size, len(dataset) - start) for start in _batches(len(dataset), settings, shard))
    done = 0

    def predicted(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress("predict" if shard[1] == 1 else f"predict shard {shard[0]}/{shard[1]}", done, mine)

    result = predict_scenes(
        model,
        dataset,
        steps=steps,
        omega=omega,
        seed=settings.seed,
        temperature=settings.temperature,
        batch_size=settings.batch_size,
        store=store,
        progress=predicted,
        shard=shard,
    )
    missing.update(result.failed)
    required = _required_tokens(loader, missing, settings.max_scenes)
    return SplitPredictions(loader, result.first(), required, missing, omega, steps, split_file)


def _batches(count: int, settings: EvalSettings, shard: tuple[int, int]) -> list[int]:
    """The first scene of every batch that ``shard`` predicts."""
    return list(range(0, count, settings.batch_size))[shard[0] :: shard[1]]


def _required_tokens(loader: SceneLoader, missing: dict[str, str], max_scenes: int | None) -> list[str]:
    scene_filter = loader.scene_filter
    listed = list(scene_filter.tokens) if scene_filter.tokens and not max_scenes else list(loader.tokens)
    return listed + [t for t in missing if not t.startswith("log:") and t not in listed]


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
        f"omega {omega:g}, {steps} denoising steps, seed {settings.seed}"
        f"{'' if settings.temperature == 1.0 else f', sampler temperature {settings.temperature:g}'}.",
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
