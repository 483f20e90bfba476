"""What the single-branch RL algorithms share (AWR / RWR, DiffGRPO, DPPO, FPO, GenPO): they train one LoRA branch,
``policy``, over the frozen imitation head; predictions then sample from that branch. Also the PPO pieces several
of them use (the clipped surrogate, the KL estimate) and masked means over the samples that could be scored.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from vla_drive.algorithms.base import Algorithm, RolloutBatch, RolloutSpec
from vla_drive.model.types import Guidance

POLICY = "policy"


class PolicyAlgorithm(Algorithm):
    """An RL algorithm that trains the ``policy`` branch (predictions sample from it after training)."""

    policy_branch: ClassVar[str | None] = POLICY

    def trainable_branches(self) -> tuple[str | None, ...]:
        return (POLICY,)

    def rollout_spec(self) -> RolloutSpec:
        """K samples per scene from the policy branch, unguided, deterministic (see :meth:`policy_rollout_spec`)."""
        return self.policy_rollout_spec()

    def policy_rollout_spec(self, **options: Any) -> RolloutSpec:
        """The rollouts of ``samples_per_scene`` samples per scene and ``rollout_steps`` sampler steps from the
        policy branch, with ``options`` (e.g. ``stochastic``, ``return_chain``) as the algorithm needs them."""
        config = self.config
        return RolloutSpec(
            samples_per_scene=config.samples_per_scene,
            steps=config.rollout_steps,
            guidance=Guidance("none", branch=POLICY),
            **options,
        )


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` [B, ...] over the rows where ``mask`` [B] is True (0 when none is): every rank runs the
    same passes even when its minibatch has no scorable sample."""
    weight = mask.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1))).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def clipped_surrogate(ratio: Tensor, advantage: Tensor, clip: float | Tensor) -> Tensor:
    """PPO's per-element loss max(-A r, -A clip(r, 1 - eps, 1 + eps)) (``clip`` a number or broadcastable)."""
    clip = torch.as_tensor(clip, dtype=ratio.dtype, device=ratio.device)
    return torch.maximum(-advantage * ratio, -advantage * torch.clamp(ratio, 1.0 - clip, 1.0 + clip))


def approx_kl(log_ratio: Tensor) -> Tensor:
    """The k3 estimate of KL(old || new) per element, (r - 1) - log r (>= 0, 0 at the old weights)."""
    return torch.expm1(log_ratio) - log_ratio


def ppo_metrics(log_ratio: Tensor, clip: float | Tensor, mask: Tensor) -> dict[str, float]:
    """The KL estimate (``approx_kl``, read by the target-KL stop), the clipped fraction and the mean ratio."""
    with torch.no_grad():
        ratio = log_ratio.exp()
        clip = torch.as_tensor(clip, dtype=ratio.dtype, device=ratio.device).expand_as(ratio)
        return {
            "approx_kl": float(masked_mean(approx_kl(log_ratio), mask)),
            "clip_fraction": float(masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }


def dipod_regulariser(model: torch.nn.Module, batch: RolloutBatch, rows: Tensor, valid: Tensor) -> Tensor:
    """DiPOD's on-policy ELBO regulariser (Jiang et al. 2026): the mean denoising loss of the policy branch on the
    scorable rollouts of ``rows`` (fresh t and noise); the other rows run with x0 zeroed and count for nothing."""
    request = batch.loss_request(rows, (POLICY,))
    request.x0 = torch.where(valid[:, None, None], request.x0, torch.zeros_like(request.x0))
    return masked_mean(model(request)[0], valid)
