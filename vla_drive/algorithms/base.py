"""The algorithm interface: what the RL loop asks of every algorithm (rollout spec, prepare, loss, after_step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vla_drive.model.types import Cond, Guidance, NoiseCfg, SampleOut


@dataclass
class RolloutSpec:
    """How to sample rollouts: K per scene, sampler steps, guidance, stochasticity, whether to keep the chain."""

    samples_per_scene: int = 8
    steps: int = 10
    guidance: Guidance | None = None
    stochastic: NoiseCfg | None = None
    return_chain: bool = False
    include_logged: bool = False  # the logged human trajectory joins each scene's group as one more member


@dataclass
class RolloutBatch:
    """Rollouts of S scenes x K samples (samples of a scene consecutive) with their rewards. With
    ``RolloutSpec.include_logged`` every group has K + 1 members, the last one the logged human trajectory."""

    cond: Cond  # [S, ...] one condition per scene (repeated per sample where needed)
    sample: SampleOut  # x0 / traj [S*K, 8, 3], chain and log-probs when stochastic
    reward: Tensor  # [S*K], NaN where a sample could not be scored
    group_index: Tensor  # [S*K] scene index of every sample
    tokens: list[str]  # [S]
    reward_terms: dict[str, Tensor] = field(default_factory=dict)  # sub-metrics [S*K] for logging
    logged: Tensor | None = None  # [S*K] True on the logged human trajectories (``RolloutSpec.include_logged``)
    extras: dict[str, Any] = field(default_factory=dict)  # algorithm-specific (advantages, weights, ...)
    inputs: Any = None  # the raw batch of the S scenes when the backbone trains: the loss re-encodes it

    @property
    def num_samples(self) -> int:
        return int(self.reward.shape[0])

    def sample_cond(self, rows: Tensor) -> Cond:
        """The condition of each sample in ``rows``."""
        return self.cond.select(self.group_index[rows])

    def loss_request(self, rows: Tensor, branches: tuple[str | None, ...]) -> HeadLossRequest:
        """Denoising losses of the samples ``rows`` under ``branches``: on the stored conditions, or, when the
        backbone trains (``inputs`` set), on conditions re-encoded with gradients inside the model's forward."""
        x0 = self.sample.x0[rows].detach()
        if self.inputs is None:
            return HeadLossRequest(x0, self.sample_cond(rows), branches)
        return HeadLossRequest(x0, None, branches, inputs=self.inputs, scene=self.group_index[rows])


@dataclass
class HeadLossRequest:
    """Denoising losses of model-space samples under named branches, computed inside the model's forward so that
    DeepSpeed / DDP wrappers see the pass (``model(request)`` returns [len(branches), B])."""

    x0: Tensor
    cond: Cond | None  # None: encode ``inputs`` (with gradients into a training backbone)
    branches: tuple[str | None, ...]
    t: Tensor | None = None
    eps: Tensor | None = None
    inputs: Any = None  # a raw batch of scenes to encode instead of ``cond``
    scene: Tensor | None = None  # [B] the row of ``inputs`` each sample belongs to


class Algorithm:
    """One training objective for the trajectory head."""

    name = "base"

    def rollout_spec(self) -> RolloutSpec:
        raise NotImplementedError

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch) -> RolloutBatch:
        """Advantages, weights, old log-probs... (no gradients)."""
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after every optimiser step (schedules, reference refresh...)."""

    def trainable_branches(self) -> tuple[str | None, ...]:
        """Which head branches this algorithm trains (None = the base)."""
        return (None,)
