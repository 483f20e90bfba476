"""The DIPOLE stage end to end in one process, and resuming in the middle of RL continues identically."""

from __future__ import annotations

import json

import pytest
import torch

from vla_drive.config import ConfigError, get_preset, load_config, with_synthetic_world
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


def _rl_config(root, model_dir, output, max_steps, anchored=False):
    overrides = ["algorithm.samples_per_scene=3", "algorithm.rollout_steps=2", f"train.init_from={model_dir}"]
    if anchored:  # the logged trajectory in every group, and replay of the last 2 iterations (checkpointed)
        overrides += ["algorithm.include_logged=true", "algorithm.replay_iterations=2"]
    config = with_synthetic_world(load_config("debug-rl", overrides), root / "world")
    config.train.output_dir = str(root / output)
    config.train.max_steps = max_steps
    config.train.checkpoint_every = 2
    config.train.eval_every = 100
    return config


def _metrics(root, output):
    lines = [json.loads(line) for line in (root / output / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line for line in lines if "train/loss" in line}


def _losses(root, output):
    return {step: (line["train/loss"], line["train/rl/reward_mean"]) for step, line in _metrics(root, output).items()}


@pytest.mark.parametrize("anchored", [False, True], ids=["rollouts", "logged+replay"])
def test_dipole_trains_the_branches_and_resumes_identically(imitation, anchored):
    root, model_dir = imitation
    straight_dir, interrupted_dir = f"straight-{anchored}", f"interrupted-{anchored}"
    final = train_rl(_rl_config(root, model_dir, straight_dir, 4, anchored))
    base = DrivingVLA.from_pretrained(model_dir)
    tuned = DrivingVLA.from_pretrained(final)
    base_state, tuned_state = base.head.state_dict(), tuned.head.state_dict()
    moved = [name for name in base_state if not base_state[name].equal(tuned_state[name])]
    assert moved and all(name.endswith((".pos", ".neg")) for name in moved), "only the adapters move in RL"

    train_rl(_rl_config(root, model_dir, interrupted_dir, 2, anchored))
    train_rl(_rl_config(root, model_dir, interrupted_dir, 4, anchored))  # resumes from the step-2 checkpoint
    straight, interrupted = _losses(root, straight_dir), _losses(root, interrupted_dir)
    assert sorted(interrupted) == [1, 2, 3, 4]
    for step in (3, 4):
        assert interrupted[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-9), f"step {step} differs"
    if anchored:
        replayed = {step: line["train/rl/replayed_samples"] for step, line in _metrics(root, straight_dir).items()}
        assert replayed[1] == 0 and replayed[4] > 0, f"replay should add earlier rollouts from step 2 on: {replayed}"
        assert "train/rl/logged_reward_mean" in _metrics(root, straight_dir)[1]


def test_dipole_with_backbone_lora_trains_backbone_and_branches_only(imitation):
    root, model_dir = imitation
    config = _rl_config(root, model_dir, "lora", 2)
    config.model.trainable = "lora"
    final = train_rl(config)
    base, tuned = DrivingVLA.from_pretrained(model_dir), DrivingVLA.from_pretrained(final)
    base_head, tuned_head = base.head.state_dict(), tuned.head.state_dict()
    moved = [name for name in base_head if not base_head[name].equal(tuned_head[name])]
    assert moved and all(name.endswith((".pos", ".neg")) for name in moved), "the head's base stays the imitation"
    scene = _one_sample(root, base)
    with torch.no_grad():
        before, after = base.encode(base.collate([scene])), tuned.encode(tuned.collate([scene]))
    assert not torch.allclose(before.tokens, after.tokens), "the backbone's LoRA learned from the DIPOLE loss"


def test_replay_with_a_training_backbone_is_refused(imitation):
    root, model_dir = imitation
    config = _rl_config(root, model_dir, "lora-replay", 2)
    config.model.trainable = "lora"
    config.algorithm.replay_iterations = 2
    with pytest.raises(ConfigError, match=r"algorithm\.replay_iterations: needs model\.trainable 'frozen'"):
        train_rl(config)


def _one_sample(root, model):
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.splits import load_split
    from vla_drive.data.dataset import SceneDataset

    split = load_split(root / "world" / "splits", "synthetic_train")
    loader = SceneLoader(root / "world", split.data_split, split.scene_filter)
    return SceneDataset.for_backbone(loader, model.backbone)[0]
