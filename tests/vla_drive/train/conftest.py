"""Shared fixtures of the trainer tests: samples of a tiny generated world for the real-DrivingVLA tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vla_samples(tmp_path_factory) -> list:
    """DrivingSamples of a one-log synthetic world, for the tiny-qwen2.5-vl preset (4 scenes)."""
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.splits import load_split
    from navsim_eval.synthetic.world import WorldConfig, generate_world
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.model.backbone import VLMBackbone

    world = generate_world(tmp_path_factory.mktemp("world"), WorldConfig(num_logs=1, frames_per_log=17))
    split = load_split(world.splits_dir, "synthetic_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    dataset = SceneDataset.for_backbone(loader, VLMBackbone.from_preset("tiny-qwen2.5-vl"))
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture(scope="session")
def vla_samples_file(vla_samples, tmp_path_factory) -> Path:
    """The same samples pickled, for worker processes."""
    path = tmp_path_factory.mktemp("samples") / "samples.pkl"
    path.write_bytes(pickle.dumps(vla_samples))
    return path
