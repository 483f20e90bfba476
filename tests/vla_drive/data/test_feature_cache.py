"""The frozen-backbone feature cache: same losses as the live backbone, content-keyed reuse, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.data.feature_cache import (
    CachedFeatureDataset,
    FeatureCacheError,
    build_feature_cache,
    collate_cached,
)
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = generate_world(tmp_path_factory.mktemp("world"), WorldConfig(num_logs=1, frames_per_log=18))
    split = load_split(world.splits_dir, "synthetic_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    model = DrivingVLA.build(VLAConfig(head=HeadConfig(hidden_size=128, depth=4, num_heads=4)), seed=0)
    dataset = SceneDataset.for_backbone(loader, model.backbone)
    model.fit_normalizer(np.stack([dataset[i].trajectory for i in range(len(dataset))]))
    return model, dataset


def test_cached_loss_equals_live_loss(setup, tmp_path):
    model, dataset = setup
    folder = build_feature_cache(model.backbone, dataset, tmp_path, batch_size=2, shard_size=3)
    cached = CachedFeatureDataset(folder)
    assert len(cached) == len(dataset) and len(list(folder.glob("shard-*.safetensors"))) == 2
    samples = [dataset[i] for i in range(4)]
    cached_batch = collate_cached([cached[cached.tokens.index(s.token)] for s in samples])
    live_batch = model.collate(samples)
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(4, generator=generator) * 0.9 + 0.05
    eps = torch.randn(4, 8, 3, generator=generator)
    with torch.no_grad():
        live_cond = model.encode(live_batch)
        x0 = model.normalizer.normalize(live_batch.trajectory)
        live = model.head.denoise_loss(x0, live_cond, t=t, eps=eps)
        cached_loss = model.head.denoise_loss(
            model.normalizer.normalize(cached_batch.trajectory), cached_batch.cond, t=t, eps=eps
        )
    torch.testing.assert_close(cached_loss, live, atol=1e-5, rtol=1e-5)
    assert model(cached_batch).shape == (4,)


def test_cache_is_reused_and_keyed_by_content(setup, tmp_path):
    model, dataset = setup
    first = build_feature_cache(model.backbone, dataset, tmp_path)
    assert build_feature_cache(model.backbone, dataset, tmp_path) == first
    other = SceneDataset(
        dataset.scenes, dataset.processor, cameras=dataset.cameras, image_size=dataset.image_size, include_history=True
    )  # a different prompt: different features
    assert build_feature_cache(model.backbone, other, tmp_path) != first


def test_cache_errors_name_the_problem(setup, tmp_path):
    model, dataset = setup
    with pytest.raises(FeatureCacheError, match="not a readable feature cache"):
        CachedFeatureDataset(tmp_path)
    folder = build_feature_cache(model.backbone, dataset, tmp_path)
    with pytest.raises(FeatureCacheError, match="not cached"):
        CachedFeatureDataset(folder, tokens=["nope"])
    lora = DrivingVLA.build(VLAConfig(trainable="lora", head=HeadConfig(hidden_size=128, depth=4, num_heads=4)))
    with pytest.raises(FeatureCacheError, match="frozen backbone"):
        build_feature_cache(lora.backbone, dataset, tmp_path)
