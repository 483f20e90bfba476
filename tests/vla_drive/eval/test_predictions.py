"""The one prediction path: a scene's trajectory depends on its token and the seed only, not on the batch size,
the order or the shard that predicts it; stale stored predictions are redone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.vla_drive.tiny_world import tiny_world
from vla_drive.eval.predictions import PredictionStore, predict_scenes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("predict"), frames_per_log=18, spread=0.3)


def test_a_scene_gets_the_same_trajectory_in_any_batch_order_or_shard(tiny):
    model, dataset = tiny.model, tiny.dataset
    reference = predict_scenes(model, dataset, steps=3, seed=5, batch_size=1, num_samples=2).trajectories
    assert len(reference) == len(dataset) and len(set(map(lambda t: t.tobytes(), reference.values()))) > 1
    batched = predict_scenes(model, dataset, steps=3, seed=5, batch_size=4, num_samples=2).trajectories
    shards = [
        predict_scenes(model, dataset, steps=3, seed=5, batch_size=2, num_samples=2, shard=(r, 2)) for r in (1, 0)
    ]
    merged = {**shards[0].trajectories, **shards[1].trajectories}
    assert set(shards[0].trajectories).isdisjoint(shards[1].trajectories)
    for token, expected in reference.items():
        np.testing.assert_allclose(batched[token], expected, atol=1e-5, err_msg=f"{token}: batch size changed it")
        np.testing.assert_allclose(merged[token], expected, atol=1e-5, err_msg=f"{token}: the shard changed it")
    other_seed = predict_scenes(model, dataset, steps=3, seed=6, batch_size=4).first()
    assert not np.allclose(other_seed[dataset.tokens[0]], reference[dataset.tokens[0]][0])


def test_stored_predictions_resume_and_stale_ones_are_redone(tiny, tmp_path):
    model, dataset = tiny.model, tiny.dataset
    store = PredictionStore(tmp_path, {"omega": 0.0, "steps": 3})
    first = predict_scenes(model, dataset, steps=3, seed=1, batch_size=4, store=store).first()
    parts = sorted(tmp_path.glob("part-*.npz"))
    assert len(parts) == -(-len(dataset) // 4)
    stamp = parts[0].stat().st_mtime_ns
    again = predict_scenes(
        model, dataset, steps=3, seed=1, batch_size=4, store=PredictionStore(tmp_path, {"omega": 0.0, "steps": 3})
    )
    assert parts[0].stat().st_mtime_ns == stamp and all(np.array_equal(again.first()[t], first[t]) for t in first)
    PredictionStore(tmp_path, {"omega": 1.0, "steps": 3})  # other settings: the old batches are stale
    assert not list(tmp_path.glob("part-*.npz"))
