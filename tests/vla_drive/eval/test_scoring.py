"""Scoring model trajectories: the logged human scores well, noise scores worse, summaries are consistent."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.eval.scoring import SceneScorer, summarize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    summary = generate_world(tmp_path_factory.mktemp("world"), WorldConfig(num_logs=1, frames_per_log=20))
    split = load_split(summary.splits_dir, "synthetic_all")
    return summary, SceneLoader(summary.data_root, split.data_split, split.scene_filter)


def test_human_beats_a_standing_car_and_caches_are_reused(world, tmp_path):
    summary, loader = world
    scenes = [loader[t] for t in loader.tokens]
    scorer = SceneScorer.from_scenes(scenes, summary.maps_root, tmp_path / "cache")
    assert not scorer.skipped and len(scorer.caches) == len(scenes)
    human = np.stack([scene.future_trajectory().poses for scene in scenes])
    standing = np.zeros_like(human)
    both = np.stack([human, standing], axis=1)  # K = 2 candidates per scene
    tables = scorer.score([s.token for s in scenes], both)
    human_summary, standing_summary = summarize(tables, 0), summarize(tables, 1)
    assert human_summary["score"] > standing_summary["score"]
    assert human_summary["valid_fraction"] == 1.0
    again = SceneScorer.from_scenes(scenes, summary.maps_root, tmp_path / "cache")
    np.testing.assert_allclose(
        summarize(again.score([s.token for s in scenes], human))["score"], human_summary["score"]
    )


def test_nan_trajectories_count_as_zero(world, tmp_path):
    summary, loader = world
    scenes = [loader[t] for t in loader.tokens[:2]]
    scorer = SceneScorer.from_scenes(scenes, summary.maps_root, tmp_path / "nan-cache")
    trajectories = np.stack([scene.future_trajectory().poses for scene in scenes])
    trajectories[1] = np.nan
    result = summarize(scorer.score([s.token for s in scenes], trajectories))
    assert result["valid_fraction"] == 0.5
    assert result["score_with_invalid_as_zero"] == pytest.approx(result["score"] / 2)


def test_a_process_pool_builds_the_same_metric_caches(world, tmp_path, monkeypatch):
    import vla_drive.eval.scoring as scoring
    from navsim_eval.pdm.cache_io import MetricCacheStore

    summary, loader = world
    monkeypatch.setattr(scoring, "_MIN_SCENES_PER_WORKER", 1)  # a tiny split still gets two workers
    seen = []
    assert not scoring.build_metric_caches(loader, summary.maps_root, tmp_path / "pool", lambda *a: seen.append(a), 2)
    assert not scoring.build_metric_caches(loader, summary.maps_root, tmp_path / "one", workers=1)
    pooled, single = MetricCacheStore(tmp_path / "pool"), MetricCacheStore(tmp_path / "one")
    assert set(pooled.tokens()) == set(single.tokens()) == set(loader.tokens)
    for token in loader.tokens:
        assert pooled.path(token).read_bytes() == single.path(token).read_bytes(), f"{token}: caches differ"
    assert seen[-1] == ("metric caches", len(loader), len(loader))
