"""``vla-drive eval`` / ``submit`` on a navhard-style two-stage split (the NAVSIM v2 leaderboard).

The model predicts every scene of both stages: the stage-one scenes of the split's logs and the synthetic
second-stage scenes (``<data root>/<synthetic split>/synthetic_scene_pickles``, their camera images in the
``sensor_blobs`` beside them), each seeded by its token, into resumable prediction folders. Scoring is
navsim_eval's two-stage scorer (reactive traffic in both stages, second-stage scenes weighted by the first stage's
endpoint), written as the official two-stage CSV.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from navsim_eval.atomic import atomic_write_text
from navsim_eval.csv_io import write_two_stage_csv
from navsim_eval.data.splits import Split, load_split
from navsim_eval.data.synthetic_scenes import SENSOR_BLOBS_DIR
from navsim_eval.data.two_stage import TwoStageScenes, default_synthetic_scenes_dir, load_two_stage_scenes
from navsim_eval.pdm.cache_build import two_stage_metric_caches, write_metric_caches
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.two_stage import COMBINED, STAGE_ONE, STAGE_TWO, score_two_stage
from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.predictions import PredictionStore, ScenePredictions, predict_scenes
from vla_drive.model.vla import DrivingVLA, model_fingerprint

LOG = logging.getLogger(__name__)
CSV_FILE = "v2_two_stage_scores.csv"


def is_two_stage(split_file: str | os.PathLike[str]) -> bool:
    """Whether a split file has a ``reactive_all_mapping`` (both stages to predict and score)."""
    path = Path(split_file)
    return load_split(path.parent, path.stem).two_stage is not None


@dataclass
class TwoStagePredictions:
    """One trajectory per token of both stages, the scenes loaded, and what has no prediction (token -> why)."""

    split: Split
    scenes: TwoStageScenes
    predictions: dict[str, object]  # token -> [8, 3]
    missing: dict[str, str]
    omega: float
    steps: int

    def stage_tokens(self) -> tuple[list[str], list[str]]:
        """The tokens the leaderboard wants: every stage-one token, every synthetic token of the mapping."""
        return self.split.stage_one_tokens(), self.split.stage_two_tokens()


def predict_two_stage(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None,
    folder: str | os.PathLike[str],
    *,
    omega: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    synthetic_dir: str | os.PathLike[str] | None = None,
    model_name: str = "",
) -> TwoStagePredictions:
    """Predict both stages of a two-stage split into ``folder/stage_one`` and ``folder/stage_two`` (resumable)."""
    path = Path(split_file)
    split = load_split(path.parent, path.stem)
    synthetic = Path(synthetic_dir) if synthetic_dir is not None else default_synthetic_scenes_dir(data_root)
    scenes = load_two_stage_scenes(split, data_root, synthetic, synthetic.parent / SENSOR_BLOBS_DIR)
    report = scenes.missing_report()
    if report:
        LOG.warning("%s", report)
    omega = model.config.guidance_omega if omega is None else float(omega)
    steps = steps or model.config.head.sample_steps
    settings = {
        "model": model_name,
        "model_fingerprint": model_fingerprint(model),
        "split": str(path.resolve()),
        "omega": omega,
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
    }
    wanted_one = set(split.stage_one_tokens())
    stage_one = [scenes.stage_one[t] for t in scenes.stage_one.tokens if t in wanted_one]
    stage_two = [synthetic_scene.scene for synthetic_scene in scenes.stage_two.values()]
    result = ScenePredictions()
    for name, stage in (("stage_one", stage_one), ("stage_two", stage_two)):
        if not stage:
            continue
        store = PredictionStore(Path(folder) / name, {**settings, "stage": name})
        dataset = SceneDataset.for_model(stage, model)
        result.update(
            predict_scenes(model, dataset, steps=steps, omega=omega, seed=seed, batch_size=batch_size, store=store)
        )
    missing = dict(result.failed)
    missing.update(
        {t: "no scene (see the split's mapping)" for t in scenes.missing_stage_one + scenes.missing_stage_two}
    )
    return TwoStagePredictions(split, scenes, result.first(), missing, omega, steps)


def evaluate_two_stage(
    model: DrivingVLA,
    split_file: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None,
    maps_root: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    omega: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    workers: int = 1,
    metric_cache: str | os.PathLike[str] | None = None,
    synthetic_dir: str | os.PathLike[str] | None = None,
    model_name: str = "",
) -> dict[str, object]:
    """Predict and score both stages; writes ``v2_two_stage_scores.csv`` (official layout), ``summary.md`` and
    ``metrics.json`` into ``out_dir`` and returns the metrics (stage one, stage two and the combined EPDMS)."""
    out = Path(out_dir)
    predicted = predict_two_stage(
        model,
        split_file,
        data_root,
        out / "predictions",
        omega=omega,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        synthetic_dir=synthetic_dir,
        model_name=model_name,
    )
    caches_root = Path(metric_cache) if metric_cache else out / "metric_cache"
    store = MetricCacheStore(caches_root)
    one, two = predicted.stage_tokens()
    if any(token not in store for token in one + two):
        report = write_metric_caches(two_stage_metric_caches(predicted.scenes, maps_root), caches_root)
        store = report.store
        for source, reason in report.skipped:
            LOG.warning("no metric cache from %s: %s", source, reason)
    result = score_two_stage(store, predicted.predictions, predicted.split.two_stage, workers=workers)
    csv_path = write_two_stage_csv(out / CSV_FILE, result)
    metrics = {
        "stage_one": result.summary[STAGE_ONE]["score"],
        "stage_two": result.summary[STAGE_TWO]["score"],
        "score": result.combined_score,
        "entries_aggregated": result.entries_used,
        "entries": len(predicted.split.two_stage),
        "missing": len(result.missing),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics))
    lines = [
        f"# Two-stage evaluation of {model_name or 'the model'} on {predicted.split.name}",
        "",
        f"EPDMS v2, two stages, reactive traffic; omega {predicted.omega:g}, {predicted.steps} denoising steps, "
        f"seed {seed}. {result.entries_used} of {len(predicted.split.two_stage)} entries aggregated.",
        "",
        "| stage | EPDMS |",
        "|---|---|",
        f"| stage one ({len(one)} scenes) | {metrics['stage_one']:.4f} |",
        f"| stage two ({len(two)} synthetic scenes, weighted) | {metrics['stage_two']:.4f} |",
        f"| combined | {metrics['score']:.4f} |",
    ]
    unscored = sorted(set(result.missing) | set(predicted.missing))
    if unscored:
        lines += ["", f"## {len(unscored)} tokens without a valid score", ""]
        lines += [f"- `{t}`: {predicted.missing.get(t, 'no valid score')}" for t in unscored[:200]]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    LOG.info("wrote %s", csv_path)
    return {**metrics, "csv": csv_path, "summary": out / "summary.md", "combined_row": COMBINED}
