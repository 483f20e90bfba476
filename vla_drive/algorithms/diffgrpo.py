"""DiffGRPO, ReCogDrive's diffusion GRPO (Li et al., ICLR 2026; xiaomi-research/recogdrive), with the optional
DiPOD regulariser (Jiang et al. 2026).

G = 8 rollouts per scene from the stochastic DDIM sampler (eta 1, 5 steps, sampling std floor 0.04, noise clipped
at 5) of the ``policy`` branch; A = the group-normalised PDM score; per-step log-probabilities with std floor 0.1,
clamped to [-5, 2] per dimension and averaged over dimensions (:mod:`vla_drive.algorithms.chain_pg`). One
on-policy update, no ratio and no clip:

    L = -mean_k( log p_k * A * 0.6^(N - 1 - k) )  +  0.1 * L_BC  +  lambda_D * L_DiPOD

L_BC = -mean log p(chain of the frozen imitation policy), one such chain per scene; L_DiPOD = the plain denoising
loss of the policy branch on the batch's own rollouts (fresh t and noise), DiPOD's on-policy ELBO regulariser
(lambda_D 0.05 in the DiPOD paper; 0 = off, the default: DiffGRPO as published). ReCogDrive's group std is
unbiased; ours is the population std, so K = 1 gives 0 and not NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.advantages import group_advantage
from vla_drive.algorithms.base import AlgorithmConfig, RolloutBatch, UpdateContext
from vla_drive.algorithms.chain_pg import ChainPGConfig, ChainPolicyGradient, bc_term, policy_gradient_term
from vla_drive.algorithms.policy import dipod_regulariser, masked_mean


@dataclass
class DiffGRPOConfig(ChainPGConfig):
    """DiffGRPO's settings (defaults: xiaomi-research/recogdrive's GRPOConfig)."""

    name: str = "diffgrpo"
    samples_per_scene: int = field(default=8, metadata={"min": 1})  # G
    rollout_steps: int = field(default=5, metadata={"min": 1})
    sampling_std: float = field(default=0.04, metadata={"min": 0, "strict": True})
    logprob_std: float = field(default=0.1, metadata={"min": 0, "strict": True})
    randn_clip: float | None = field(default=5.0, metadata={"min": 0, "strict": True})
    gamma_denoise: float = field(default=0.6, metadata={"min": 0})
    bc_weight: float = field(default=0.1, metadata={"min": 0})
    dipod_lambda: float = field(default=0.0, metadata={"min": 0})  # DiPOD's on-policy denoising term (0.05 in DiPOD)


class DiffGRPO(ChainPolicyGradient):
    """REINFORCE over the denoising chain with group advantages, a BC term and the DiPOD regulariser."""

    name: ClassVar[str] = "diffgrpo"
    config_class: ClassVar[type[AlgorithmConfig]] = DiffGRPOConfig

    config: DiffGRPOConfig

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        advantage, valid = group_advantage(batch.reward, batch.group_index)
        batch.extras.update(advantage=advantage, valid=valid)
        self.sample_reference(batch, context)
        return batch

    def loss(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        valid = batch.extras["valid"][rows]
        logp, reference_logp = self.policy_and_reference_logprobs(model, batch, rows)
        weighted = batch.extras["advantage"][rows, None] * self.step_discount(logp.device)
        pg = policy_gradient_term(logp, weighted, valid)
        loss, metrics = pg, {"pg_loss": float(pg.detach()), "logp_mean": float(masked_mean(logp.detach(), valid))}
        bc = bc_term(reference_logp)
        if bc is not None:
            loss = loss + self.config.bc_weight * bc
            metrics["bc_loss"] = float(bc.detach())
        if self.config.dipod_lambda:
            dipod = dipod_regulariser(model, batch, rows, valid)
            loss = loss + self.config.dipod_lambda * dipod
            metrics["dipod_loss"] = float(dipod.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics
