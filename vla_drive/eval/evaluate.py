"""Predict a split with a DrivingVLA and score it like the leaderboard (one trajectory per scene)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vla_drive.eval.predictions import predict_scenes
from vla_drive.eval.scoring import SceneScorer, summarize
from vla_drive.model.vla import DrivingVLA


def evaluate_model(
    model: DrivingVLA,
    dataset: Any,
    scorer: SceneScorer,
    *,
    steps: int | None = None,
    omega: float | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Mean PDMS (or EPDMS) and sub-metrics of the model's trajectories on the scenes the scorer knows
    (``progress(n)`` is told how many scenes each predicted batch covered)."""
    predictions = predict_scenes(
        model,
        dataset,
        steps=steps,
        omega=omega,
        seed=seed,
        temperature=temperature,
        batch_size=batch_size,
        progress=progress,
    ).first()
    return summarize(scorer.score_plans(predictions))
