"""Affine map between env-space trajectories (ego frame, metres / radians) and the head's model space.

Choice: a per-pose-and-dimension z-score, ``x_model = (x - mean[h, d]) / std[h, d]``, with a floor on ``std``.
The diffusion prior at t = 1 is N(0, I), so unit variance per coordinate makes the data match the noise scale at
every horizon step (x at 4 s spreads over tens of metres, heading at 0.5 s over hundredths of a radian). A fixed
min-max range (ReCogDrive) lets rare long trajectories squeeze the common ones into a small part of [-1, 1]; the
floor keeps near-constant coordinates (a dataset of parked scenes, heading at the first pose) from blowing up.
Denormalisation is exact (affine), and the statistics travel with the model as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from vla_drive.model.types import POSE_DIM, TRAJECTORY_POSES

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)

_FORMAT = "vla_drive.trajectory_normalizer/v1"


class TrajectoryNormalizer:
    """Per-pose-and-dimension z-score for trajectories [..., H, D] (H = 8 poses, D = 3: x, y, heading)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, min_std: float = 1e-3, count: int = 0) -> None:
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        if mean.ndim != 2 or mean.shape != std.shape:
            raise ValueError(
                f"TrajectoryNormalizer: mean and std must both be [H, D], got {mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError("TrajectoryNormalizer: mean/std contain NaN or inf")
        if min_std <= 0.0:
            raise ValueError(f"TrajectoryNormalizer: min_std must be > 0, got {min_std}")
        self.mean = mean
        self.std = np.maximum(std, min_std)
        self.min_std = float(min_std)
        self.count = int(count)
        self._torch_cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(H, D) of the trajectories this normaliser maps."""
        return (self.mean.shape[0], self.mean.shape[1])

    @classmethod
    def identity(cls, poses: int = TRAJECTORY_POSES, dims: int = POSE_DIM) -> TrajectoryNormalizer:
        """Mean 0, std 1: model space equals env space (tests, or data already normalised)."""
        return cls(np.zeros((poses, dims)), np.ones((poses, dims)))

    @classmethod
    def fit(cls, trajectories: np.ndarray | Tensor, min_std: float = 1e-3) -> TrajectoryNormalizer:
        """Statistics of training trajectories [N, H, D]; refuses an empty set and NaN / inf values."""
        data = trajectories.detach().cpu().double().numpy() if isinstance(trajectories, Tensor) else trajectories
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 3:
            raise ValueError(f"TrajectoryNormalizer.fit: expected trajectories [N, H, D], got shape {data.shape}")
        if data.shape[0] == 0:
            raise ValueError("TrajectoryNormalizer.fit: no trajectories to fit (N = 0)")
        _check_finite(data, "TrajectoryNormalizer.fit")
        return cls(data.mean(axis=0), data.std(axis=0), min_std=min_std, count=data.shape[0])

    def normalize(self, traj: ArrayT) -> ArrayT:
        """Env space [..., H, D] to model space (torch or numpy in, the same type out)."""
        mean, std = self._stats_like(traj, "normalize")
        return (traj - mean) / std

    def denormalize(self, x: ArrayT) -> ArrayT:
        """Model space [..., H, D] to env space (torch or numpy in, the same type out)."""
        mean, std = self._stats_like(x, "denormalize")
        return x * std + mean

    def _stats_like(self, x: np.ndarray | Tensor, what: str) -> tuple[Any, Any]:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(
                f"TrajectoryNormalizer.{what}: expected [..., {self.shape[0]}, {self.shape[1]}], "
                f"got shape {tuple(x.shape)}"
            )
        if isinstance(x, Tensor):
            if bool(torch.isnan(x).any()):
                raise ValueError(f"TrajectoryNormalizer.{what}: input contains NaN")
            key = (x.device, x.dtype)
            if key not in self._torch_cache:
                self._torch_cache[key] = (
                    torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device),
                )
            return self._torch_cache[key]
        _check_finite(np.asarray(x), f"TrajectoryNormalizer.{what}", allow_inf=True)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return self.mean.astype(dtype), self.std.astype(dtype)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready statistics (lists of floats), with a format tag."""
        return {
            "format": _FORMAT,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min_std": self.min_std,
            "count": self.count,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrajectoryNormalizer:
        """Inverse of :meth:`state_dict`; names the missing key or the wrong format."""
        if state.get("format") != _FORMAT:
            raise ValueError(f"TrajectoryNormalizer: expected format {_FORMAT!r}, got {state.get('format')!r}")
        missing = [k for k in ("mean", "std", "min_std") if k not in state]
        if missing:
            raise ValueError(f"TrajectoryNormalizer: state is missing {missing}")
        return cls(np.array(state["mean"]), np.array(state["std"]), state["min_std"], state.get("count", 0))

    def save(self, path: str | Path) -> None:
        """Write the statistics as JSON (e.g. ``trajectory_normalizer.json`` in a model directory)."""
        Path(path).write_text(json.dumps(self.state_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrajectoryNormalizer:
        """Read a file written by :meth:`save`."""
        try:
            state = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON trajectory normaliser ({err})") from err
        try:
            return cls.from_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def __repr__(self) -> str:
        return f"TrajectoryNormalizer(shape={self.shape}, count={self.count}, min_std={self.min_std})"


def _check_finite(data: np.ndarray, what: str, allow_inf: bool = False) -> None:
    if np.isnan(data).any():
        bad = np.argwhere(np.isnan(data))[0].tolist()
        raise ValueError(f"{what}: input contains NaN (first at index {bad})")
    if not allow_inf and np.isinf(data).any():
        bad = np.argwhere(np.isinf(data))[0].tolist()
        raise ValueError(f"{what}: input contains inf (first at index {bad})")
