"""The algorithm interface: what the training stages ask of every objective (rollout spec, update spec, prepare,
loss, the step hooks), and the config classes every algorithm's settings derive from.

Each algorithm is a class with a ``name``, its settings as a config dataclass beside it (``config_class``), and
``uses_rollouts``: imitation (``bc``) trains on the logged trajectories of the dataset, the RL algorithms on rollouts
of the current policy scored with PDM rewards. :mod:`vla_drive.algorithms.registry` maps names to classes.

The RL algorithms keep no copy of any weights: they train LoRA branches over the frozen imitation head (``pos`` /
``neg`` for DIPOLE, ``policy`` for the others), the old policy of a PPO-style ratio lives as statistics computed in
``prepare`` (old log-probabilities, old denoising losses, old latents), and the reference policy of a BC term is the
base with the adapters off (branch None). Every model pass is a typed request run through the model's forward:
``prepare`` gets the trainer's all-ranks call (:class:`UpdateContext`), the loss the (wrapped) model itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from vla_drive.model.types import (
    ChainLogProbRequest,
    Cond,
    FlowLikelihoodRequest,
    Guidance,
    HeadLossRequest,
    NoiseConfig,
    SampleOut,
)

T = TypeVar("T")
ModelCall = Callable[[Callable[[torch.nn.Module], T]], T]
"""``call(fn)`` runs ``fn(model)`` the way every rank must (``Trainer.call_model``: inside the engine's forward
under ZeRO-3), without gradients."""

SCORE_VERSIONS: tuple[str, ...] = ("v1", "v2")


@dataclass
class AlgorithmConfig:
    """The settings every algorithm has: its registry name. Subclasses add their own fields (with rules in
    ``metadata``, as :mod:`vla_drive.config.schema` describes)."""

    name: str = "bc"
    head_kind: ClassVar[str] = "diffusion"  # the head the algorithm trains (``{algorithm.head_kind}`` in paths)

    def conflicts(self, experiment: Any) -> list[tuple[str, str]]:
        """Problems between these settings and the rest of an experiment config, as (field path, message)."""
        return []


@dataclass
class RLConfig(AlgorithmConfig):
    """What every RL algorithm shares: K rollouts per scene with N sampler steps, the PDM reward, update epochs and
    minibatches."""

    name: str = ""
    samples_per_scene: int = field(default=8, metadata={"min": 1})  # K rollouts per scene and iteration
    rollout_steps: int = field(default=10, metadata={"min": 1})  # sampler steps of every rollout
    update_epochs: int = field(default=1, metadata={"min": 1})  # passes over an iteration's rollouts
    minibatches: int = field(default=1, metadata={"min": 1})  # optimizer micro-batches per epoch
    score_version: str = field(default="v1", metadata={"choices": SCORE_VERSIONS})  # v1 PDMS | v2 EPDMS reward
    progress_weight: float = field(default=5.0, metadata={"min": 0})  # weight of ego progress (5 = official)
    # v2 rewards: EC of every sample against the policy's deterministic plan at the scene's previous frame (one
    # more sample per scene); false: scored as a scene without a previous frame (EC left out of the score)
    extended_comfort: bool = True

    def minibatches_per_epoch(self) -> int:
        """Optimizer micro-batches one update epoch is split into."""
        return self.minibatches

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
        samples = experiment.train.batch_size * self.samples_per_scene
        if self.minibatches > samples:
            problems.append(
                (
                    "algorithm.minibatches",
                    f"expected at most train.batch_size x algorithm.samples_per_scene ({samples}) rollouts per "
                    f"rank to split, got {self.minibatches}",
                )
            )
        return problems


@dataclass
class UpdateSpec:
    """How an iteration's rollouts update the policy: epochs x minibatches optimizer micro-batches, an early stop
    once the step's KL estimate (the mean over ranks, so every rank stops alike) exceeds ``target_kl``, and how many
    past iterations' rollouts join the update (only the weighted-regression family accepts off-policy samples)."""

    epochs: int = 1
    minibatches: int = 1
    target_kl: float | None = None
    replay_iterations: int = 0


@dataclass
class UpdateContext:
    """What ``prepare`` may use: the all-ranks model call, the rows of every minibatch of the first epoch (old
    statistics are computed in exactly that layout, so the ratio is exactly 1 before the first step), and the
    iteration's rollout generator (reference chains, Monte-Carlo pairs)."""

    call: ModelCall
    layout: list[Tensor] | None = None
    generator: torch.Generator | None = None

    def minibatch_rows(self, num_samples: int, device: torch.device | str) -> list[Tensor]:
        """The first epoch's minibatch rows (all rows in one when no layout was given)."""
        if self.layout is None:
            return [torch.arange(num_samples, device=device)]
        return [rows.to(device) for rows in self.layout]


