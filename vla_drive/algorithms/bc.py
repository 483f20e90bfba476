"""Diffusion behaviour cloning of the logged human trajectories (the imitation stage)."""

from __future__ import annotations

from torch import Tensor, nn


def imitation_objective(model: nn.Module, batch) -> tuple[Tensor, dict[str, float]]:
    """Mean denoising loss of the logged trajectories. ``model`` may be a DeepSpeed / DDP wrapper: calling it
    runs ``DrivingVLA.forward``, which works on raw batches and on cached-feature batches alike."""
    per_sample = model(batch)
    loss = per_sample.mean()
    return loss, {"loss": float(loss.detach())}
