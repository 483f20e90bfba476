"""What DiffGRPO and DPPO share: the denoising chain as an MDP with per-step Gaussian log-probabilities.

Rollouts come from the stochastic DDIM-eta sampler of the ``policy`` branch, chain kept. The log-probability of
step k is that of the sampler's Gaussian with its own std floor (``logprob_std``; ReCogDrive's is above the
sampler's ``sampling_std``, DPPO's equal to it), every per-dimension term clamped to [``logprob_min``,
``logprob_max``] and averaged over the 8 x 3 dimensions (as DPPO and ReCogDrive compute it); only the last
K' = ``trained_steps`` transitions are trained. Step k of the K' gets the advantage A * gamma_denoise^(K' - 1 - k):
the cleaner the step, the more weight. The optional BC term is the log-likelihood under the current policy of
chains the frozen imitation policy (the base, adapters off) samples for the same scenes, one per scene, drawn in
``prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vla_drive.algorithms.base import RLConfig, RolloutBatch, RolloutSpec, UpdateContext, require_context
from vla_drive.algorithms.policy import POLICY, PolicyAlgorithm, masked_mean
from vla_drive.model.types import ChainLogProbRequest, Guidance, NoiseConfig, SampleRequest


@dataclass
class ChainPGConfig(RLConfig):
    """The stochastic-chain settings of DiffGRPO and DPPO (each sets its own defaults)."""

    eta: float = field(default=1.0, metadata={"min": 0})  # DDIM eta of the rollouts (1 = DDPM variance)
    sampling_std: float = field(default=0.1, metadata={"min": 0, "strict": True})  # the sampler's std floor
    logprob_std: float = field(default=0.1, metadata={"min": 0, "strict": True})  # the log-probabilities' floor
    randn_clip: float | None = field(default=3.0, metadata={"min": 0, "strict": True})  # noise clip (null = off)
    logprob_min: float = -5.0  # every per-dimension log-density clamped to [logprob_min, logprob_max]
    logprob_max: float = 2.0
    trained_steps: int | None = field(default=None, metadata={"min": 1})  # K': the last K' (at most all; null = all)
    gamma_denoise: float = field(default=1.0, metadata={"min": 0})  # step k weighs gamma^(K' - 1 - k)
    bc_weight: float = field(default=0.0, metadata={"min": 0})  # BC on chains of the frozen imitation policy

    def noise(self) -> NoiseConfig:
        """The stochastic sampler and the log-probabilities these settings define."""
        return NoiseConfig(
            eta=self.eta,
            min_std=self.sampling_std,
            logprob_min_std=self.logprob_std,
            randn_clip=self.randn_clip,
            logprob_clamp=(self.logprob_min, self.logprob_max),
            reduction="mean",
        )

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        problems = super().conflicts(experiment)
        if self.eta > 1.0:
            problems.append(("algorithm.eta", f"expected a number in [0, 1] (1 = DDPM variance), got {self.eta}"))
        if not self.logprob_min < self.logprob_max:
            problems.append(
                (
                    "algorithm.logprob_min",
                    f"expected less than algorithm.logprob_max ({self.logprob_max}), got {self.logprob_min}",
                )
            )
        return problems


class ChainPolicyGradient(PolicyAlgorithm):
    """Shared rollout spec, step weights and BC term of the chain policy-gradient algorithms."""

    config: ChainPGConfig

    @property
    def trained(self) -> int:
        """K': how many of the last transitions are trained (``trained_steps``, at most every rollout step)."""
        return min(self.config.trained_steps or self.config.rollout_steps, self.config.rollout_steps)

    def rollout_spec(self) -> RolloutSpec:
        return self.policy_rollout_spec(stochastic=self.config.noise(), return_chain=True)

    def step_discount(self, device: torch.device | str) -> Tensor:
        """gamma_denoise^(K' - 1 - k) for the K' trained steps k (float32) [K']."""
        exponents = torch.arange(self.trained - 1, -1, -1, device=device, dtype=torch.float32)
        return torch.pow(torch.tensor(self.config.gamma_denoise, device=device), exponents)

    @torch.no_grad()
    def sample_reference(self, batch: RolloutBatch, context: UpdateContext | None) -> None:
        """One chain per scene from the frozen imitation policy (the base: adapters off) for the BC term."""
        if not self.config.bc_weight:
            return
        context = require_context(self.name, context)
        request = SampleRequest(
            batch.cond,
            1,
            self.config.rollout_steps,
            guidance=Guidance("none", branch=None),
            stochastic=self.config.noise(),
            return_chain=True,
            generator=context.generator,
        )
        batch.extras["reference_chain"] = context.call(lambda module: module(request)).chain.detach()

    def policy_logprobs(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> Tensor:
        """Log-probabilities [B, K'] of the rollout chains of ``rows`` under the policy."""
        return model(batch.chain_request(rows, POLICY, self.config.noise(), self.trained))

    def policy_and_reference_logprobs(
        self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """The policy's log-probabilities [B, K'] of the rollout chains of ``rows`` and [S', K'] of the reference
        chains of their scenes S' (None without a BC term), in ONE forward."""
        request = batch.chain_request(rows, POLICY, self.config.noise(), self.trained)
        reference = batch.extras.get("reference_chain")
        if reference is None or not self.config.bc_weight:
            return model(request), None
        scene_rows = batch.group_index[rows]
        scenes = torch.unique(scene_rows)
        request.chain = torch.cat([request.chain, reference[scenes]])
        if request.cond is not None:
            request.cond = batch.cond.select(torch.cat([scene_rows, scenes]))
        else:
            request.scene = torch.cat([request.scene, scenes])
        logp = model(request)
        return logp[: rows.numel()], logp[rows.numel() :]

    def reference_logprobs(self, model: torch.nn.Module, batch: RolloutBatch, rows: Tensor) -> Tensor | None:
        """The policy's log-probabilities [S', K'] of the reference chains of the scenes of ``rows`` (its own
        forward; None without a BC term)."""
        reference = batch.extras.get("reference_chain")
        if reference is None or not self.config.bc_weight:
            return None
        scenes = torch.unique(batch.group_index[rows])
        if batch.inputs is None:
            request = ChainLogProbRequest(
                reference[scenes], batch.cond.select(scenes), self.config.noise(), POLICY, self.trained
            )
        else:
            request = ChainLogProbRequest(
                reference[scenes], None, self.config.noise(), POLICY, self.trained, batch.inputs, scenes
            )
        return model(request)


def policy_gradient_term(logp: Tensor, weighted_advantage: Tensor, valid: Tensor) -> Tensor:
    """-mean over the valid rows and the trained steps of log p_k * A_k."""
    return masked_mean(-logp * weighted_advantage, valid)


def bc_term(reference_logp: Tensor | None) -> Tensor | None:
    """-mean log-probability of the reference chains (None without a BC term)."""
    return None if reference_logp is None else -reference_logp.mean()
