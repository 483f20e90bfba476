"""DIPOLE: dichotomous diffusion policy improvement (Liang et al., ICLR 2026).

Two LoRA branches of the head are trained by plain denoising regression on the policy's own rollouts: ``pos``
with weights sigmoid(beta * G), ``neg`` with weights 1 - sigmoid(beta * G), where G is the group-normalised PDM
score of each sample among the K samples of its scene (``advantage``: z-score by default, centred or raw,
:mod:`vla_drive.algorithms.advantages`). At inference eps = (1 + omega) eps_pos - omega eps_neg, so greediness is
tuned by omega without retraining.

With ``include_logged`` the logged human trajectory joins each group, weighted by ``logged_weight`` in the group's
statistics and in the loss (0: as if it were not there; 1: one more member). ``rollout_temperature`` scales the
rollouts' sampler noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import ADVANTAGE_MODES, normalised_advantage
from vla_drive.algorithms.base import Algorithm, AlgorithmConfig, RLConfig, RolloutBatch, RolloutSpec, UpdateContext
from vla_drive.model.types import Guidance, NoiseConfig

BRANCHES = ("pos", "neg")


@dataclass
class DipoleConfig(RLConfig):
    """DIPOLE's settings on top of the shared RL ones."""

    name: str = "dipole"
    rollout_omega: float = field(default=0.0, metadata={"min": 0})  # guidance of the rollouts (0 = the pos branch)
    beta: float = field(default=1.0, metadata={"min": 0, "strict": True})  # temperature of sigmoid(beta * G)
    stochastic: bool = False  # stochastic (DDIM eta 1) rollouts instead of the deterministic sampler
    include_logged: bool = False  # the logged human trajectory joins each scene's group (anchors RL to the data)
    logged_weight: float = field(default=1.0, metadata={"min": 0})  # its weight in the group's statistics and loss
    advantage: str = field(default="zscore", metadata={"choices": ADVANTAGE_MODES})  # zscore | centred | raw
    rollout_temperature: float = field(default=1.0, metadata={"min": 0})  # scale of the rollouts' sampler noise
    replay_iterations: int = field(default=0, metadata={"min": 0})  # reuse rollouts of this many past iterations

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        problems = super().conflicts(experiment)
        branches = tuple(experiment.model.head.branches)
        if not {"pos", "neg"} <= set(branches):
            problems.append(
                (
                    "model.head.branches",
                    f"algorithm 'dipole' trains the pos and neg branches; expected both, got {list(branches)}",
                )
            )
        if self.replay_iterations and experiment.model.trainable != "frozen":
            problems.append(
                (
                    "algorithm.replay_iterations",
                    f"needs model.trainable 'frozen' (the replay keeps encoded "
                    f"conditions, which a training backbone makes stale), got {experiment.model.trainable!r}",
                )
            )
        return problems


class Dipole(Algorithm):
    name: ClassVar[str] = "dipole"
    config_class: ClassVar[type[AlgorithmConfig]] = DipoleConfig

    config: DipoleConfig

    def rollout_spec(self) -> RolloutSpec:
        config = self.config
        return RolloutSpec(
            samples_per_scene=config.samples_per_scene,
            steps=config.rollout_steps,
            guidance=Guidance("dichotomous", config.rollout_omega),
            stochastic=NoiseConfig() if config.stochastic else None,
            include_logged=config.include_logged,
            temperature=config.rollout_temperature,
        )

    def trainable_branches(self) -> tuple[str | None, ...]:
        return BRANCHES

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        member = self._member_weights(batch)
        advantage, valid = normalised_advantage(batch.reward, batch.group_index, self.config.advantage, member)
        weight_pos = torch.sigmoid(self.config.beta * advantage)
        batch.extras.update(advantage=advantage, valid=valid, weight_pos=weight_pos, weight_neg=1.0 - weight_pos)
        if member is not None:
            batch.extras["member_weight"] = member
        return batch

    def _member_weights(self, batch: RolloutBatch) -> Tensor | None:
        """Each sample's weight in its group: ``logged_weight`` on the logged trajectories, 1 on the rollouts (None
        when every weight is 1: the unweighted statistics, bit for bit)."""
        if batch.logged is None or self.config.logged_weight == 1.0:
            return None
        ones = torch.ones_like(batch.reward)
        return torch.where(batch.logged.to(batch.reward.device), ones * self.config.logged_weight, ones)

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
        member = batch.extras.get("member_weight")
        if member is not None:  # a lighter logged trajectory counts for less, in the sum and in the count
            mask = mask * member[rows].to(losses.dtype)
        count = mask.sum().clamp(min=1.0)
        weight_pos, weight_neg = batch.extras["weight_pos"][rows] * mask, batch.extras["weight_neg"][rows] * mask
        loss_pos = (weight_pos * losses[0]).sum() / count
        loss_neg = (weight_neg * losses[1]).sum() / count
        loss = loss_pos + loss_neg
        return loss, {
            "loss": float(loss.detach()),
            "loss_pos": float(loss_pos.detach()),
            "loss_neg": float(loss_neg.detach()),
        }
