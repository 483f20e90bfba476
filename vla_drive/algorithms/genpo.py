"""GenPO: PPO with the exact likelihood of an invertible coupled flow (Ding et al., NeurIPS 2025; wadx2019/genpo).

The head is :class:`~vla_drive.model.coupled_flow.CoupledFlowHead` (``model.head.kind: coupled_flow``, trained first
by its own imitation stage, exact NLL on (a, a)). Rollouts: z ~ N(0, I) over the doubled action, pair = F(z) through
the ``policy`` branch in K = ``rollout_steps`` coupled steps, trajectory (x + y) / 2. ``prepare`` stores the old
log-likelihood log pi_old(pair) = log N(F_old^-1(pair)) - 2dK log p, recomputed in the first epoch's minibatch
layout (so the ratio is exactly 1 before the first step); with A the group-normalised PDM score,

    log r = log pi(pair) - log pi_old(pair) = 1/2 |z_old|^2 - 1/2 |F^-1(pair)|^2   (the constant log-det cancels)
    L = mean max(-A r, -A clip(r, 1 - eps, 1 + eps))  +  c_H * mean log pi(pair)  +  nu * mean |x - y|

The middle term is the sample entropy bonus -c_H H with H = -mean log pi over the stored pairs (a cross-entropy:
the flow's true entropy is constant, its log-det being constant); the last is the compression loss on fresh pairs
of the current policy (the un-squared L2 norm, as the official code), which keeps x and y together. After each step
the learning rate follows the KL estimate mean(log pi_old - log pi): / 1.5 above 2 x ``desired_kl``, x 1.5 below half
of it, within [``lr_min``, ``lr_max``] (RSL-RL's adaptive schedule). Defaults: wadx2019/genpo and the paper
(p 0.9, K 5, nu 0.01, clip 0.2, desired KL 0.01, entropy 0.005 of its 0.005-0.01 range, RSL-RL's 5 epochs x 4
minibatches; lr bounds 1e-5 and 1e-2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import group_advantage
from vla_drive.algorithms.base import (
    AlgorithmConfig,
    RLConfig,
    RolloutBatch,
    UpdateContext,
    require_context,
)
from vla_drive.algorithms.policy import POLICY, PolicyAlgorithm, clipped_surrogate, masked_mean, ppo_metrics
from vla_drive.model.types import Guidance, SampleRequest

LR_GROWTH = 1.5  # RSL-RL's adaptive schedule: x or / 1.5 per step


@dataclass
class GenPOConfig(RLConfig):
    """GenPO's settings on top of the shared RL ones (the mixing p is the head's: ``model.head.mixing``)."""

    name: str = "genpo"
    head_kind: ClassVar[str] = "coupled_flow"
    rollout_steps: int = field(default=5, metadata={"min": 1})  # K coupled flow steps
    update_epochs: int = field(default=5, metadata={"min": 1})
    minibatches: int = field(default=4, metadata={"min": 1})
    clip: float = field(default=0.2, metadata={"min": 0, "strict": True})
    entropy_coef: float = field(default=0.005, metadata={"min": 0})  # c_H of the sample entropy bonus
    compression_coef: float = field(default=0.01, metadata={"min": 0})  # nu of mean |x - y| on fresh pairs
    adaptive_lr: bool = True  # the KL-adaptive learning-rate scale
    desired_kl: float = field(default=0.01, metadata={"min": 0, "strict": True})
    lr_min: float = field(default=1e-5, metadata={"min": 0, "strict": True})  # bounds of the adapted rate
    lr_max: float = field(default=1e-2, metadata={"min": 0, "strict": True})

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        problems = super().conflicts(experiment)
        if not self.lr_min < self.lr_max:
            problems.append(
                ("algorithm.lr_min", f"expected less than algorithm.lr_max ({self.lr_max}), got {self.lr_min}")
            )
        if self.compression_coef and experiment.model.trainable != "frozen":
            problems.append(
                (
                    "algorithm.compression_coef",
                    f"needs model.trainable 'frozen' (the compression loss samples fresh pairs from the stored "
                    f"conditions), got {experiment.model.trainable!r}; or set it to 0",
                )
            )
        if not experiment.train.init_from and experiment.model.head.kind != "coupled_flow":
            problems.append(
                (
                    "model.head.kind",
                    f"algorithm 'genpo' trains a coupled-flow head; expected 'coupled_flow', got "
                    f"{experiment.model.head.kind!r}",
                )
            )
        return problems


class GenPO(PolicyAlgorithm):
    """Exact-likelihood PPO on the coupled flow, with entropy, compression and the KL-adaptive learning rate."""

    name: ClassVar[str] = "genpo"
    uses_ratio: ClassVar[bool] = True
    config_class: ClassVar[type[AlgorithmConfig]] = GenPOConfig

    config: GenPOConfig

    def __init__(self, config: AlgorithmConfig | None = None) -> None:
        super().__init__(config)
        self._lr_scale = 1.0

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        """Advantages and the old log-likelihoods of the stored pairs (in the first epoch's layout)."""
        context = require_context(self.name, context)
        advantage, valid = group_advantage(batch.reward, batch.group_index)
        old = torch.zeros(batch.num_samples, device=batch.reward.device)
        for rows in context.minibatch_rows(batch.num_samples, old.device):
            request = batch.flow_request(rows, POLICY, self.config.rollout_steps)
            old[rows] = context.call(lambda module, request=request: module(request))[1]
        batch.extras.update(advantage=advantage, valid=valid, old_logp=old)
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        valid, advantage = batch.extras["valid"][rows], batch.extras["advantage"][rows]
        _, logp = model(batch.flow_request(rows, POLICY, self.config.rollout_steps))
        log_ratio = logp - batch.extras["old_logp"][rows]
        pg = masked_mean(clipped_surrogate(log_ratio.exp(), advantage, self.config.clip), valid)
        loss = pg
        metrics = {"pg_loss": float(pg.detach()), **ppo_metrics(log_ratio, self.config.clip, valid)}
        metrics["kl"] = float(masked_mean(-log_ratio.detach(), valid))  # GenPO's KL estimate (k1)
        metrics["entropy"] = float(masked_mean(-logp.detach(), valid))
        if self.config.entropy_coef:
            loss = loss + self.config.entropy_coef * masked_mean(logp, valid)
        if self.config.compression_coef:
            compression = self.compression(model, batch, rows)
            loss = loss + self.config.compression_coef * compression
            metrics["compression"] = float(compression.detach())
        metrics["loss"] = float(loss.detach())
        metrics["lr_scale"] = self._lr_scale
        return loss, metrics

    def compression(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> Tensor:
        """mean |x - y| (L2 over the half's dimensions) of one fresh pair per row from the current policy, with
        gradients through the flow."""
        if batch.inputs is not None:
            raise ValueError("genpo: the compression loss samples from stored conditions; use a frozen backbone")
        policy = Guidance("none", branch=POLICY)
        fresh = model(SampleRequest(batch.sample_cond(rows), 1, self.config.rollout_steps, policy))
        return torch.linalg.vector_norm((fresh.pair[:, 0] - fresh.pair[:, 1]).flatten(1), dim=1).mean()

    # ------------------------------------------------------------------------------------------------ step hooks
    def after_step(self, metrics: dict[str, float]) -> None:
        """RSL-RL's adaptive rate from the step's KL estimate (the mean over ranks): every rank adapts alike."""
        super().after_step(metrics)
        kl, lr = metrics.get("kl"), metrics.get("lr")
        if not self.config.adaptive_lr or kl is None or lr is None:
            return
        scheduled = lr / self._lr_scale
        if kl > 2.0 * self.config.desired_kl:
            target = max(lr / LR_GROWTH, self.config.lr_min)
        elif kl < 0.5 * self.config.desired_kl:
            target = min(lr * LR_GROWTH, self.config.lr_max)
        else:
            return
        self._lr_scale = target / scheduled if scheduled > 0 else self._lr_scale

    def lr_scale(self) -> float:
        return self._lr_scale

    def state_dict(self) -> dict[str, Any]:
        return {"lr_scale": self._lr_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._lr_scale = float(state.get("lr_scale", 1.0))
