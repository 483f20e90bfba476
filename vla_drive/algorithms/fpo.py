"""FPO: flow policy optimisation (McAllister et al. 2025; akanazawa/fpo), with the DiPOD regulariser (Jiang et al.
2026) as ``dipod_lambda``.

PPO whose likelihood ratio is replaced by the ratio of conditional-flow-matching losses: every rollout x of the
``policy`` branch gets M = ``mc_pairs`` stored pairs (t_j, eps_j) and their old per-pair denoising losses
l_old,j (computed in ``prepare``, in the first epoch's minibatch layout and outside autocast, so the ratio is
exactly 1 before the first step). Then, with A the group-normalised PDM score,

    ratio "mean"     (akanazawa/fpo's default):  rho = exp( mean_j (l_old,j - l_new,j) )
    ratio "per_pair" (FPO++):                     rho_j = exp( l_old,j - l_new,j ), one PPO term per pair
    L = mean max(-A rho, -A clip(rho, 1 - eps, 1 + eps))  +  lambda_D * mean l(x; fresh t, eps)

The last term is DiPOD's on-policy ELBO regulariser: the plain denoising loss of the policy on its own rollouts
(lambda_D 0.05 in the DiPOD paper; 0 = off, the default: FPO as published). Defaults: 8 pairs and clip 0.05 as
akanazawa/fpo; 4 epochs x 4 minibatches (akanazawa/fpo: 16 x 32 over a far larger batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

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
from vla_drive.algorithms.policy import (
    POLICY,
    PolicyAlgorithm,
    clipped_surrogate,
    dipod_regulariser,
    masked_mean,
    ppo_metrics,
)

RATIO_MODES: tuple[str, ...] = ("mean", "per_pair")
MC_T_MIN = 1e-3  # pair times t ~ U[1e-3, 1], the head's default training range (akanazawa/fpo: U[0, 1])


@dataclass
class FPOConfig(RLConfig):
    """FPO's settings on top of the shared RL ones."""

    name: str = "fpo"
    mc_pairs: int = field(default=8, metadata={"min": 1})  # stored (t, eps) pairs per rollout (akanazawa/fpo: 8)
    clip: float = field(default=0.05, metadata={"min": 0, "strict": True})  # PPO clip (akanazawa/fpo: 0.05)
    ratio: str = field(default="mean", metadata={"choices": RATIO_MODES})  # mean (FPO) | per_pair (FPO++)
    update_epochs: int = field(default=4, metadata={"min": 1})
    minibatches: int = field(default=4, metadata={"min": 1})
    target_kl: float | None = field(default=None, metadata={"min": 0, "strict": True})  # early stop (null = off)
    dipod_lambda: float = field(default=0.0, metadata={"min": 0})  # DiPOD's on-policy denoising term (0.05 in DiPOD)


class FPO(PolicyAlgorithm):
    """PPO on the ratio of flow-matching losses at stored Monte-Carlo pairs."""

    name: ClassVar[str] = "fpo"
    uses_ratio: ClassVar[bool] = True
    config_class: ClassVar[type[AlgorithmConfig]] = FPOConfig

    config: FPOConfig

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        """Advantages, M pairs (t, eps) per rollout and their old losses (in the first epoch's layout)."""
        context = require_context(self.name, context)
        advantage, valid = group_advantage(batch.reward, batch.group_index)
        x0 = batch.sample.x0
        count, pairs = batch.num_samples, self.config.mc_pairs
        generator = context.generator
        uniform = torch.rand(count, pairs, generator=generator, device=x0.device)
        eps = torch.randn(count, pairs, *x0.shape[1:], generator=generator, device=x0.device, dtype=torch.float32)
        t = MC_T_MIN + (1.0 - MC_T_MIN) * uniform
        old = torch.zeros(count, pairs, device=x0.device)
        for rows in context.minibatch_rows(count, x0.device):
            request = self._request(batch, rows, t, eps, valid)
            old[rows] = context.call(lambda module, request=request: module(request))[0].float()
        batch.extras.update(advantage=advantage, valid=valid, mc_t=t, mc_eps=eps, old_loss=old)
        return batch

    def _request(self, batch: RolloutBatch, rows: Tensor, t: Tensor, eps: Tensor, valid: Tensor):
        request = batch.loss_request(rows, (POLICY,), t=t[rows], eps=eps[rows], exact=True)
        request.x0 = torch.where(valid[rows, None, None], request.x0, torch.zeros_like(request.x0))
        return request

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        extras = batch.extras
        valid, advantage = extras["valid"][rows], extras["advantage"][rows]
        new = model(self._request(batch, rows, extras["mc_t"], extras["mc_eps"], extras["valid"]))[0]  # [B, M]
        difference = extras["old_loss"][rows] - new
        if self.config.ratio == "mean":
            log_ratio, weight = difference.mean(dim=1), advantage
        else:
            log_ratio, weight = difference, advantage[:, None]
        pg = masked_mean(clipped_surrogate(log_ratio.exp(), weight, self.config.clip), valid)
        loss = pg
        metrics = {"pg_loss": float(pg.detach()), **ppo_metrics(log_ratio, self.config.clip, valid)}
        metrics["cfm_loss"] = float(masked_mean(new.detach(), valid))
        if self.config.dipod_lambda:
            dipod = dipod_regulariser(model, batch, rows, valid)
            loss = loss + self.config.dipod_lambda * dipod
            metrics["dipod_loss"] = float(dipod.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics
