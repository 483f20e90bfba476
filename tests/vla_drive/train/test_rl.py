"""The DIPOLE stage end to end in one process, and resuming in the middle of RL continues identically."""

from __future__ import annotations

import json

import pytest

from vla_drive.config import get_preset, with_synthetic_world
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rl import train_rl
from vla_drive.train.stages import train_imitation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imitation(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    config = with_synthetic_world(get_preset("debug"), root / "world")
    config.train.output_dir = str(root / "imitation")
    return root, train_imitation(config)


def _rl_config(root, model_dir, output, max_steps):
    config = with_synthetic_world(get_preset("debug"), root / "world")
    config.algorithm.name = "dipole"
    config.algorithm.samples_per_scene = 3
    config.algorithm.rollout_steps = 2
    config.model.init_from = str(model_dir)
    config.train.output_dir = str(root / output)
    config.train.max_steps = max_steps
    config.train.checkpoint_every = 2
    config.train.eval_every = 100
    return config


def _losses(root, output):
    lines = [json.loads(line) for line in (root / output / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: (line["train/loss"], line["train/rl/reward_mean"]) for line in lines if "train/loss" in line}


def test_dipole_trains_the_branches_and_resumes_identically(imitation):
    root, model_dir = imitation
    final = train_rl(_rl_config(root, model_dir, "straight", 4))
    base = DrivingVLA.from_pretrained(model_dir)
    tuned = DrivingVLA.from_pretrained(final)
    base_state, tuned_state = base.head.state_dict(), tuned.head.state_dict()
    moved = [name for name in base_state if not base_state[name].equal(tuned_state[name])]
    assert moved and all(name.endswith((".pos", ".neg")) for name in moved), "only the adapters move in RL"

    train_rl(_rl_config(root, model_dir, "interrupted", 2))
    train_rl(_rl_config(root, model_dir, "interrupted", 4))  # resumes from the step-2 checkpoint
    straight, interrupted = _losses(root, "straight"), _losses(root, "interrupted")
    assert sorted(interrupted) == [1, 2, 3, 4]
    for step in (3, 4):
        assert interrupted[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-9), f"step {step} differs"
