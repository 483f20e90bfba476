"""The algorithm interface: what the training stages ask of every objective (rollout spec, prepare, loss,
after_step), and the config classes every algorithm's settings derive from.

Each algorithm is a class with a ``name``, its settings as a config dataclass beside it (``config_class``), and
``uses_rollouts``: imitation (``bc``) trains on the logged trajectories of the dataset, the RL algorithms on rollouts
of the current policy scored with PDM rewards. :mod:`vla_drive.algorithms.registry` maps names to classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from vla_drive.model.types import Cond, Guidance, HeadLossRequest, NoiseConfig, SampleOut

SCORE_VERSIONS: tuple[str, ...] = ("v1", "v2")


@dataclass
class AlgorithmConfig:
    """The settings every algorithm has: its registry name. Subclasses add their own fields (with rules in
    ``metadata``, as :mod:`vla_drive.config.schema` describes)."""

    name: str = "bc"

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        """Problems between these settings and the rest of an experiment config, as (field path, message)."""
        return []


@dataclass
class RLConfig(AlgorithmConfig):
    """What every RL algorithm shares: K rollouts per scene with N sampler steps, the PDM reward, update epochs."""

    name: str = ""
    samples_per_scene: int = field(default=8, metadata={"min": 1})  # K rollouts per scene and iteration
    rollout_steps: int = field(default=10, metadata={"min": 1})  # sampler steps of every rollout
    update_epochs: int = field(default=1, metadata={"min": 1})  # passes over an iteration's rollouts
    score_version: str = field(default="v1", metadata={"choices": SCORE_VERSIONS})  # v1 PDMS | v2 EPDMS reward
    progress_weight: float = field(default=5.0, metadata={"min": 0})  # weight of ego progress (5 = official)
    # v2 rewards: EC of every sample against the policy's deterministic plan at the scene's previous frame (one
    # more sample per scene); false: scored as a scene without a previous frame (EC left out of the score)
    extended_comfort: bool = True

    def minibatches_per_epoch(self) -> int:
        """Optimizer micro-batches one update epoch is split into."""
        return 1

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        problems = super().conflicts(experiment)
        micro = self.update_epochs * self.minibatches_per_epoch()
        accumulation = experiment.train.grad_accumulation
        if micro % accumulation:
            problems.append(
                (
                    "train.grad_accumulation",
                    f"expected a divisor of algorithm.update_epochs x "
                    f"{self.minibatches_per_epoch()} minibatches ({micro}), got {accumulation}",
                )
            )
        return problems


@dataclass
class RolloutSpec:
    """How to sample rollouts: K per scene, sampler steps, guidance, stochasticity, whether to keep the chain."""

    samples_per_scene: int = 8
    steps: int = 10
    guidance: Guidance | None = None
    stochastic: NoiseConfig | None = None
    return_chain: bool = False
    include_logged: bool = False  # the logged human trajectory joins each scene's group as one more member


@dataclass
class RolloutBatch:
    """Rollouts of S scenes x K samples (samples of a scene consecutive) with their rewards. With
    ``RolloutSpec.include_logged`` every group has K + 1 members, the last one the logged human trajectory."""

    cond: Cond  # [S, ...] one condition per scene (repeated per sample where needed)
    sample: SampleOut  # x0 / traj [S*K, 8, 3], chain and log-probs when stochastic
    reward: Tensor  # [S*K], NaN where a sample could not be scored
    group_index: Tensor  # [S*K] scene index of every sample
    tokens: list[str]  # [S]
    reward_terms: dict[str, Tensor] = field(default_factory=dict)  # sub-metrics [S*K] for logging
    logged: Tensor | None = None  # [S*K] True on the logged human trajectories (``RolloutSpec.include_logged``)
    extras: dict[str, Any] = field(default_factory=dict)  # algorithm-specific (advantages, weights, ...)
    inputs: Any = None  # the raw batch of the S scenes when the backbone trains: the loss re-encodes it

    @property
    def num_samples(self) -> int:
        return int(self.reward.shape[0])

    def sample_cond(self, rows: Tensor) -> Cond:
        """The condition of each sample in ``rows``."""
        return self.cond.select(self.group_index[rows])

    def loss_request(self, rows: Tensor, branches: tuple[str | None, ...]) -> HeadLossRequest:
        """Denoising losses of the samples ``rows`` under ``branches``: on the stored conditions, or, when the
        backbone trains (``inputs`` set), on conditions re-encoded with gradients inside the model's forward."""
        x0 = self.sample.x0[rows].detach()
        if self.inputs is None:
            return HeadLossRequest(x0, self.sample_cond(rows), branches)
        return HeadLossRequest(x0, None, branches, inputs=self.inputs, scene=self.group_index[rows])


class Algorithm:
    """One training objective for the trajectory head, built from its config."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    uses_rollouts: ClassVar[bool] = True  # False: trains on dataset batches (imitation)

    def __init__(self, config: AlgorithmConfig | None = None) -> None:
        config = config if config is not None else self.config_class(name=self.name)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def rollout_spec(self) -> RolloutSpec:
        raise NotImplementedError

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch) -> RolloutBatch:
        """Advantages, weights, old log-probs... (no gradients)."""
        return batch

    def loss(self, model: torch.nn.Module, batch: Any, rows: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of one micro-batch: ``rows`` of a prepared :class:`RolloutBatch` (RL), or a dataset batch
        (imitation, ``rows`` None). ``model`` may be a DeepSpeed / DDP wrapper: every pass goes through its forward."""
        raise NotImplementedError

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after every optimiser step (schedules, reference refresh...)."""

    def trainable_branches(self) -> tuple[str | None, ...]:
        """Which head branches this algorithm trains (None = the base)."""
        return (None,)
