"""The navtest-style filter: constant velocity as NAVSIM plans it, both rules, the counts, the split it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from navsim_eval.cli import main as navsim_eval
from navsim_eval.data.filtering import (
    FilterDecision,
    FilterReport,
    constant_velocity_trajectory,
    decide,
    decide_split,
    filter_split,
    split_caches,
)
from navsim_eval.data.splits import load_split
from navsim_eval.pdm.scorer import score
from navsim_eval.scene import EgoState
from navsim_eval.synthetic.labels import load_scenario_labels
from navsim_eval.synthetic.world import WorldConfig, generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("filter_world"), WorldConfig(num_logs=3, seed=4))


@pytest.fixture(scope="module")
def caches(world):
    split = load_split(world.splits_dir, "synthetic_all")
    return [c for c in split_caches(world.data_root, world.maps_root, split) if not isinstance(c, tuple)]


def test_constant_velocity_is_navsims_plan():
    plan = constant_velocity_trajectory(EgoState(5.0, 1.0, 0.7, vx=3.0, vy=4.0))
    np.testing.assert_allclose(plan[:, 0], 0.5 * 5.0 * np.arange(1, 9))  # |v| = 5 m/s, straight ahead
    assert not plan[:, 1:].any()


def test_rules_follow_the_two_scores(caches):
    for cache in caches:
        decision = decide(cache)
        table = score(cache, np.stack([constant_velocity_trajectory(cache.ego), cache.human_trajectory]), "v1")
        cv, human = table.score
        assert decision.constant_velocity_score == pytest.approx(cv) and decision.human_score == pytest.approx(human)
        assert ("constant_velocity" in decision.dropped_by) == (cv >= 0.8)
        assert ("human" in decision.dropped_by) == (human < 0.8)
        assert decision.kept == (cv < 0.8 <= human)


def test_report_counts_each_rule():
    decisions = [
        FilterDecision("a", 0.9, 0.95, ("constant_velocity",)),
        FilterDecision("b", 0.9, 0.5, ("constant_velocity", "human")),
        FilterDecision("c", 0.1, 0.5, ("human",)),
        FilterDecision("d", 0.1, 0.95, ()),
        FilterDecision("e", float("nan"), float("nan"), (), "no route"),
    ]
    report = FilterReport(decisions)
    data = report.to_json()
    assert report.kept_tokens == ["d"]
    assert (data["removed_constant_velocity"], data["removed_human"], data["removed_by_both"], data["unscored"]) == (
        2,
        2,
        1,
        1,
    )
    assert "kept 1 of 5 scenes" in report.summary() and "1 could not be scored" in report.summary()


def test_filter_split_writes_the_kept_scenes(world, caches, tmp_path):
    split = load_split(world.splits_dir, "synthetic_all")
    filtered, report = filter_split(split, caches, tmp_path, "kept")
    again = load_split(tmp_path, "kept")
    assert list(again.scene_filter.tokens) == [t for t in split.scene_filter.tokens if t in set(report.kept_tokens)]
    assert again.data_split == split.data_split and filtered.name == "kept"
    assert len(report.decisions) == len(caches)


@pytest.mark.slow
def test_processes_decide_like_one(world):
    split = load_split(world.splits_dir, "synthetic_all")
    counted = {1: [], 2: []}
    one = decide_split(world.data_root, world.maps_root, split, workers=1, progress=counted[1].append)
    two = decide_split(world.data_root, world.maps_root, split, workers=2, progress=counted[2].append)
    assert [(d.token, d.dropped_by) for d in one.decisions] == [(d.token, d.dropped_by) for d in two.decisions]
    for workers, counts in counted.items():
        assert sum(counts) == len(one.decisions), f"{workers} worker(s): progress counts every scene once"


def test_cli_filter(world, tmp_path, capsys):
    out, report = tmp_path / "splits" / "hard.yaml", tmp_path / "report.json"
    args = [
        "filter",
        "--data-root",
        str(world.data_root),
        "--maps-root",
        str(world.maps_root),
        "--split",
        str(world.splits_dir / "synthetic_all.yaml"),
        "--out",
        str(out),
        "--report",
        str(report),
    ]
    assert navsim_eval(args) == 0
    printed = capsys.readouterr().out
    assert "constant velocity solves" in printed and "the logged human fails" in printed
    data = json.loads(report.read_text())
    kept = load_split(out.parent, "hard").scene_filter.tokens
    assert data["kept"] == len(kept) and len(data["scenes_detail"]) == data["scenes"]
    source = load_scenario_labels(world.splits_dir / "synthetic_all.yaml")
    labels = load_scenario_labels(out)
    assert labels.split == "hard" and labels.filter["kept"] == len(kept), "the new split's labels name it and count"
    assert labels.scenes == {t: source.scenes[t] for t in kept}, "labels of the kept scenes, as the source had them"
    assert "scenario labels of the kept scenes" in printed
    assert navsim_eval([*args[:-4], "--out", str(tmp_path / "x.txt")]) == 2
    assert "expected the new split file" in capsys.readouterr().err
