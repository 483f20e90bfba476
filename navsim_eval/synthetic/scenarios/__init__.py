"""Scenario generators of the synthetic world: situations where safety decides the score.

Each generator is a frozen dataclass whose fields are its parameters (ranges and shares) and whose ``setup(network,
rng)`` scripts one run of it in a town (see :mod:`navsim_eval.synthetic.scenarios.base`). ``SCENARIOS`` maps the
scenario labels written beside the splits to the default generators.
"""

from navsim_eval.synthetic.scenarios.base import Scenario, ScenarioRun
from navsim_eval.synthetic.scenarios.blocked_lane import BlockedLane
from navsim_eval.synthetic.scenarios.cut_in import CutIn
from navsim_eval.synthetic.scenarios.lead_braking import LeadBraking
from navsim_eval.synthetic.scenarios.merge import Merge
from navsim_eval.synthetic.scenarios.red_light import RedLight
from navsim_eval.synthetic.scenarios.sharp_curve import SharpCurve
from navsim_eval.synthetic.scenarios.unprotected_turn import UnprotectedTurn
from navsim_eval.synthetic.scenarios.vru_crossing import VulnerableRoadUserCrossing

SCENARIOS: dict[str, Scenario] = {
    generator.name: generator
    for generator in (
        LeadBraking(),
        CutIn(),
        VulnerableRoadUserCrossing(),
        UnprotectedTurn(),
        RedLight(),
        BlockedLane(),
        SharpCurve(),
        Merge(),
    )
}
SCENARIO_NAMES = tuple(SCENARIOS)

__all__ = [
    "SCENARIOS",
    "SCENARIO_NAMES",
    "BlockedLane",
    "CutIn",
    "LeadBraking",
    "Merge",
    "RedLight",
    "Scenario",
    "ScenarioRun",
    "SharpCurve",
    "UnprotectedTurn",
    "VulnerableRoadUserCrossing",
]
