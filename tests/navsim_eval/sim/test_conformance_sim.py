"""Interpolation and simulation against the states the official NAVSIM code produced for every conformance case.

For NAVSIM v1 and v2 and both proposals (the PDM-Closed reference and the agent plan), the 41 sampled reference
states and the 41 simulated states must match within 1e-6 (headings modulo 2π). The two proposals are simulated
together, as ``pdm_score`` does.
"""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.sim.interpolation import agent_reference_states, reference_states_from_poses
from navsim_eval.sim.simulator import initial_state_array, simulate
from navsim_eval.sim.state import StateIndex

TOLERANCE = 1e-6
VERSIONS = ("v1", "v2")
PROPOSALS = ("pdm_closed", "agent")  # index 0 and 1 of the official proposal batch

_CASES = case_paths(default_conformance_dir())


def _deviation(ours: np.ndarray, official: np.ndarray) -> np.ndarray:
    """Absolute per-entry deviation [41, 11]; headings are compared modulo 2π."""
    deviation = np.abs(ours - official)
    heading = ours[:, StateIndex.HEADING] - official[:, StateIndex.HEADING]
    deviation[:, StateIndex.HEADING] = np.abs((heading + np.pi) % (2 * np.pi) - np.pi)
    return deviation


def _check(case_id: str, version: str, what: str, ours: np.ndarray, official_by_proposal: dict) -> list[str]:
    failures = []
    for index, proposal in enumerate(PROPOSALS):
        official = np.asarray(official_by_proposal[proposal], dtype=np.float64)
        assert official.shape == ours[index].shape, f"{case_id} {version} {what} {proposal}: shape {official.shape}"
        deviation = _deviation(ours[index], official)
        worst = deviation.max()
        if not worst <= TOLERANCE:  # also catches NaN
            step, column = np.unravel_index(np.nanargmax(deviation), deviation.shape)
            failures.append(
                f"{case_id} [{version}] {what} {proposal}: max deviation {worst:.3e} at step {step}, column "
                f"{StateIndex(column).name} (ours {ours[index][step, column]!r}, official {official[step, column]!r})"
            )
    return failures


@pytest.mark.skipif(not _CASES, reason=f"no conformance cases in {default_conformance_dir()}")
@pytest.mark.parametrize("path", _CASES, ids=[p.stem for p in _CASES])
def test_sampled_and_simulated_states_match_official(path):
    case = load_case(path)
    ego = case.cache.ego
    sampled = np.concatenate(
        [
            reference_states_from_poses(ego, case.cache.reference("v1")),
            agent_reference_states(ego, case.agent_trajectory),
        ]
    )
    simulated = simulate(initial_state_array(ego), sampled)

    failures = []
    for version in VERSIONS:
        official = case.official[version]
        failures += _check(case.case_id, version, "sampled", sampled, official["reference_states_sampled"])
        failures += _check(case.case_id, version, "simulated", simulated, official["simulated_states"])
    assert not failures, "\n".join(failures)
