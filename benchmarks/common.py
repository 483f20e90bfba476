"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def perturbed_candidates(trajectory: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K plausible candidates around an ego-frame trajectory [8, 3]: noise growing along the horizon; the first
    candidate is the trajectory itself."""
    noise = rng.normal(0.0, 1.0, size=(k, 8, 3)) * np.array([0.5, 0.3, 0.02]) * np.linspace(0.2, 1.0, 8)[:, None]
    candidates = trajectory[None] + noise
    candidates[0] = trajectory
    return candidates


def clustered_bootstrap_ci(
    values: np.ndarray, clusters: list[str], samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-scene ``values`` (e.g. paired score differences) and its ``level`` bootstrap interval,
    resampling whole clusters (e.g. logs: scenes of one log are not independent) with replacement; each resample's
    mean is over all the scenes of the clusters drawn. Returns (mean, low, high)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or len(clusters) != values.size:
        raise ValueError(f"clustered_bootstrap_ci: {values.size} values for {len(clusters)} cluster labels")
    names = sorted(set(clusters))
    index = {name: i for i, name in enumerate(names)}
    label = np.array([index[c] for c in clusters])
    sums = np.bincount(label, weights=values, minlength=len(names))
    counts = np.bincount(label, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(samples, len(names)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)
