"""A tiny DrivingVLA on random conditions, a simple reward and a one-process RL loop: what the algorithm tests share.

The loop is the RL stage's iteration without data, scorer or trainer: rollouts through ``collect_rollouts`` (so
through the model's forward), ``prepare`` with the all-ranks call and the first epoch's minibatch layout, then the
update spec's epochs x minibatches with the algorithm's step hooks (target-KL stop, learning-rate scale).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import torch

from vla_drive.algorithms.base import Algorithm, RolloutBatch, UpdateContext
from vla_drive.algorithms.registry import ALGORITHMS, config_class
from vla_drive.model.head import HeadConfig
from vla_drive.model.types import Cond
from vla_drive.model.vla import DrivingVLA, VLAConfig
from vla_drive.train.rl import minibatch_layout, prepare_policy
from vla_drive.train.rollout import collect_rollouts

RL_ALGORITHMS = [name for name, cls in ALGORITHMS.items() if cls.uses_rollouts]
DIRECTION = torch.tensor([1.0, -1.0, 0.5]).repeat(8, 1)  # [8, 3]: the simple reward's preferred direction


def tiny_model(kind: str = "diffusion", spread: float = 0.3, seed: int = 0, **head) -> DrivingVLA:
    """A tiny-qwen2.5-vl DrivingVLA with a one-block head; ``spread`` gives the zero-initialised output layer random
    weights (a fresh adaLN-Zero head predicts exactly 0, which hides every difference between samples)."""
    settings = dict(kind=kind, hidden_size=32, depth=1, num_heads=2, lora_rank=4, lora_alpha=4.0, sample_steps=4)
    model = DrivingVLA.build(VLAConfig(head=HeadConfig(**{**settings, **head})), seed=seed)
    if spread:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            torch.nn.init.normal_(model.head.final_out.weight, std=spread, generator=generator)
    return model


def random_cond(model: DrivingVLA, scenes: int = 3, tokens: int = 5, seed: int = 0) -> Cond:
    generator = torch.Generator().manual_seed(seed)
    width = model.head.config.cond_dim
    return Cond(
        torch.randn(scenes, tokens, width, generator=generator),
        torch.ones(scenes, tokens, dtype=torch.bool),
        torch.randn(scenes, 8, generator=generator),
    )


def direction_reward(trajectories: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The simple reward: the mean projection of a trajectory [..., 8, 3] on DIRECTION. It is linear, so neither
    shrinking nor spreading the samples changes its expectation: only moving them does."""
    if isinstance(trajectories, np.ndarray):
        return (trajectories * DIRECTION.numpy()).mean(axis=(-2, -1))
    return (trajectories * DIRECTION).mean(dim=(-2, -1))


class TargetReward:
    """``sign`` x :func:`direction_reward` behind the PdmReward interface (every sample valid)."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign

    def __call__(self, tokens, trajectories: np.ndarray, previous=None):
        rewards = self.sign * direction_reward(trajectories).reshape(-1)
        scenes, k = trajectories.shape[:2]
        tables = [SimpleNamespace(valid=np.ones(k, dtype=bool), reasons=[]) for _ in range(scenes)]
        return rewards, {}, tables


def make_algorithm(name: str, **settings) -> Algorithm:
    """The algorithm ``name`` with its defaults and ``settings``."""
    config = config_class(name)(name=name)
    return ALGORITHMS[name](replace(config, **settings))


def call_of(model: torch.nn.Module):
    return lambda fn: fn(model)


@dataclass
class Rollouts:
    batch: RolloutBatch
    layout: list[list[torch.Tensor]]


def rollouts(model: DrivingVLA, algorithm: Algorithm, cond: Cond, seed: int = 0, sign: float = 1.0) -> Rollouts:
    """One iteration's prepared rollouts and the minibatch layout of all its epochs."""
    generator = torch.Generator().manual_seed(seed)
    tokens = [f"scene-{i}" for i in range(cond.batch_size)]
    batch, _ = collect_rollouts(model, cond, tokens, algorithm.rollout_spec(), TargetReward(sign), generator)
    layout = minibatch_layout(batch.num_samples, algorithm.update_spec(), torch.Generator().manual_seed(seed))
    batch = algorithm.prepare(batch, UpdateContext(call_of(model), layout[0], generator))
    return Rollouts(batch, layout)


def train_locally(
    model: DrivingVLA, algorithm: Algorithm, cond: Cond, iterations: int, lr: float, seed: int = 0, sign: float = 1.0
) -> list[float]:
    """Run ``iterations`` RL iterations in this process on ``sign`` x the simple reward; returns the mean reward of
    each iteration's rollouts."""
    prepare_policy(model, algorithm, seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rewards = []
    for iteration in range(iterations):
        prepared = rollouts(model, algorithm, cond, seed=seed * 1000 + iteration, sign=sign)
        rewards.append(float(prepared.batch.reward.mean()))
        algorithm.begin_iteration()
        for epoch in prepared.layout:
            for rows in epoch:
                if algorithm.stop_requested():
                    continue
                step_lr = lr * algorithm.lr_scale()
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
                loss, metrics = algorithm.loss(model, prepared.batch, rows)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                algorithm.after_step({**metrics, "lr": step_lr})
    return rewards


@torch.no_grad()
def perturb_policy(model: DrivingVLA, std: float = 0.05, seed: int = 1) -> None:
    """Move the policy branch away from the old weights (as an update would)."""
    generator = torch.Generator().manual_seed(seed)
    for _, layer in model.head.lora_layers():
        layer.lora_B["policy"].add_(torch.randn(layer.lora_B["policy"].shape, generator=generator) * std)
