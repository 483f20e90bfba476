"""A one-log synthetic world and an untrained tiny DrivingVLA fitted to it: the shared set-up of the tests that
run a model on real scenes (evaluation, RL rollouts, sweeps, the navsim agent)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, WorldSummary, generate_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig


@dataclass
class TinyWorld:
    world: WorldSummary
    loader: SceneLoader
    model: DrivingVLA
    dataset: SceneDataset


def tiny_world(root: Path, frames_per_log: int = 16, include_history: bool = False, spread: float = 0.0) -> TinyWorld:
    """Generate the world under ``root`` and build the model (normaliser fitted on its scenes). ``spread`` > 0
    gives the head's zero-initialised output layer random weights of that scale: a fresh adaLN-Zero head predicts
    the mean trajectory exactly, which hides differences between samples, seeds and branches."""
    world = generate_world(root / "world", WorldConfig(num_logs=1, frames_per_log=frames_per_log))
    split = load_split(world.splits_dir, "synthetic_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    model = DrivingVLA.build(
        VLAConfig(include_history=include_history, head=HeadConfig(hidden_size=128, depth=4, num_heads=4)), seed=0
    )
    dataset = SceneDataset.for_backbone(loader, model.backbone, include_history=include_history)
    model.fit_normalizer(np.stack([dataset[i].trajectory for i in range(len(dataset))]))
    if spread:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            torch.nn.init.normal_(model.head.final_out.weight, std=spread, generator=generator)
    return TinyWorld(world, loader, model, dataset)
