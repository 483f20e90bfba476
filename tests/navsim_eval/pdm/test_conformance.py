"""Acceptance test: every conformance case scored by the official NAVSIM code is reproduced exactly.

Cases come from ``../shared/pdm_conformance`` (or ``$NAVSIM_EVAL_CONFORMANCE_DIR``). For v1 and v2 we check every
sub-metric exactly, EP and scores within 1e-9, the sampled and simulated 41 x 11 states within 1e-6, the ego-area
flags, the collision events, the comfort checks and the v2 log-replay removals and human filter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.conformance import (
    OFFICIAL_KEYS,
    case_paths,
    check_case,
    default_conformance_dir,
    load_case,
    metric_cache_from_neutral,
)
from navsim_eval.pdm.comfort import COMFORT_CHECKS
from navsim_eval.pdm.scorer import (
    SceneContext,
    ScorerConfig,
    evaluate_proposals,
    human_only_columns,
    reference_simulated,
    score,
)
from navsim_eval.sim.interpolation import agent_reference_states, reference_states_from_poses

CASE_PATHS = case_paths(default_conformance_dir())
SCORE_TOL = 1e-9
STATE_TOL = 1e-6

V1_KEYS, V2_KEYS = OFFICIAL_KEYS["v1"], OFFICIAL_KEYS["v2"]
EXACT = {"nc", "dac", "ddc", "tlc", "ttc", "lk", "hc", "c"}


def test_conformance_cases_exist():
    assert CASE_PATHS, f"no conformance cases found in {default_conformance_dir()}"


@pytest.fixture(scope="module", params=CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def case(request):
    return load_case(request.param)


def _compare_metrics(case, official: dict, table, keys: dict[str, str], label: str) -> list[str]:
    problems = []
    for key, column in keys.items():
        expected, got = official[key], float(table.columns[column][0])
        tolerance = 0.0 if key in EXACT else SCORE_TOL
        if not abs(expected - got) <= tolerance:
            problems.append(f"{label} {key}: official {expected!r}, ours {got!r}")
    return problems


def _compare_states(expected: list, got: np.ndarray, label: str) -> list[str]:
    expected = np.asarray(expected)
    diff = np.abs(expected - got)
    diff[:, 2] = np.abs((expected[:, 2] - got[:, 2] + np.pi) % (2 * np.pi) - np.pi)
    if diff.max() <= STATE_TOL:
        return []
    step, column = np.unravel_index(np.argmax(diff), diff.shape)
    return [f"{label}: max deviation {diff.max():.3g} at step {step}, column {column}"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_scores_match_official(case, version):
    official = case.official[version]
    keys = V1_KEYS if version == "v1" else V2_KEYS
    unfiltered = score(case.cache, case.agent_trajectory, version, ScorerConfig(human_penalty_filter=False))
    problems = _compare_metrics(case, official["agent"], unfiltered, keys, "agent")
    if version == "v2" and official.get("agent_human_filtered"):
        filtered = score(case.cache, case.agent_trajectory, version)
        problems += _compare_metrics(case, official["agent_human_filtered"], filtered, keys, "agent_human_filtered")
    raw = unfiltered.diagnostics["progress_raw"][0]
    if abs(raw - official["progress_raw"][1]) > SCORE_TOL:
        problems.append(f"progress_raw: official {official['progress_raw'][1]!r}, ours {raw!r}")
    assert not problems, f"{case.case_id} {version}:\n  " + "\n  ".join(problems)


def test_health_check_passes_every_case_without_exception(case):
    checks = check_case(case, ("v1", "v2"), SCORE_TOL)
    assert {version: (check.status, check.detail) for version, check in checks.items()} == {
        "v1": ("ok", ""),
        "v2": ("ok", ""),
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_states_match_official(case, version):
    official = case.official[version]
    context = SceneContext.build(case.cache, version)
    table = score(case.cache, case.agent_trajectory, version, context=context)
    problems = _compare_states(
        official["reference_states_sampled"]["pdm_closed"],
        reference_states_from_poses(case.cache.ego, case.cache.reference("v1"))[0],
        "sampled pdm_closed",
    )
    problems += _compare_states(
        official["reference_states_sampled"]["agent"],
        agent_reference_states(case.cache.ego, case.agent_trajectory[None])[0],
        "sampled agent",
    )
    problems += _compare_states(
        official["simulated_states"]["pdm_closed"], reference_simulated(context), "simulated pdm_closed"
    )
    problems += _compare_states(official["simulated_states"]["agent"], table.simulated_states[0], "simulated agent")
    assert not problems, f"{case.case_id} {version}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_diagnostics_match_official(case, version):
    official = case.official[version]
    context = SceneContext.build(case.cache, version)
    table = score(case.cache, case.agent_trajectory, version, context=context)
    metrics = evaluate_proposals(context, table.simulated_states[:1])
    problems = []
    for flag in ("multiple_lanes", "non_drivable_area", "oncoming_traffic"):
        ours = np.flatnonzero(getattr(metrics.areas, flag)[0]).tolist()
        if ours != official["ego_areas_agent"][flag]:
            problems.append(f"{flag} steps: official {official['ego_areas_agent'][flag]}, ours {ours}")
    expected_events = sorted((e["t"], e["token"], e["type"]) for e in official["collision_events_agent"])
    events = sorted((e.step, e.token, e.type.name) for e in metrics.collision_events[0])
    if events != expected_events:
        problems.append(f"collision events: official {expected_events}, ours {events}")
    for key, ours in (
        ("collision_time_idx", table.diagnostics["first_collision_step"][0]),
        ("ttc_time_idx", table.diagnostics["first_ttc_step"][0]),
    ):
        expected = official[key][1]
        if (-1 if expected is None else expected) != ours:
            problems.append(f"{key}: official {expected}, ours {ours}")
    checks = official["comfort_checks_agent" if version == "v1" else "history_comfort_checks_agent"]
    for index, name in enumerate(COMFORT_CHECKS):
        if bool(checks[name]) != bool(metrics.comfort_checks[0, index]):
            problems.append(f"comfort check {name}: official {checks[name]}")
    if version == "v2":
        if sorted(context.removed_tokens) != sorted(official["objects_removed_by_log_replay_t0_overlap"]):
            problems.append(
                f"log-replay removals: official {official['objects_removed_by_log_replay_t0_overlap']}, "
                f"ours {context.removed_tokens}"
            )
        num_history = 0 if context.history is None else len(context.history)
        if num_history != official["history_comfort_num_history_states"]:
            problems.append(
                f"history states: official {official['history_comfort_num_history_states']}, ours {num_history}"
            )
    assert not problems, f"{case.case_id} {version}:\n  " + "\n  ".join(problems)


def test_human_only_scores_match_official(case):
    official = case.official["v2"].get("human_only")
    if official is None:
        pytest.skip("case has no human trajectory")
    context = SceneContext.build(case.cache, "v2")
    human = human_only_columns(context, ScorerConfig())
    problems = []
    for key, column in V2_KEYS.items():
        if key == "epdms_no_ec":
            continue
        if abs(official[key] - float(human[column][0])) > SCORE_TOL:
            problems.append(f"human {key}: official {official[key]}, ours {human[column][0]}")
    assert not problems, f"{case.case_id}:\n  " + "\n  ".join(problems)


PERTURBATIONS = Path(__file__).parent / "data" / "heading_ray_perturbations.json"


def _shifted_case(case_path: Path, shift: dict[str, float]):
    """The case's input with every object and the initial ego pose moved by shift_m (see the data file)."""
    data = json.loads(case_path.read_text())
    spec = data["input"]
    heading = spec["ego_initial"]["heading"]
    c, s = math.cos(heading), math.sin(heading)

    def move(state: dict, lon: float, lat: float) -> None:
        state["x"] += c * lon - s * lat
        state["y"] += s * lon + c * lat

    for step in spec["objects"]["steps"]:
        for obj in step:
            move(obj, shift["obj_lon"], shift["obj_lat"])
    move(spec["ego_initial"], shift["ego_lon"], shift["ego_lat"])
    if spec.get("past_ego_states"):
        spec["past_ego_states"][-1].update(x=spec["ego_initial"]["x"], y=spec["ego_initial"]["y"])
    return metric_cache_from_neutral(spec, token=data["case_id"]), np.asarray(spec["agent_trajectory"]["poses"])


