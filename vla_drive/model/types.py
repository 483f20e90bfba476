"""Containers that cross the boundaries between data, backbone, trajectory head, algorithms and trainer.

The model consumes these and defines them here, so that it imports nothing from the packages that use it
(``data`` builds samples and batches, ``algorithms`` builds loss requests, ``train`` moves them between devices).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

TRAJECTORY_POSES = 8  # 4 s at 2 Hz
POSE_DIM = 3  # x, y, heading in the ego rear-axle frame
EGO_STATUS_DIM = 8  # vx, vy, ax, ay, driving command one-hot (left, forward, right, unknown)


@dataclass
class Cond:
    """What the trajectory head conditions on, already encoded: backbone tokens and the ego status."""

    tokens: Tensor  # [B, M, C] projected or raw backbone hidden states
    mask: Tensor  # [B, M] True where a token is real (not padding)
    ego: Tensor  # [B, E] ego status

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def repeat(self, n: int) -> Cond:
        """Each condition repeated n times, consecutively: [c0]*n + [c1]*n + ... (K samples per scene)."""
        return Cond(
            self.tokens.repeat_interleave(n, dim=0),
            self.mask.repeat_interleave(n, dim=0),
            self.ego.repeat_interleave(n, dim=0),
        )

    def select(self, rows: Tensor) -> Cond:
        """The conditions of ``rows`` (indices may repeat: one row per sample)."""
        return Cond(self.tokens[rows], self.mask[rows], self.ego[rows])

    def to(self, device: torch.device | str) -> Cond:
        return Cond(self.tokens.to(device), self.mask.to(device), self.ego.to(device))

    def detach(self) -> Cond:
        return replace(self, tokens=self.tokens.detach(), ego=self.ego.detach())


@dataclass
class Guidance:
    """How branch predictions combine at every denoising step.

    ``dichotomous`` (DIPOLE): pred = (1 + omega) * pred_pos - omega * pred_neg; ``none``: the base (or ``branch``).
    """

    kind: Literal["none", "dichotomous"] = "none"
    omega: float = 0.0
    branch: str | None = field(default=None, kw_only=True)  # for kind="none": which branch (None = base)


@dataclass
class NoiseConfig:
    """Stochastic sampling (DDIM-eta Gaussian steps) and the per-step Gaussian log-probabilities it defines.

    The sampling settings and the log-probability settings are separate (DPPO and ReCogDrive floor the std of the
    log-probabilities higher than that of the sampler, clamp every per-dimension log-density and average it over
    the dimensions); the defaults are one floor for both, no clip, no clamp, the sum over dimensions."""

    eta: float = 1.0  # DDIM eta; 1.0 = DDPM variance
    min_std: float = 0.01  # std floor of the sampler (so that per-step Gaussian log-probs stay finite)
    logprob_min_std: float | None = None  # std floor of the log-probabilities (None = min_std)
    randn_clip: float | None = None  # the sampler's standard-normal noise clipped to [-c, c] (None = off)
    logprob_clamp: tuple[float, float] | None = None  # every per-dimension log-density clamped (None = off)
    reduction: Literal["sum", "mean"] = "sum"  # over the poses and dims of one step

    @property
    def logprob_std_floor(self) -> float:
        return self.min_std if self.logprob_min_std is None else self.logprob_min_std


@dataclass
class SampleOut:
    """Samples of the head: env-space trajectories plus what RL algorithms need."""

    traj: Tensor  # [B*n, 8, 3] denormalised, ego frame
    x0: Tensor  # [B*n, 8, 3] normalised model-space sample (the coupled flow: (x + y) / 2)
    chain: Tensor | None = None  # [B*n, N+1, 8, 3] model-space states from noise (index 0) to data (index N)
    step_logp: Tensor | None = None  # [B*n, N] per-step Gaussian log-probabilities (stochastic sampling)
    pair: Tensor | None = None  # [B*n, 2, 8, 3] the coupled flow's doubled action (x, y)
    latent: Tensor | None = None  # [B*n, 2, 8, 3] the latent z the coupled flow mapped to ``pair``


# ------------------------------------------------------------------------------------------- model requests
# Everything an objective needs from the model is one of these, run by ``model(request)`` so that DeepSpeed / DDP
# wrappers see the pass (ZeRO-3 gathers partitioned weights only inside the forward). Requests that take ``cond``
# None encode ``inputs`` instead (a training backbone, with gradients), one condition row per ``scene`` entry.


@dataclass
class EncodeRequest:
    """The condition of a raw batch of scenes (``model(request)`` returns a :class:`Cond`)."""

    batch: Any  # a collated Batch


@dataclass
class SampleRequest:
    """``num_samples`` trajectories per condition row (``model(request)`` returns a :class:`SampleOut`), under the
    caller's grad mode (GenPO's compression loss samples with gradients)."""

    cond: Cond
    num_samples: int = 1
    steps: int | None = None  # None = head.sample_steps
    guidance: Guidance | None = None  # None = the model's own (its policy branch, or DIPOLE guidance)
    stochastic: NoiseConfig | None = None
    return_chain: bool = False
    generator: Any = None  # a torch.Generator, or one per condition row
    temperature: float = 1.0  # scale of the initial and the stochastic-step noise (1 = as trained)


@dataclass
class HeadLossRequest:
    """Denoising losses of model-space samples under named branches (``model(request)`` returns
    [len(branches), B], or [len(branches), B, M] for M given (t, eps) pairs per sample: t [B, M], eps [B, M, ...]).
    ``exact`` evaluates outside autocast, so that the same request gives the same values in ``prepare`` and in
    the loss (FPO's ratio of losses is exactly 1 at the old weights)."""

    x0: Tensor
    cond: Cond | None  # None: encode ``inputs`` (with gradients into a training backbone)
    branches: tuple[str | None, ...]
    t: Tensor | None = None
    eps: Tensor | None = None
    inputs: Any = None  # a raw batch of scenes to encode instead of ``cond``
    scene: Tensor | None = None  # [B] the row of ``inputs`` each sample belongs to
    exact: bool = False


@dataclass
class ChainLogProbRequest:
    """Per-step Gaussian log-probabilities (float32, outside autocast) of stored sampler chains [B, N+1, ...] under
    one branch: ``model(request)`` returns [B, K'] for the last K' transitions (``last_steps``; None = all N)."""

    chain: Tensor
    cond: Cond | None
    noise: NoiseConfig
    branch: str | None = None  # None = the base (the frozen imitation policy)
    last_steps: int | None = None
    inputs: Any = None
    scene: Tensor | None = None


@dataclass
class FlowLikelihoodRequest:
    """Exact log-likelihoods under the coupled flow (GenPO) of doubled actions [B, 2, ...]: ``model(request)``
    returns (z [B, 2, ...], log-likelihood [B] float32), z = F^-1(pair), computed outside autocast."""

    pair: Tensor
    cond: Cond | None
    steps: int
    branch: str | None = None
    inputs: Any = None
    scene: Tensor | None = None


ModelRequest = EncodeRequest | SampleRequest | HeadLossRequest | ChainLogProbRequest | FlowLikelihoodRequest
MODEL_REQUESTS = (EncodeRequest, SampleRequest, HeadLossRequest, ChainLogProbRequest, FlowLikelihoodRequest)


# ---------------------------------------------------------------------------------------------------- scenes in


class DrivingSampleError(ValueError):
    """A scene that cannot become a model sample (non-finite ego status, missing future, bad command)."""


@dataclass
class DrivingSample:
    """One scene ready for the model: images (one per camera), prompt, ego status [8], gt trajectory [8, 3]."""

    token: str
    images: list[Image.Image]
    command: np.ndarray  # [4] float32 one-hot: left, forward, right, unknown
    ego_status: np.ndarray  # [8] float32: vx, vy, ax, ay (body frame) + command one-hot
    trajectory: np.ndarray  # [8, 3] float32 future poses in the current ego rear-axle frame
    prompt: str


@dataclass
class Batch:
    """A collated batch: processor outputs (padded), ego status [B, 8], gt trajectories [B, 8, 3], scene tokens."""

    inputs: Any  # transformers BatchFeature: input_ids, attention_mask, pixel_values, ...
    ego: Tensor
    trajectory: Tensor
    tokens: list[str]
    prompts: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.tokens)

    def to(self, device: torch.device | str) -> Batch:
        inputs = self.inputs.to(device) if hasattr(self.inputs, "to") else self.inputs
        return Batch(inputs, self.ego.to(device), self.trajectory.to(device), self.tokens, self.prompts)


@dataclass
class CachedBatch:
    """A batch of cached conditions (frozen backbone): what the head needs, without the backbone."""

    cond: Cond
    trajectory: Tensor  # [B, 8, 3]
    tokens: list[str]

    @property
    def batch_size(self) -> int:
        return len(self.tokens)

    def to(self, device: torch.device | str) -> CachedBatch:
        return CachedBatch(self.cond.to(device), self.trajectory.to(device), self.tokens)
