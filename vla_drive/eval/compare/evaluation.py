"""Evaluating one compared model: its knob grid on validation (the knob is chosen there), then the test split once
at the chosen knob, scored in PDMS v1.1 and EPDMS v2 per scene, with the distance each plan drives next to the
logged human's and the drift of its validation plans from the imitation policy's.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_bytes
from navsim_eval.data.loader import SceneLoader
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.compare.knobs import PredictionSettings
from vla_drive.eval.predictions import predict_scenes
from vla_drive.eval.scoring import SceneScorer, summarize
from vla_drive.model.vla import DrivingVLA


@dataclass
class GridResult:
    """Validation rows per knob value, the chosen value and its plans."""

    rows: list[dict[str, float]]
    chosen: float
    plans: dict[str, np.ndarray]  # token -> [8, 3] at the chosen knob


def predict_plans(
    model: DrivingVLA, dataset: SceneDataset, settings: PredictionSettings, seed: int, batch_size: int
) -> tuple[dict[str, np.ndarray], float]:
    """One plan per scene (the first sample of the seeded sampler) and the prediction seconds per scene."""
    started = time.perf_counter()
    plans = predict_scenes(
        model,
        dataset,
        steps=settings.steps,
        omega=settings.omega,
        seed=seed,
        batch_size=batch_size,
        temperature=settings.temperature,
    ).first()
    return plans, (time.perf_counter() - started) / max(len(plans), 1)


def sweep_knob(
    model: DrivingVLA,
    dataset: SceneDataset,
    scorer: SceneScorer,
    grid: Sequence[float],
    settings_of: Callable[[float], PredictionSettings],
    seed: int,
    batch_size: int,
    widen: int = 0,
    beyond: Callable[[Sequence[float]], float] | None = None,
) -> GridResult:
    """Every knob value on validation (same seed: paired); the chosen one has the highest mean score, the first in
    grid order on ties. While the chosen value is the largest tried, up to ``widen`` more are tried, each
    ``beyond(values tried)``."""
    rows, plans_of = [], {}

    def evaluate(knob: float) -> None:
        plans, seconds = predict_plans(model, dataset, settings_of(knob), seed, batch_size)
        summary = summarize(scorer.score_plans(plans))
        rows.append({"knob": float(knob), **summary, "predict_seconds_per_scene": seconds})
        plans_of[float(knob)] = plans

    def best() -> float:
        return float(max(rows, key=lambda row: (_finite(row.get("score", float("nan"))), -rows.index(row)))["knob"])

    for knob in grid:
        evaluate(knob)
    for _ in range(widen if beyond is not None else 0):
        tried = [row["knob"] for row in rows]
        if len(tried) < 2 or best() != max(tried):
            break
        evaluate(beyond(tried))
    chosen = best()
    return GridResult(rows, chosen, plans_of[chosen])


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else -np.inf


def scene_rows(
    loader: SceneLoader,
    plans: Mapping[str, np.ndarray],
    tables: Mapping[str, Sequence[ScoreTable]],
    scenarios: Mapping[str, str],
) -> list[dict[str, object]]:
    """One row per test scene: token, log, scenario, every metric of every score version (``v1_score``, ...; an
    unscorable scene scores 0, as on the leaderboard), the distance the plan drives and the human's."""
    by_version = {version: {t.token: t for t in found} for version, found in tables.items()}
    rows = []
    for token in loader.tokens:
        if token not in plans:
            continue
        scene = loader[token]
        row: dict[str, object] = {"token": token, "log": scene.log_name, "scenario": scenarios.get(token, "unlabelled")}
        for version, found in by_version.items():
            table = found.get(token)
            for name in METRIC_COLUMNS[version]:
                if table is None:
                    value = float("nan")
                elif name == "score" and not table.valid[0]:
                    value = 0.0
                else:
                    value = float(table.columns[name][0])
                row[f"{version}_{name}"] = value
        row["distance"] = path_length(plans[token])
        row["human_distance"] = path_length(scene.future_trajectory().poses)
        rows.append(row)
    return rows


def path_length(poses: np.ndarray) -> float:
    """Metres driven along a plan [8, 3] from the ego's position (the origin of its frame)."""
    xy = np.concatenate([np.zeros((1, 2)), np.asarray(poses, dtype=np.float64)[:, :2]])
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())


def plan_drift(plans: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """Mean distance (metres, over waypoints and shared scenes) between two policies' plans of the same scenes."""
    shared = [token for token in plans if token in reference]
    if not shared:
        return float("nan")
    gaps = [np.linalg.norm(plans[t][:, :2] - reference[t][:, :2], axis=1).mean() for t in shared]
    return float(np.mean(gaps))


def save_plans(path: Path, plans: Mapping[str, np.ndarray]) -> None:
    """The plans of a split as ``tokens`` / ``plans`` arrays (read back by :func:`load_plans`)."""
    buffer = io.BytesIO()
    tokens = list(plans)
    np.savez(
        buffer,
        tokens=np.array(tokens, dtype=str),
        plans=np.stack([plans[t] for t in tokens]) if tokens else np.zeros((0, 8, 3)),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_plans(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["tokens"].tolist(), data["plans"], strict=True))
