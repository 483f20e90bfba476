"""Two-frame extended comfort: pairing of adjacent frames and its effect on the v2 score."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.pdm.scorer import score
from navsim_eval.pdm.two_frame import apply_two_frame_comfort, previous_frames


@pytest.fixture(scope="module")
def case():
    return load_case(next(p for p in case_paths(default_conformance_dir()) if p.stem == "straight_good_const"))


def _shifted(case, dt_us: int, log: str = "log-a", token: str = "later"):
    ego = dataclasses.replace(case.cache.ego, time_us=case.cache.ego.time_us + dt_us)
    return dataclasses.replace(case.cache, ego=ego, token=token, log_name=log)


def test_pairs_follow_log_and_gap(case):
    first = score(dataclasses.replace(case.cache, log_name="log-a"), case.agent_trajectory, "v2")
    tables = [
        first,
        score(_shifted(case, 500_000, token="b"), case.agent_trajectory, "v2"),
        score(_shifted(case, 1_100_000, token="c"), case.agent_trajectory, "v2"),  # 0.6 s after b: too far
        score(_shifted(case, 500_000, log="log-b", token="d"), case.agent_trajectory, "v2"),  # another log
    ]
    assert previous_frames(tables) == {1: 0}


def test_consistent_plans_keep_full_marks_and_weight_16(case):
    earlier = score(dataclasses.replace(case.cache, log_name="log-a"), case.agent_trajectory, "v2")
    later = score(_shifted(case, 500_000), case.agent_trajectory, "v2")
    assert np.isnan(later.columns["two_frame_extended_comfort"][0])
    assert apply_two_frame_comfort([earlier, later]) == 1
    assert later.columns["two_frame_extended_comfort"][0] == 1.0
    assert later.score[0] == pytest.approx(1.0)
    assert np.isnan(earlier.columns["two_frame_extended_comfort"][0])  # EC goes to the later frame only


def test_a_plan_that_changes_its_mind_loses_ec(case):
    earlier = score(dataclasses.replace(case.cache, log_name="log-a"), case.agent_trajectory, "v2")
    braking = case.agent_trajectory.copy()
    braking[:, 0] = np.cumsum(np.full(8, 1.0))  # crawl instead of 5 m per step: a very different speed profile
    later = score(_shifted(case, 500_000), braking, "v2")
    before = {name: float(values[0]) for name, values in later.columns.items()}
    apply_two_frame_comfort([earlier, later])
    assert later.columns["two_frame_extended_comfort"][0] == 0.0
    weighted = (
        5 * before["ego_progress"]
        + 5 * before["time_to_collision_within_bound"]
        + 2 * before["lane_keeping"]
        + 2 * before["history_comfort"]
    )
    product = (
        before["no_at_fault_collisions"]
        * before["drivable_area_compliance"]
        * before["driving_direction_compliance"]
        * before["traffic_light_compliance"]
    )
    assert later.score[0] == pytest.approx(product * weighted / 16)
