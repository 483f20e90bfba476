"""Group-relative advantages: rewards normalised within the K samples of each scene.

Three normalisations (:data:`ADVANTAGE_MODES`), shared by the algorithms that weight samples by their advantage:

* ``zscore``: (r - group mean) / group std (population std). Blind to the reward's scale and offset, so a weight
  like sigmoid(beta * A) means the same on any reward; it also magnifies a group whose rewards barely differ.
* ``centred``: r - group mean. Keeps the scale: a group of nearly equal rewards gives nearly equal weights.
* ``raw``: r itself (no baseline).

Non-finite rewards (samples that could not be scored) are left out of their group's statistics and get advantage
0. Optional per-sample ``weights`` (e.g. a lighter logged human trajectory in each group) weight the group mean and
variance; a weight of 0 takes the sample out of them, as if it were not in the group.
"""

from __future__ import annotations

import torch
from torch import Tensor

ADVANTAGE_MODES: tuple[str, ...] = ("zscore", "centred", "raw")


def normalised_advantage(
    rewards: Tensor,
    group_index: Tensor,
    mode: str = "zscore",
    weights: Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Advantages [N] of ``rewards`` [N] in the groups ``group_index`` [N], and the mask [N] of usable samples
    (finite reward); K = 1 or equal rewards give 0, never NaN."""
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"advantage: expected one of {', '.join(ADVANTAGE_MODES)}, got {mode!r}")
    valid = torch.isfinite(rewards)
    clean = torch.where(valid, rewards, torch.zeros_like(rewards))
    if mode == "raw":
        return clean, valid
    groups = int(group_index.max()) + 1 if group_index.numel() else 0
    member = valid.to(rewards.dtype) if weights is None else valid.to(rewards.dtype) * weights.to(rewards.dtype)
    count = torch.zeros(groups, dtype=rewards.dtype, device=rewards.device).index_add_(0, group_index, member)
    weighted = clean if weights is None else clean * member
    total = torch.zeros_like(count).index_add_(0, group_index, weighted)
    mean = total / count.clamp(min=1) if weights is None else total / count.clamp(min=1e-12)
    centred = torch.where(valid, rewards - mean[group_index], torch.zeros_like(rewards))
    if mode == "centred":
        return centred, valid
    squares = centred**2 if weights is None else centred**2 * member
    spread = count.clamp(min=1) if weights is None else count.clamp(min=1e-12)
    variance = torch.zeros_like(count).index_add_(0, group_index, squares) / spread
    advantage = centred / (variance.sqrt()[group_index] + eps)
    return torch.where(valid, advantage, torch.zeros_like(advantage)), valid


def group_advantage(rewards: Tensor, group_index: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-group z-scores of ``rewards`` [N] (:func:`normalised_advantage` with ``zscore``)."""
    return normalised_advantage(rewards, group_index, "zscore", eps=eps)
