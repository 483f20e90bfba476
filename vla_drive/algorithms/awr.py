"""AWR and RWR: advantage- / reward-weighted denoising regression of the policy's own rollouts (Peng et al. 2019;
Peters & Schaal 2007), in the diffusion-policy form of irom-lab/dppo.

Both train the ``policy`` branch on the denoising loss of each rollout (fresh t and noise) weighted by
w = min(exp(beta * A), max_weight). AWR's A is the group-normalised PDM score (each sample against the other
samples of its scene); RWR's is the reward standardised over all of this rank's rollouts of the iteration,
(R - mean) / (std + 1e-3), with no per-scene baseline. Defaults are irom-lab/dppo's: beta 10, weight cap 100,
RWR 16 update epochs. The weights are not normalised, so a few samples can dominate (what DIPOLE's bounded
weights avoid). Being regression, both accept off-policy samples: ``replay_iterations`` reuses recent rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import group_advantage
from vla_drive.algorithms.base import AlgorithmConfig, RLConfig, RolloutBatch, RolloutSpec, UpdateContext
from vla_drive.algorithms.policy import POLICY, PolicyAlgorithm
from vla_drive.model.types import NoiseConfig

RWR_REWARD_EPS = 1e-3  # irom-lab/dppo's RWR: returns standardised with std + 1e-3


@dataclass
class AWRConfig(RLConfig):
    """AWR's settings on top of the shared RL ones."""

    name: str = "awr"
    beta: float = field(default=10.0, metadata={"min": 0})  # w = exp(beta * A) (irom-lab/dppo: 10)
    max_weight: float = field(default=100.0, metadata={"min": 0, "strict": True})  # weight cap (irom-lab/dppo: 100)
    stochastic: bool = False  # stochastic rollouts (DDIM eta 1, std floor 0.1, noise clipped at 3, as dppo's AWR)
    replay_iterations: int = field(default=0, metadata={"min": 0})  # reuse rollouts of this many past iterations

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        problems = super().conflicts(experiment)
        if self.replay_iterations and experiment.model.trainable != "frozen":
            problems.append(
                (
                    "algorithm.replay_iterations",
                    f"needs model.trainable 'frozen' (the replay keeps encoded conditions, which a training "
                    f"backbone makes stale), got {experiment.model.trainable!r}",
                )
            )
        return problems


@dataclass
class RWRConfig(AWRConfig):
    """RWR: AWR's settings; the weight's A is the batch-standardised reward; 16 epochs (irom-lab/dppo)."""

    name: str = "rwr"
    update_epochs: int = field(default=16, metadata={"min": 1})


class AWR(PolicyAlgorithm):
    """Advantage-weighted regression on the ``policy`` branch."""

    name: ClassVar[str] = "awr"
    config_class: ClassVar[type[AlgorithmConfig]] = AWRConfig

    config: AWRConfig

    def rollout_spec(self) -> RolloutSpec:
        noise = NoiseConfig(min_std=0.1, randn_clip=3.0) if self.config.stochastic else None
        return self.policy_rollout_spec(stochastic=noise)

    def signal(self, batch: RolloutBatch) -> tuple[Tensor, Tensor]:
        """(A [N], valid [N]): the group-normalised advantage."""
        return group_advantage(batch.reward, batch.group_index)

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        advantage, valid = self.signal(batch)
        weight = torch.exp(self.config.beta * advantage).clamp(max=self.config.max_weight)
        batch.extras.update(advantage=advantage, valid=valid, weight=torch.where(valid, weight, 0.0))
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        """mean over the valid rows of w * denoising loss of the policy branch (fresh t and noise); rows that
        failed scoring run through the forward with x0 zeroed and weight 0 (every rank runs the same passes)."""
        valid = batch.extras["valid"][rows]
        request = batch.loss_request(rows, (POLICY,))
        request.x0 = torch.where(valid[:, None, None], request.x0, torch.zeros_like(request.x0))
        losses = model(request)[0]  # [B]
        mask = valid.to(losses.dtype)
        weight = batch.extras["weight"][rows] * mask
        loss = (weight * losses).sum() / mask.sum().clamp(min=1.0)
        return loss, {"loss": float(loss.detach()), "weight_mean": float(weight.sum() / mask.sum().clamp(min=1.0))}


class RWR(AWR):
    """Reward-weighted regression: AWR with the batch-standardised reward in the weight."""

    name: ClassVar[str] = "rwr"
    config_class: ClassVar[type[AlgorithmConfig]] = RWRConfig

    def signal(self, batch: RolloutBatch) -> tuple[Tensor, Tensor]:
        """(A [N], valid [N]): (R - mean) / (std + 1e-3) over this rank's scorable rollouts (0 elsewhere)."""
        valid = torch.isfinite(batch.reward)
        rewards = batch.reward[valid]
        if not rewards.numel():
            return torch.zeros_like(batch.reward), valid
        standard = (batch.reward - rewards.mean()) / (rewards.std(unbiased=False) + RWR_REWARD_EPS)
        return torch.where(valid, standard, 0.0), valid
