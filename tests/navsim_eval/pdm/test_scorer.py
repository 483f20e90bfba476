"""Behaviour of the batch scorer beyond conformance: batching, invalid rows, bad input, configuration."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.errors import InvalidTrajectoryError
from navsim_eval.pdm.results import V1_COLUMNS, V2_COLUMNS
from navsim_eval.pdm.scorer import SceneContext, ScorerConfig, normalised_progress, score


@pytest.fixture(scope="module")
def cases():
    paths = {p.stem: p for p in case_paths(default_conformance_dir())}
    return {
        name: load_case(paths[name])
        for name in ("straight_good_const", "straight_hit_static_cone", "isec_red_light_run")
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_equals_candidates_scored_alone(cases, version):
    case = cases["straight_hit_static_cone"]
    rng = np.random.default_rng(0)
    batch = case.agent_trajectory[None] + rng.normal(0.0, 0.4, size=(6, 8, 3)) * np.array([1.0, 1.0, 0.02])
    together = score(case.cache, batch, version)
    for k in range(len(batch)):
        alone = score(case.cache, batch[k], version)
        for name in together.columns:
            np.testing.assert_allclose(
                together.columns[name][k], alone.columns[name][0], atol=1e-12, err_msg=f"{name} of candidate {k}"
            )


def test_columns_are_the_official_ones(cases):
    case = cases["straight_good_const"]
    assert tuple(score(case.cache, case.agent_trajectory, "v1").columns) == V1_COLUMNS
    assert tuple(score(case.cache, case.agent_trajectory, "v2").columns) == V2_COLUMNS


def test_nan_candidate_is_an_invalid_row_and_others_are_scored(cases):
    case = cases["straight_good_const"]
    batch = np.stack([case.agent_trajectory] * 3)
    batch[1, 4, 0] = np.nan
    batch[2, 0, 2] = np.inf
    table = score(case.cache, batch, "v1")
    assert table.valid.tolist() == [True, False, False]
    assert table.score[1] == 0.0 and table.score[2] == 0.0
    assert "NaN or infinite" in table.reasons[1]
    assert table.score[0] == pytest.approx(1.0)
    rows = table.rows()
    assert rows[1]["valid"] is False and rows[1]["reason"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((7, 3)), r"expected shape \[8, 3\]"),
        (np.zeros((2, 8, 2)), r"expected shape"),
        (np.zeros((0, 8, 3)), r"empty batch"),
        (np.zeros((2, 2, 8, 3)), r"expected shape"),
    ],
)
def test_wrongly_shaped_trajectories_raise(cases, bad, message):
    with pytest.raises(InvalidTrajectoryError, match=message):
        score(cases["straight_good_const"].cache, bad, "v1")


def test_unknown_version_is_rejected(cases):
    with pytest.raises(ValueError, match="unknown PDM score version 'v3'"):
        score(cases["straight_good_const"].cache, cases["straight_good_const"].agent_trajectory, "v3")


def test_a_context_is_reused_across_calls(cases):
    case = cases["isec_red_light_run"]
    context = SceneContext.build(case.cache, "v2")
    first = score(case.cache, case.agent_trajectory, "v2", context=context)
    second = score(case.cache, case.agent_trajectory, "v2", context=context)
    assert context.reference_metrics is not None
    np.testing.assert_array_equal(first.score, second.score)


def test_red_light_runner_fails_tlc_and_the_filter_follows_the_human(cases):
    case = cases["isec_red_light_run"]
    unfiltered = score(case.cache, case.agent_trajectory, "v2", ScorerConfig(human_penalty_filter=False))
    assert unfiltered.columns["traffic_light_compliance"][0] == 0.0
    assert unfiltered.score[0] == 0.0
    official = case.official["v2"]
    filtered = score(case.cache, case.agent_trajectory, "v2")
    assert filtered.score[0] == pytest.approx(official["agent_human_filtered"]["epdms_no_ec"], abs=1e-9)
    pre_fix = score(case.cache, case.agent_trajectory, "v2", ScorerConfig(human_filter_pre_fix=True))
    # Before the fix only the displayed columns changed; the score stayed unfiltered.
    assert pre_fix.columns["traffic_light_compliance"][0] == filtered.columns["traffic_light_compliance"][0]
    assert pre_fix.score[0] == pytest.approx(unfiltered.score[0])


def test_progress_weight_changes_the_score(cases):
    case = cases["straight_good_const"]
    slow = case.agent_trajectory.copy()
    slow[:, 0] *= 0.5
    default = score(case.cache, slow, "v1")
    heavier = score(case.cache, slow, "v1", ScorerConfig(progress_weight=10.0))
    ep = default.columns["ego_progress"][0]
    assert ep < 0.9
    assert heavier.score[0] == pytest.approx((10 * ep + 5 + 2) / 17, abs=1e-12)
    assert default.score[0] == pytest.approx((5 * ep + 5 + 2) / 12, abs=1e-12)


def test_normalised_progress_rules():
    raw = np.array([10.0, 20.0, 3.0])
    multiplier = np.array([1.0, 0.0, 1.0])
    v1 = normalised_progress(raw, multiplier, 8.0, 1.0, "v1", 5.0)
    np.testing.assert_allclose(v1, [1.0, 0.0, 3.0 / 8.0])
    v2 = normalised_progress(raw, multiplier, 8.0, 1.0, "v2", 5.0)
    np.testing.assert_allclose(v2, [1.0, 1.0, 3.0 / 8.0])
    # Below the 5 m threshold everyone gets 1 (v1: 0 where a multiplier failed).
    low = normalised_progress(np.array([1.0, 2.0]), np.array([1.0, 0.0]), 1.0, 1.0, "v1", 5.0)
    np.testing.assert_allclose(low, [1.0, 0.0])
