"""Group-relative advantages: rewards standardised within the K samples of each scene."""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantage(rewards: Tensor, group_index: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-group z-scores of ``rewards`` [N] (population std, so K = 1 or equal rewards give 0, never NaN).

    Non-finite rewards (samples that could not be scored) are left out of their group's statistics and get
    advantage 0; the returned mask [N] marks the usable samples.
    """
    valid = torch.isfinite(rewards)
    clean = torch.where(valid, rewards, torch.zeros_like(rewards))
    groups = int(group_index.max()) + 1 if group_index.numel() else 0
    count = torch.zeros(groups, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, group_index, valid.to(rewards.dtype)
    )
    total = torch.zeros_like(count).index_add_(0, group_index, clean)
    mean = total / count.clamp(min=1)
    centred = torch.where(valid, rewards - mean[group_index], torch.zeros_like(rewards))
    variance = torch.zeros_like(count).index_add_(0, group_index, centred**2) / count.clamp(min=1)
    advantage = centred / (variance.sqrt()[group_index] + eps)
    return torch.where(valid, advantage, torch.zeros_like(advantage)), valid
