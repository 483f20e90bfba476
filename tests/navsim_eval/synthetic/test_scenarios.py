"""The scenario generators: every type is a situation where safety decides the score.

One small world with two logs of every scenario type: constant velocity must fail a safety metric (NC, DAC, TTC or,
in v2, the traffic lights) in at least half of each type's scenes, while the logged human drives them well.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from navsim_eval.data.filtering import constant_velocity_trajectory, split_caches
from navsim_eval.data.splits import load_split
from navsim_eval.pdm.scorer import score
from navsim_eval.synthetic.labels import load_scenario_labels
from navsim_eval.synthetic.scenarios import SCENARIO_NAMES, SCENARIOS
from navsim_eval.synthetic.towns import TOWNS
from navsim_eval.synthetic.world import WorldConfig, generate_world

pytestmark = pytest.mark.slow
SAFETY_V1 = ("no_at_fault_collisions", "drivable_area_compliance", "time_to_collision_within_bound")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Every scene of a world with two logs per scenario type, scored for constant velocity and the human."""
    world = generate_world(tmp_path_factory.mktemp("scenarios"), WorldConfig(num_logs=2 * len(SCENARIO_NAMES), seed=5))
    split = load_split(world.splits_dir, "synthetic_all")
    labels = load_scenario_labels(world.splits_dir / "synthetic_all.yaml")
    rows = defaultdict(list)
    for cache in split_caches(world.data_root, world.maps_root, split):
        assert not isinstance(cache, tuple), f"scene {cache[0]} could not be cached: {cache[1]}"
        plans = np.stack([constant_velocity_trajectory(cache.ego), cache.human_trajectory])
        v1, v2 = score(cache, plans, "v1"), score(cache, plans, "v2")
        rows[labels.scenes[cache.token]].append((v1.columns, v2.columns))
    return world, labels, rows


def test_every_scenario_type_is_in_the_world(scored):
    _, labels, rows = scored
    assert set(rows) == set(SCENARIO_NAMES)
    assert all(info["scenario"] in SCENARIO_NAMES and info["params"] for info in labels.logs.values())


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_constant_velocity_fails_a_safety_metric_in_most_scenes(scored, scenario):
    _, _, rows = scored
    failed = [
        any(v1[m][0] < 1.0 for m in SAFETY_V1) or v2["traffic_light_compliance"][0] < 1.0 for v1, v2 in rows[scenario]
    ]
    share = float(np.mean(failed))
    assert share >= 0.5, f"{scenario}: constant velocity fails a safety metric in only {share:.0%} of its scenes"


def test_constant_velocity_scores_low_and_the_human_well(scored):
    _, _, rows = scored
    cv = np.mean([v1["score"][0] for scenes in rows.values() for v1, _ in scenes])
    human = np.mean([v1["score"][1] for scenes in rows.values() for v1, _ in scenes])
    assert cv <= 0.5, f"constant velocity scores {cv:.2f} PDMS: the world rewards holding speed"
    assert human >= 0.8, f"the logged human scores {human:.2f} PDMS: it should drive these scenes well"


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_generators_are_deterministic_and_record_their_parameters(scenario):
    generator = SCENARIOS[scenario]
    for town in TOWNS.values():
        network = town.build(0)
        first = generator.setup(network, np.random.default_rng([1, 2]))
        if first is None:
            continue
        again = generator.setup(network, np.random.default_rng([1, 2]))
        assert first.params == again.params and first.params
        assert first.state.ego.path.lane_ids == again.state.ego.path.lane_ids
        return
    pytest.fail(f"{scenario}: no town has a place for it")
