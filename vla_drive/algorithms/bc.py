"""Diffusion behaviour cloning of the logged human trajectories: the imitation stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from vla_drive.algorithms.base import Algorithm, AlgorithmConfig


@dataclass
class BCConfig(AlgorithmConfig):
    """Imitation has no settings of its own: the data, model and optimisation sections say everything."""

    name: str = "bc"


class BehaviorCloning(Algorithm):
    """The mean denoising loss of the logged trajectories of a dataset batch (raw or cached features)."""

    name: ClassVar[str] = "bc"
    config_class: ClassVar[type[AlgorithmConfig]] = BCConfig
    uses_rollouts: ClassVar[bool] = False

    def loss(self, model: nn.Module, batch: Any, rows: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """``model`` may be a DeepSpeed / DDP wrapper: calling it runs ``DrivingVLA.forward``, which works on raw
        batches and on cached-feature batches alike."""
        loss = model(batch).mean()
        return loss, {"loss": float(loss.detach())}
