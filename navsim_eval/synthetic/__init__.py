"""The embedded synthetic world: a proving ground in the real NAVSIM formats (see docs/data.md).

generate_world(out, WorldConfig())            the default world: towns, scenarios, filtered splits
split_file(out, "val" | "test" | ...)         its split files
load_scenario_labels(split_file(out, "test")) the scenario of every scene of a split
"""

from navsim_eval.synthetic.labels import ScenarioLabels, labels_path, load_scenario_labels
from navsim_eval.synthetic.scenarios import SCENARIO_NAMES
from navsim_eval.synthetic.towns import TEST_TOWN, TOWNS, TRAIN_TOWNS
from navsim_eval.synthetic.world import WorldConfig, WorldSummary, generate_world, split_file

__all__ = [
    "SCENARIO_NAMES",
    "TEST_TOWN",
    "TOWNS",
    "TRAIN_TOWNS",
    "ScenarioLabels",
    "WorldConfig",
    "WorldSummary",
    "generate_world",
    "labels_path",
    "load_scenario_labels",
    "split_file",
]