@dataclass
class RolloutSpec:
    """How to sample rollouts: K per scene, sampler steps, guidance, stochasticity, whether to keep the chain."""

    samples_per_scene: int = 8
    steps: int = 10
    guidance: Guidance | None = None
    stochastic: NoiseConfig | None = None
    return_chain: bool = False
    include_logged: bool = False  # the logged human trajectory joins each scene's group as one more member
    temperature: float = 1.0  # scale of the sampler's initial and stochastic-step noise (1 = as trained)


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

    def loss_request(
        self,
        rows: Tensor,
        branches: tuple[str | None, ...],
        t: Tensor | None = None,
        eps: Tensor | None = None,
        exact: bool = False,
    ) -> HeadLossRequest:
        """Denoising losses of the samples ``rows`` under ``branches``: on the stored conditions, or, when the
        backbone trains (``inputs`` set), on conditions re-encoded with gradients inside the model's forward."""
        x0 = self.sample.x0[rows].detach()
        cond, scene = self._cond_or_scene(rows)
        return HeadLossRequest(x0, cond, branches, t=t, eps=eps, inputs=self.inputs, scene=scene, exact=exact)

    def chain_request(
        self, rows: Tensor, branch: str | None, noise: NoiseConfig, last_steps: int | None = None
    ) -> ChainLogProbRequest:
        """Per-step log-probabilities of the stored chains of ``rows`` under ``branch``."""
        cond, scene = self._cond_or_scene(rows)
        chain = self.sample.chain[rows].detach()
        return ChainLogProbRequest(chain, cond, noise, branch, last_steps, inputs=self.inputs, scene=scene)

    def flow_request(self, rows: Tensor, branch: str | None, steps: int) -> FlowLikelihoodRequest:
        """Exact log-likelihoods (coupled flow) of the stored pairs of ``rows`` under ``branch``."""
        cond, scene = self._cond_or_scene(rows)
        pair = self.sample.pair[rows].detach()
        return FlowLikelihoodRequest(pair, cond, steps, branch, inputs=self.inputs, scene=scene)

    def _cond_or_scene(self, rows: Tensor) -> tuple[Cond | None, Tensor | None]:
        if self.inputs is None:
            return self.sample_cond(rows), None
        return None, self.group_index[rows]


def require_context(name: str, context: UpdateContext | None) -> UpdateContext:
    """``context``, or a clear error for an algorithm whose ``prepare`` runs the model."""
    if context is None:
        raise ValueError(f"algorithm {name!r}: prepare runs the model and needs an UpdateContext (call, layout)")
    return context


class Algorithm:
    """One training objective for the trajectory head, built from its config."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    uses_rollouts: ClassVar[bool] = True  # False: trains on dataset batches (imitation)
    policy_branch: ClassVar[str | None] = None  # the branch predictions sample from after training (None: guidance)
    uses_ratio: ClassVar[bool] = False  # a PPO-style ratio against statistics stored in ``prepare``

    def __init__(self, config: AlgorithmConfig | None = None) -> None:
        config = config if config is not None else self.config_class(name=self.name)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self._stop = False

    @property
    def head_kind(self) -> str:
        """The head this algorithm trains (``diffusion`` or GenPO's ``coupled_flow``)."""
        return self.config.head_kind

    def rollout_spec(self) -> RolloutSpec:
        raise NotImplementedError

    def update_spec(self) -> UpdateSpec:
        """Epochs, minibatches, target KL and replay of one iteration's update (from the config)."""
        config = self.config
        return UpdateSpec(
            epochs=getattr(config, "update_epochs", 1),
            minibatches=getattr(config, "minibatches", 1),
            target_kl=getattr(config, "target_kl", None),
            replay_iterations=getattr(config, "replay_iterations", 0),
        )

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, context: UpdateContext | None = None) -> RolloutBatch:
        """Advantages, weights, old log-probs... (no gradients); model passes through ``context.call``."""
        return batch

    def loss(self, model: torch.nn.Module, batch: Any, rows: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of one micro-batch: ``rows`` of a prepared :class:`RolloutBatch` (RL), or a dataset batch
        (imitation, ``rows`` None). ``model`` may be a DeepSpeed / DDP wrapper: every pass goes through its forward."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ step hooks
    def begin_iteration(self) -> None:
        """A new iteration's update starts (clears an early stop)."""
        self._stop = False

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called by the trainer after every optimizer step with the step's metrics averaged over ranks (so every
        rank decides alike): stops the iteration's remaining updates once ``approx_kl`` exceeds the target KL."""
        target = self.update_spec().target_kl
        kl = metrics.get("approx_kl")
        if target is not None and kl is not None and kl > target:
            self._stop = True

    def stop_requested(self) -> bool:
        """True once the current iteration's remaining micro-batches are to be skipped (target KL reached)."""
        return self._stop

    def lr_scale(self) -> float:
        """Factor the trainer applies to the scheduled learning rate of the next step (GenPO: KL-adaptive)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint (e.g. an adaptive learning-rate scale)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def trainable_branches(self) -> tuple[str | None, ...]:
        """Which head branches this algorithm trains (None = the base)."""
        return (None,)

    def check_model(self, head: torch.nn.Module) -> list[str]:
        """Problems with the head the algorithm would train (its kind, dropout), as one-line messages."""
        problems = []
        if self.uses_ratio and getattr(head.config, "dropout", 0.0) > 0:
            problems.append(
                f"algorithm {self.name!r} compares the policy with statistics stored before the update; the model's "
                f"head has dropout {head.config.dropout}, which makes them differ at the same weights (expected 0)"
            )
        kind = getattr(head.config, "kind", "diffusion")
        if kind != self.head_kind:
            problems.append(
                f"algorithm {self.name!r} trains a {self.head_kind} head (model.head.kind {self.head_kind!r}); "
                f"the model's head is a {kind} head"
            )
        return problems
