"""Containers that cross the boundaries between backbone, trajectory head, algorithms and trainer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
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
class NoiseCfg:
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
