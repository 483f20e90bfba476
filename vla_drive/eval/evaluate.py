"""Predict a split with a DrivingVLA and score it like the leaderboard (one trajectory per scene)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.scoring import SceneScorer, summarize


@torch.no_grad()
def predict_dataset(
    model,
    dataset: SceneDataset,
    *,
    num_samples: int = 1,
    steps: int | None = None,
    omega: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Trajectories [K, 8, 3] per scene token; batch b uses seed + b so results do not depend on batching order."""
    out: dict[str, np.ndarray] = {}
    for batch_index, start in enumerate(range(0, len(dataset), batch_size)):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        trajectories = model.predict(samples, num_samples, steps, omega, seed=seed + batch_index)
        out.update({s.token: t for s, t in zip(samples, trajectories, strict=True)})
        if progress is not None:
            progress(len(samples))
    return out


def evaluate_model(
    model,
    dataset: SceneDataset,
    scorer: SceneScorer,
    *,
    steps: int | None = None,
    omega: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, float]:
    """Mean PDMS (or EPDMS) and sub-metrics of the model's trajectories on the scenes the scorer knows."""
    predictions = predict_dataset(model, dataset, steps=steps, omega=omega, seed=seed, batch_size=batch_size)
    tokens = [token for token in predictions if token in scorer]
    tables = scorer.score(tokens, np.stack([predictions[token] for token in tokens]))
    return summarize(tables)
