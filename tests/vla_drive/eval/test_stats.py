"""Paired differences clustered by log, seeds paired; mean / spread; learning-curve area."""

from __future__ import annotations

import numpy as np
import pytest

from vla_drive.eval.stats import SeedScores, curve_area, mean_std, paired_difference


def _seed(diffs_by_log: dict[str, list[float]], base: float = 0.5) -> SeedScores:
    logs = [log for log, diffs in diffs_by_log.items() for _ in diffs]
    diffs = np.array([d for values in diffs_by_log.values() for d in values])
    b = np.full(len(diffs), base)
    return SeedScores(b + diffs, b, logs)


def test_the_estimate_is_the_mean_over_seeds_of_each_seeds_mean_scene_difference():
    seeds = {0: _seed({"l0": [0.1, 0.1], "l1": [0.3]}), 1: _seed({"l2": [0.0, 0.2]})}
    result = paired_difference(seeds, resamples=200)
    assert result.per_seed == pytest.approx({0: (0.1 + 0.1 + 0.3) / 3, 1: 0.1})
    assert result.mean == pytest.approx(((0.5 / 3) + 0.1) / 2)
    assert result.scenes == 5 and result.logs == 3
    assert result.low <= result.mean <= result.high


def test_a_constant_difference_has_a_zero_width_interval_on_it():
    seeds = {s: _seed({f"l{i}": [0.05] * 3 for i in range(4)}) for s in range(3)}
    result = paired_difference(seeds, resamples=300)
    assert result.low == pytest.approx(0.05) and result.high == pytest.approx(0.05)
    assert result.excludes_zero()


def test_clustering_by_log_widens_the_interval_over_treating_scenes_as_independent():
    rng = np.random.default_rng(0)
    # ten logs, each with its own offset shared by its 20 scenes: the scenes of a log are not independent
    offsets = rng.normal(0, 0.1, size=10)
    clustered = {f"l{i}": list(offsets[i] + rng.normal(0, 0.01, size=20)) for i in range(10)}
    as_logs = paired_difference({0: _seed(clustered)}, resamples=2000)
    scenes = {f"s{i}": [v] for i, v in enumerate(v for values in clustered.values() for v in values)}
    as_scenes = paired_difference({0: _seed(scenes)}, resamples=2000)
    assert as_logs.mean == pytest.approx(as_scenes.mean)
    assert (as_logs.high - as_logs.low) > 2 * (as_scenes.high - as_scenes.low)


def test_seeds_are_paired_a_world_offset_shared_by_both_policies_cancels():
    # seed 1's world is much easier for both policies: the difference is the same 0.02 in every seed
    seeds = {s: _seed({f"l{i}": [0.02, 0.02] for i in range(3)}, base=0.2 + 0.6 * s) for s in range(2)}
    result = paired_difference(seeds, resamples=200)
    assert result.mean == pytest.approx(0.02) and result.high - result.low == pytest.approx(0.0)


def test_non_finite_scenes_are_left_out_and_nothing_finite_gives_nan():
    pair = SeedScores(np.array([0.6, np.nan, 0.7]), np.array([0.5, 0.5, np.nan]), ["a", "a", "b"])
    result = paired_difference({0: pair}, resamples=50)
    assert result.mean == pytest.approx(0.1) and result.scenes == 1 and result.logs == 1
    assert not result.has_interval and not result.excludes_zero()  # one log: nothing to resample
    empty = paired_difference({0: SeedScores(np.array([np.nan]), np.array([0.1]), ["a"])})
    assert np.isnan(empty.mean) and not empty.excludes_zero()


def test_mismatched_lengths_and_a_bad_confidence_are_refused():
    with pytest.raises(ValueError, match="differ"):
        SeedScores(np.zeros(2), np.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({0: _seed({"a": [0.1]})}, confidence=1.5)


def test_mean_std_skips_non_finite_values():
    assert mean_std([1.0, 3.0, float("nan")]) == (2.0, 1.0)
    assert all(np.isnan(v) for v in mean_std([float("nan")]))


def test_curve_area_is_the_mean_height_of_the_curve():
    assert curve_area([0, 1, 2], [0.0, 1.0, 1.0]) == pytest.approx((0.5 + 1.0) / 2)
    assert curve_area([2, 0, 1], [1.0, 0.0, 1.0]) == pytest.approx(0.75)  # order does not matter
    assert curve_area([3], [0.4]) == pytest.approx(0.4)
    assert np.isnan(curve_area([], []))