def test_object_on_the_heading_ray_decided_as_official_under_nanometre_shifts():
    """The official "ahead" test of an object exactly on the ego's heading ray flips under 1e-9 m shifts of the
    input (data made with the official code); every shifted input must be decided as the official code did."""
    reference = json.loads(PERTURBATIONS.read_text())
    case_path = default_conformance_dir() / "cases" / f"{reference['case_id']}.json"
    if not case_path.is_file():
        pytest.skip(f"{case_path} not available")
    outcomes, problems = set(), []
    for run in reference["runs"]:
        cache, plan = _shifted_case(case_path, run["shift_m"])
        official = run["official"]
        human = human_only_columns(SceneContext.build(cache, "v2"), ScorerConfig())
        filtered = score(cache, plan, "v2")
        ours = (
            float(human["time_to_collision_within_bound"][0]),
            float(filtered.columns["time_to_collision_within_bound"][0]),
            float(filtered.score[0]),
        )
        expected = (
            official["human_only"]["ttc"],
            official["agent_human_filtered"]["ttc"],
            official["agent_human_filtered"]["epdms_no_ec"],
        )
        outcomes.add(expected)
        if not np.allclose(ours, expected, rtol=0, atol=SCORE_TOL):
            problems.append(f"shift {run['shift_m']}: official (human TTC, TTC, score) {expected}, ours {ours}")
    assert len(outcomes) == 2, "the reference runs should show the official decision flipping"
    assert not problems, f"{len(problems)} of {len(reference['runs'])} shifted inputs differ:\n  " + "\n  ".join(
        problems
    )
