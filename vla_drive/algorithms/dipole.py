"""DIPOLE: dichotomous diffusion policy improvement (Liang et al., ICLR 2026).

Two LoRA branches of the head are trained by plain denoising regression on the policy's own rollouts: ``pos``
with weights sigmoid(beta * G), ``neg`` with weights 1 - sigmoid(beta * G), where G is the group-normalised PDM
score of each sample among the K samples of its scene. At inference eps = (1 + omega) eps_pos - omega eps_neg,
so greediness is tuned by omega without retraining.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import group_advantage
from vla_drive.algorithms.base import Algorithm, RolloutBatch, RolloutSpec
from vla_drive.model.types import Guidance, NoiseCfg

BRANCHES = ("pos", "neg")


class Dipole(Algorithm):
    name = "dipole"

    def __init__(
        self,
        samples_per_scene: int = 8,
        rollout_steps: int = 5,
        rollout_omega: float = 0.0,
        beta: float = 1.0,
        stochastic: bool = False,
        include_logged: bool = False,
    ) -> None:
        if samples_per_scene < 1 or rollout_steps < 1:
            raise ValueError(f"DIPOLE: samples_per_scene and rollout_steps must be >= 1, got {samples_per_scene}, "
                             f"{rollout_steps}")  # fmt: skip
        self.samples_per_scene = samples_per_scene
        self.rollout_steps = rollout_steps
        self.rollout_omega = rollout_omega
        self.beta = beta
        self.stochastic = stochastic
        self.include_logged = include_logged

    @classmethod
    def from_config(cls, config) -> Dipole:
        return cls(
            config.samples_per_scene, config.rollout_steps, config.rollout_omega, config.beta, config.stochastic,
            config.include_logged,
        )  # fmt: skip

    def rollout_spec(self) -> RolloutSpec:
        return RolloutSpec(
            samples_per_scene=self.samples_per_scene,
            steps=self.rollout_steps,
            guidance=Guidance("dichotomous", self.rollout_omega),
            stochastic=NoiseCfg() if self.stochastic else None,
            include_logged=self.include_logged,
        )

    def trainable_branches(self) -> tuple[str | None, ...]:
        return BRANCHES

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch) -> RolloutBatch:
        advantage, valid = group_advantage(batch.reward, batch.group_index)
        weight_pos = torch.sigmoid(self.beta * advantage)
        batch.extras.update(advantage=advantage, valid=valid, weight_pos=weight_pos, weight_neg=1.0 - weight_pos)
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Weighted denoising of the rollouts (fresh t and noise) for both branches in one batched forward.

        Every row goes through the forward, also rows that failed scoring (their x0 zeroed, their weight 0): every
        rank then runs the same passes, which ZeRO-3 needs, and a minibatch without any valid sample gives 0.
        """
        valid = batch.extras["valid"][rows]
        request = batch.loss_request(rows, BRANCHES)
        request.x0 = torch.where(valid[:, None, None], request.x0, torch.zeros_like(request.x0))  # no NaN inside
        losses = model(request)  # [2, B]
        mask = valid.to(losses.dtype)
        count = mask.sum().clamp(min=1.0)
        weight_pos, weight_neg = batch.extras["weight_pos"][rows] * mask, batch.extras["weight_neg"][rows] * mask
        loss_pos = (weight_pos * losses[0]).sum() / count
        loss_neg = (weight_neg * losses[1]).sum() / count
        loss = loss_pos + loss_neg
        return loss, {"loss": float(loss.detach()), "loss_pos": float(loss_pos.detach()),
                      "loss_neg": float(loss_neg.detach())}  # fmt: skip
