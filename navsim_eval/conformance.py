"""The neutral PDM conformance cases (scenes scored by the official NAVSIM code): reading and checking them.

A case file holds ``input`` (a scene in a neutral JSON layout) and ``official.v1`` / ``official.v2`` (what the
official scorers returned). This module turns the input into our :class:`MetricCache` so the same scorer that
serves users is the one checked against the official numbers (``check_case``; ``navsim-eval conformance``).
The end-to-end check over a whole world run through the official pipeline is ``pipeline_conformance``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.pdm.metric_cache import SCORING_VERSIONS, MetricCache, SceneType
from navsim_eval.pdm.observation import Observation
from navsim_eval.pdm.results import ScoreTable
from navsim_eval.scene import EgoState

CONFORMANCE_DIR_ENV = "NAVSIM_EVAL_CONFORMANCE_DIR"

# Official result keys of a case -> our score columns.
OFFICIAL_KEYS = {
    "v1": {
        "nc": "no_at_fault_collisions",
        "dac": "drivable_area_compliance",
        "ddc": "driving_direction_compliance",
        "ttc": "time_to_collision_within_bound",
        "ep": "ego_progress",
        "c": "comfort",
        "score": "score",
    },
    "v2": {
        "nc": "no_at_fault_collisions",
        "dac": "drivable_area_compliance",
        "ddc": "driving_direction_compliance",
        "tlc": "traffic_light_compliance",
        "ep": "ego_progress",
        "ttc": "time_to_collision_within_bound",
        "lk": "lane_keeping",
        "hc": "history_comfort",
        "epdms_no_ec": "score",
    },
}


@dataclass
class ConformanceCase:
    case_id: str
    cache: MetricCache
    agent_trajectory: np.ndarray  # [8, 3] ego frame
    official: dict  # {"v1": {...}, "v2": {...}}
    path: Path


def default_conformance_dir(repo_root: Path | None = None) -> Path:
    """``$NAVSIM_EVAL_CONFORMANCE_DIR`` if set, else ``../shared/pdm_conformance`` next to the repository."""
    env = os.environ.get(CONFORMANCE_DIR_ENV)
    if env:
        return Path(env)
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[1]
    return root.parent / "shared" / "pdm_conformance"


def case_paths(directory: Path) -> list[Path]:
    """All case files of a conformance folder (``cases/*.json`` or ``*.json`` directly inside)."""
    directory = Path(directory)
    cases = directory / "cases"
    folder = cases if cases.is_dir() else directory
    return sorted(p for p in folder.glob("*.json") if p.name != "index.json")


def load_case(path: Path) -> ConformanceCase:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        spec = data["input"]
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise InvalidSceneError(f"{path}: not a readable conformance case ({error})") from None
    cache = metric_cache_from_neutral(spec, token=data.get("case_id", path.stem))
    return ConformanceCase(
        case_id=data.get("case_id", path.stem),
        cache=cache,
        agent_trajectory=np.asarray(spec["agent_trajectory"]["poses"], dtype=np.float64),
        official=data.get("official", {}),
        path=path,
    )


def _ego(state: dict, time_us: int) -> EgoState:
    return EgoState(
        x=state["x"],
        y=state["y"],
        heading=state["heading"],
        vx=state["vx"],
        vy=state["vy"],
        ax=state["ax"],
        ay=state["ay"],
        time_us=int(time_us),
    )


def metric_cache_from_neutral(spec: dict, token: str) -> MetricCache:
    """Build a :class:`MetricCache` from the neutral ``input`` layout of a conformance case."""
    if spec.get("vehicle", "pacifica") != "pacifica":
        raise InvalidSceneError(f"case {token}: only the 'pacifica' vehicle is supported, got {spec['vehicle']!r}")
    t0_us = int(spec["t0_us"])
    drivable_map = DrivableMap.from_rings((p["token"], p["type"], p["exterior"]) for p in spec["map"]["polygons"])
    route = set(spec["route_lane_ids"])
    past = spec.get("past_ego_states")
    human = spec.get("human_trajectory")
    return MetricCache(
        token=token,
        ego=_ego(spec["ego_initial"], t0_us),
        drivable_map=drivable_map,
        route_lane_ids=tuple(spec["route_lane_ids"]),
        centerline=Centerline(np.asarray(spec["centerline"], dtype=np.float64)),
        observation=Observation.from_steps(spec["objects"]["steps"]),
        # A red light counts only on the route (the case format lists every red connector).
        red_lights=[
            [token for token in step if token in route] for step in spec.get("red_lights", {}).get("steps", [])
        ],
        # The case's stand-in reference serves both versions (the official run scored both against it).
        references=dict.fromkeys(SCORING_VERSIONS, np.asarray(spec["pdm_closed_reference"]["poses"], dtype=np.float64)),
        past_ego_states=[_ego(s, s["time_us"]) for s in past] if past else None,
        human_trajectory=np.asarray(human["poses"], dtype=np.float64) if human else None,
        scene_type=SceneType.ORIGINAL,
    )


# ------------------------------------------------------------------------------------------------ checking a case


@dataclass(frozen=True)
class CaseCheck:
    """One case scored in one version against the official run: ``ok``, ``FAIL`` or ``-`` (no official numbers),
    and what differed."""

    status: str
    detail: str = ""


def official_reference(
    official: dict, version: str, has_human: bool
) -> tuple[str, dict[str, tuple[str, float]]] | None:
    """The run to compare with and its numbers {official key: (our column, value)}.

    v2 uses the human-filtered run when the scene has a human plan.
    """
    result = official.get(version)
    if not result:
        return None
    run = "agent"
    if version == "v2" and has_human and result.get("agent_human_filtered"):
        run = "agent_human_filtered"
    entry = result.get(run)
    if not entry:
        return None
    return run, {key: (ours, float(entry[key])) for key, ours in OFFICIAL_KEYS[version].items() if key in entry}


def compare_case(table: ScoreTable, expected: dict[str, tuple[str, float]], tolerance: float) -> list[str]:
    """Every mismatch as a 'name ours!=official' string; none = pass."""
    if not bool(table.valid[0]):
        return [f"invalid: {table.reasons[0]}"]
    problems = []
    for name, value in expected.values():
        ours = float(table.columns[name][0])
        if not (abs(ours - value) <= tolerance or (math.isnan(ours) and math.isnan(value))):
            problems.append(f"{name} {ours:.6g}!={value:.6g}")
    return problems


def check_case(case: ConformanceCase, versions: Sequence[str], tolerance: float) -> dict[str, CaseCheck]:
    """Score a case's agent trajectory in each version and compare every official number within ``tolerance``.

    A scorer error is reported as a failure of that version, not raised: this is a health check.
    """
    from navsim_eval.pdm.scorer import score  # the scorer imports the simulator; reading cases does not need it

    checks = {}
    for version in versions:
        reference = official_reference(case.official, version, case.cache.human_trajectory is not None)
        if reference is None:
            checks[version] = CaseCheck("-")
            continue
        run, expected = reference
        try:
            table = score(case.cache, case.agent_trajectory, version)
            problems = compare_case(table, expected, tolerance)
        except Exception as error:  # report and go on
            problems = [f"error {type(error).__name__}: {error}"]
        checks[version] = CaseCheck("FAIL", f"{run}: " + ", ".join(problems)) if problems else CaseCheck("ok")
    return checks
