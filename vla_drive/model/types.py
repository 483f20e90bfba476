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
    branch: str | None = None  # for kind="none": which branch to use (None = base)


@dataclass
class NoiseConfig:
    """Stochastic sampling: DDPM-like steps with a floor on the per-step standard deviation (for log-probs)."""

    eta: float = 1.0  # DDIM eta; 1.0 = DDPM variance
    min_std: float = 0.01  # std floor so that per-step Gaussian log-probs stay finite


@dataclass
class SampleOut:
    """Samples of the head: env-space trajectories plus what RL algorithms need."""

    traj: Tensor  # [B*n, 8, 3] denormalised, ego frame
    x0: Tensor  # [B*n, 8, 3] normalised model-space sample
    chain: Tensor | None = None  # [B*n, N+1, 8, 3] model-space states from noise (index 0) to data (index N)
    step_logp: Tensor | None = None  # [B*n, N] per-step Gaussian log-probabilities (stochastic sampling)


@dataclass
class HeadLossRequest:
    """Denoising losses of model-space samples under named branches, computed inside the model's forward so that
    DeepSpeed / DDP wrappers see the pass (``model(request)`` returns [len(branches), B])."""

    x0: Tensor
    cond: Cond | None  # None: encode ``inputs`` (with gradients into a training backbone)
    branches: tuple[str | None, ...]
    t: Tensor | None = None
    eps: Tensor | None = None
    inputs: Any = None  # a raw batch of scenes to encode instead of ``cond``
    scene: Tensor | None = None  # [B] the row of ``inputs`` each sample belongs to


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
