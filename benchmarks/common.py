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
