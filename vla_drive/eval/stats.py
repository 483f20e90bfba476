"""Statistics of a comparison between policies: paired differences with a bootstrap confidence interval over scenes
clustered by log, seeds paired; mean and spread over seeds; the area under a learning curve.

Scenes of one log share a town, a scenario and a driver, so their scores are not independent: the bootstrap draws
whole logs (with replacement) and keeps every scene of a drawn log. Seeds are paired: the two policies of one seed
were scored on the same scenes (that seed's world), the difference is taken scene by scene inside a seed, and each
resample draws logs inside every seed, so seed-to-seed variation of the worlds never enters a difference. The
estimate is the mean over seeds of each seed's mean scene difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SeedScores:
    """Per-scene scores of two policies on the same scenes of one seed, and the log of every scene."""

    a: np.ndarray  # [scenes]
    b: np.ndarray  # [scenes]
    logs: Sequence[str]  # [scenes]

    def __post_init__(self) -> None:
        if not (len(self.a) == len(self.b) == len(self.logs)):
            raise ValueError(f"SeedScores: {len(self.a)}, {len(self.b)} scores and {len(self.logs)} logs differ")


@dataclass(frozen=True)
class PairedDifference:
    """``a - b``: the mean over seeds of the mean scene difference, a percentile bootstrap interval, and per seed."""

    mean: float
    low: float
    high: float
    per_seed: dict[int, float] = field(default_factory=dict)
    scenes: int = 0
    logs: int = 0  # clusters the bootstrap drew from (summed over seeds); an interval over 1 log per seed is 0 wide

    @property
    def has_interval(self) -> bool:
        """Whether the bootstrap had logs to draw from (some seed has more than one test log)."""
        return self.logs > len(self.per_seed)

    def excludes_zero(self) -> bool:
        """Whether there is an interval and it lies entirely on one side of zero."""
        return self.has_interval and bool(self.low > 0 or self.high < 0)


def paired_difference(
    seeds: Mapping[int, SeedScores], confidence: float = 0.95, resamples: int = 2000, rng_seed: int = 0
) -> PairedDifference:
    """The paired difference ``a - b`` over ``seeds`` with its ``confidence`` interval (see the module doc). Scenes
    where either score is not finite are left out of both."""
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence must be in (0, 1), got {confidence}")
    clusters: dict[int, list[np.ndarray]] = {}
    per_seed: dict[int, float] = {}
    scenes = 0
    for seed, pair in sorted(seeds.items()):
        diff = np.asarray(pair.a, dtype=np.float64) - np.asarray(pair.b, dtype=np.float64)
        keep = np.isfinite(diff)
        if not keep.any():
            continue
        logs = np.asarray(list(pair.logs), dtype=object)[keep]
        diff = diff[keep]
        clusters[seed] = [diff[logs == log] for log in dict.fromkeys(logs.tolist())]
        per_seed[seed] = float(diff.mean())
        scenes += len(diff)
    if not per_seed:
        nan = float("nan")
        return PairedDifference(nan, nan, nan)
    rng = np.random.default_rng(rng_seed)
    sums = {seed: np.array([c.sum() for c in groups]) for seed, groups in clusters.items()}
    sizes = {seed: np.array([len(c) for c in groups]) for seed, groups in clusters.items()}
    draws = np.zeros(resamples)
    for seed in clusters:
        picked = rng.integers(0, len(sums[seed]), size=(resamples, len(sums[seed])))
        draws += sums[seed][picked].sum(axis=1) / sizes[seed][picked].sum(axis=1)
    draws /= len(clusters)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    mean = float(np.mean(list(per_seed.values())))
    logs = sum(len(groups) for groups in clusters.values())
    return PairedDifference(mean, float(low), float(high), per_seed, scenes, logs)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the finite values; NaN for none."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(finite):
        return float("nan"), float("nan")
    return float(finite.mean()), float(finite.std())


def curve_area(x: Sequence[float], y: Sequence[float]) -> float:
    """The area under a learning curve divided by its span: the curve's mean height over training (trapezoids;
    the value itself for a single point). Comparable between runs of the same length only."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not len(x):
        return float("nan")
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))
