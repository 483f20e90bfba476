"""The demo report's world section: the reference plans scored on the split's own caches, overall and per scenario."""

from __future__ import annotations

import math

import numpy as np

from navsim_eval.csv_io import write_score_csv
from navsim_eval.data.filtering import constant_velocity_trajectory, split_caches
from navsim_eval.data.splits import load_split
from navsim_eval.pdm.cache_io import build_metric_cache_store
from navsim_eval.pdm.scorer import score
from navsim_eval.synthetic.labels import load_scenario_labels
from navsim_eval.synthetic.world import WorldConfig, generate_world, split_file
from vla_drive.eval.world_report import CONSTANT_VELOCITY, HUMAN, reference_scores, world_section


def test_a_model_driving_the_human_plan_scores_the_human_row_per_scenario(tmp_path):
    world = generate_world(tmp_path / "world", WorldConfig(num_logs=3, scenarios=("lead_braking", "merge")))
    test = split_file(world.root, "test")
    split = load_split(test.parent, test.stem)
    caches = [c for c in split_caches(world.data_root, world.maps_root, split) if not isinstance(c, tuple)]
    assert caches, "the test split has scenes"
    store = build_metric_cache_store(tmp_path / "metric_cache", caches, fsync=False)
    human = write_score_csv(tmp_path / "human.csv", [score(c, c.human_trajectory[None], "v1") for c in caches], "v1")
    stop = [score(c, np.zeros((1, 8, 3)), "v1") for c in caches]
    stopped = write_score_csv(tmp_path / "stop.csv", stop, "v1")

    references = reference_scores(store.root, [c.token for c in caches])
    for cache in caches:
        cv = score(cache, constant_velocity_trajectory(cache.ego)[None], "v1").score[0]
        assert math.isclose(references[CONSTANT_VELOCITY][cache.token], cv, abs_tol=1e-12)

    lines = world_section(test, store.root, {"human plan": human, "stop": stopped})
    text = "\n".join(lines)
    labels = load_scenario_labels(test)
    scenarios = sorted(labels.counts())
    header = next(line for line in lines if line.startswith("| plan |"))
    assert header == "| plan | all | " + " | ".join(scenarios) + " |"
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and " | " in line}
    assert rows["human plan"].split(" | ")[1:] == rows[HUMAN].split(" | ")[1:], "the human's plan is the human row"
    assert rows["stop"] != rows[HUMAN] and CONSTANT_VELOCITY in rows
    assert rows["scenes"].split(" | ")[1] == str(len(caches))
    expected = labels.breakdown({c.token: float(t.score[0]) for c, t in zip(caches, stop, strict=True)})
    cells = rows["stop"].strip(" |").split(" | ")[2:]
    assert cells == [f"{expected[s][0]:.3f}" if s in expected else "-" for s in scenarios]
    assert "held out by log only" in text and "What this world measures" in text


def test_breakdown_skips_unlabelled_tokens_and_nan_scores(tmp_path):
    from navsim_eval.synthetic.labels import ScenarioLabels

    labels = ScenarioLabels("s", "synthetic", "log", "", {"a": "merge", "b": "merge", "c": "cut_in"})
    groups = labels.breakdown({"a": 0.2, "b": 0.6, "c": math.nan, "z": 1.0})
    assert groups.keys() == {"merge"} and math.isclose(groups["merge"][0], 0.4) and groups["merge"][1] == 2
