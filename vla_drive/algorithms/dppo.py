"""DPPO: diffusion policy policy optimisation (Ren et al., ICLR 2025; irom-lab/dppo), on group advantages.

Clipped PPO over the denoising chain of the ``policy`` branch: for each of the last K' transitions k of a stored
chain, r_k = exp(log p_k - log p_k,old) with the per-step Gaussian log-probabilities of
:mod:`vla_drive.algorithms.chain_pg`, and

    L = mean_{samples, k} max(-A_k r_k, -A_k clip(r_k, 1 - eps_k, 1 + eps_k))  +  bc_weight * L_BC
    A_k = A * gamma_denoise^(K' - 1 - k)
    eps_k = eps_base + (eps - eps_base) * (e^(rate u_k) - 1) / (e^rate - 1),  u_k = k / (K' - 1)

so the noisier steps get eps_base and the cleanest eps. The old log-probabilities are computed in ``prepare`` at
the rollout weights, in float32 and in the first epoch's minibatch layout, so r = 1 exactly before the first step.
A is the group-normalised PDM score (DPPO's GAE critic has no counterpart in this one-step bandit). Defaults are
irom-lab/dppo's gym fine-tuning: clip 0.01 (base 0.01, rate 3), gamma_denoise 0.99, std floors 0.1, noise clip
3, 5 epochs, target KL 1; 10 rollout steps with the last 5 trained (dppo: 20 with 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import group_advantage
from vla_drive.algorithms.base import AlgorithmConfig, RolloutBatch, UpdateContext, require_context
from vla_drive.algorithms.chain_pg import ChainPGConfig, ChainPolicyGradient, bc_term
from vla_drive.algorithms.policy import POLICY, clipped_surrogate, masked_mean, ppo_metrics


@dataclass
class DPPOConfig(ChainPGConfig):
    """DPPO's settings (defaults: irom-lab/dppo's gym fine-tuning configs)."""

    name: str = "dppo"
    rollout_steps: int = field(default=10, metadata={"min": 1})
    trained_steps: int | None = field(default=5, metadata={"min": 1})  # K' (dppo: 10 of 20)
    update_epochs: int = field(default=5, metadata={"min": 1})
    minibatches: int = field(default=4, metadata={"min": 1})
    gamma_denoise: float = field(default=0.99, metadata={"min": 0})
    clip: float = field(default=0.01, metadata={"min": 0, "strict": True})  # eps of the cleanest step
    clip_base: float = field(default=0.01, metadata={"min": 0, "strict": True})  # eps of the noisiest step
    clip_rate: float = field(default=3.0, metadata={"min": 0, "strict": True})  # exponential interpolation rate
    target_kl: float | None = field(default=1.0, metadata={"min": 0, "strict": True})  # early stop (null = off)


class DPPO(ChainPolicyGradient):
    """Clipped PPO over the last K' denoising steps."""

    name: ClassVar[str] = "dppo"
    uses_ratio: ClassVar[bool] = True
    config_class: ClassVar[type[AlgorithmConfig]] = DPPOConfig

    config: DPPOConfig

    def clip_schedule(self, device: torch.device | str) -> Tensor:
        """eps_k for the K' trained steps [K'] (eps_base at the noisiest, eps at the cleanest)."""
        config, steps = self.config, self.trained
        if steps == 1:
            return torch.tensor([config.clip], device=device)
        u = torch.arange(steps, device=device, dtype=torch.float32) / (steps - 1)
        rise = torch.expm1(config.clip_rate * u) / math.expm1(config.clip_rate)
        return config.clip_base + (config.clip - config.clip_base) * rise

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        """Advantages, the old log-probabilities (in the first epoch's minibatch layout) and reference chains."""
        advantage, valid = group_advantage(batch.reward, batch.group_index)
        batch.extras.update(advantage=advantage, valid=valid)
        context = require_context(self.name, context)
        old = torch.zeros(batch.num_samples, self.trained, device=batch.reward.device)
        noise = self.config.noise()
        for rows in context.minibatch_rows(batch.num_samples, old.device):
            request = batch.chain_request(rows, POLICY, noise, self.trained)
            old[rows] = context.call(lambda module, request=request: module(request)).float()
        batch.extras["old_logp"] = old
        self.sample_reference(batch, context)
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        valid = batch.extras["valid"][rows]
        logp = self.policy_logprobs(model, batch, rows)  # [B, K'] (its own forward: the layout of prepare)
        log_ratio = logp - batch.extras["old_logp"][rows]
        weighted = batch.extras["advantage"][rows, None] * self.step_discount(logp.device)
        clip = self.clip_schedule(logp.device)
        pg = masked_mean(clipped_surrogate(log_ratio.exp(), weighted, clip), valid)
        loss, metrics = pg, {"pg_loss": float(pg.detach()), **ppo_metrics(log_ratio, clip, valid)}
        bc = bc_term(self.reference_logprobs(model, batch, rows))
        if bc is not None:
            loss = loss + self.config.bc_weight * bc
            metrics["bc_loss"] = float(bc.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics
