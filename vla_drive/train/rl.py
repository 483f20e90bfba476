"""The RL stage: rollouts from the current policy, PDM rewards, and algorithm updates through the same Trainer.

One iteration: every rank takes ``train.batch_size`` scenes (its shard of a seeded permutation), samples
``algorithm.samples_per_scene`` trajectories per scene with the algorithm's rollout spec, scores them with its own
persistent scoring pool, lets the algorithm prepare (advantages, weights, old log-probabilities: model passes
through ``Trainer.call_model``, in the first epoch's minibatch layout) and then yields the update spec's epochs x
minibatches to the Trainer; once the step's KL (the mean over ranks) passes the algorithm's target, the rest of
the iteration is skipped steps on every rank. Everything random in an iteration is seeded by (seed, iteration,
rank), and the rollouts are regenerated from the restored weights, so a run resumed from a checkpoint at an
iteration boundary continues exactly as the uninterrupted run (checkpoints are aligned to iterations; the replay
buffer and the algorithm's own state, e.g. GenPO's adaptive learning-rate scale, travel with them).

Every RL algorithm trains LoRA branches over the frozen imitation head (:func:`prepare_policy`): the branches it
trains are added when the loaded model lacks them (zero B, so the policy starts as the imitation policy), and the
model records which branch its predictions sample from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_drive.algorithms.base import Algorithm, RolloutBatch, UpdateContext, UpdateSpec
from vla_drive.algorithms.registry import make_algorithm
from vla_drive.config import ConfigError, ExperimentConfig, save_run_config
from vla_drive.eval.progress import StageProgress
from vla_drive.eval.scoring import build_metric_caches
from vla_drive.model.types import EncodeRequest
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.distributed import barrier, is_main, rank, setup_accelerator, world_size
from vla_drive.train.previous_plans import PreviousPlans
from vla_drive.train.replay import ReplayBuffer
from vla_drive.train.rollout import PdmReward, collect_rollouts
from vla_drive.train.stages import (
    build_model,
    check_run,
    load_stage_data,
    save_final_model,
    training_dataset,
    validation_hook,
)
from vla_drive.train.trainer import Trainer

LOG = logging.getLogger(__name__)


@dataclass
class RLMicroBatch:
    """A minibatch of one iteration's rollouts, with the iteration's statistics for logging; ``skip``: the
    iteration stopped early (target KL), the trainer counts the step without running it."""

    rollouts: RolloutBatch
    rows: torch.Tensor
    stats: dict[str, float]
    skip: bool = False

    @property
    def batch_size(self) -> int:
        return int(self.rows.numel())


def steps_per_iteration(config: ExperimentConfig) -> int:
    """Optimizer steps of one RL iteration: update epochs x minibatches, over the accumulation (the config check
    makes that a whole number)."""
    algorithm = config.algorithm
    return algorithm.update_epochs * algorithm.minibatches_per_epoch() // config.train.grad_accumulation


def minibatch_layout(num_samples: int, spec: UpdateSpec, generator: torch.Generator) -> list[list[torch.Tensor]]:
    """The rows of every minibatch of every epoch: a fresh permutation per epoch, split into ``spec.minibatches``
    near-equal parts (drawn up front, so ``prepare`` can compute old statistics in the first epoch's layout)."""
    return [
        list(torch.randperm(num_samples, generator=generator).tensor_split(spec.minibatches))
        for _ in range(spec.epochs)
    ]


class RLState:
    """This rank's RL state in every checkpoint: the replay buffer and the algorithm's own (e.g. an adaptive
    learning-rate scale)."""

    def __init__(self, replay: ReplayBuffer, algorithm: Algorithm) -> None:
        self.replay, self.algorithm = replay, algorithm

    def state_dict(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict(), "algorithm": self.algorithm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "replay" not in state:  # a checkpoint that kept only the replay buffer
            self.replay.load_state_dict(state)
            return
        self.replay.load_state_dict(state["replay"])
        self.algorithm.load_state_dict(state["algorithm"])


def prepare_policy(model: DrivingVLA, algorithm: Algorithm, seed: int) -> None:
    """Make ``model`` ready for ``algorithm``: its head of the right kind, the branches it trains present (added
    zero-initialised: the policy starts as the imitation policy), only those branches trainable in the head (the
    imitation base stays intact as the reference), and the branch predictions sample from recorded."""
    problems = algorithm.check_model(model.head)
    if problems:
        raise ConfigError(f"train.init_from: {problems[0]}", problems)
    branches = [branch for branch in algorithm.trainable_branches() if branch is not None]
    model.head.add_branches(branches, seed=seed)
    model.head.train_only(branches)
    model.config = replace(model.config, head=model.head.config, policy_branch=algorithm.policy_branch or "")


def build_reward_store(config: ExperimentConfig, scenes, maps_root: Path, output_dir: Path) -> Path:
    """The metric caches of the training scenes, built once by the main rank (or ``data.metric_cache``)."""
    root = Path(config.data.metric_cache) if config.data.metric_cache else output_dir / "metric_cache_train"
    if is_main():
        built = build_metric_caches(scenes, maps_root, root, progress=StageProgress(), workers=config.eval.workers)
        for token, reason in built.items():
            LOG.warning("scene %s gets no reward: %s", token, reason)
    barrier()
    return root


def rl_batches(
    config: ExperimentConfig,
    model: DrivingVLA,
    algorithm: Algorithm,
    dataset,
    collate_fn,
    reward: PdmReward,
    start_step: int,
    call=None,
    replay: ReplayBuffer | None = None,
    previous_plans: PreviousPlans | None = None,
) -> Iterator[RLMicroBatch]:
    """Rollout iterations from the one containing ``start_step`` on, as Trainer micro-batches. ``call(fn)`` runs
    ``fn(model)`` the way every rank must (``Trainer.call_model``; default: directly); ``replay`` adds the rollouts
    of recent iterations to every update; ``previous_plans`` gives v2 rewards their two-frame extended comfort."""
    call = call or (lambda fn: fn(model))
    per_iteration = steps_per_iteration(config)
    iteration = start_step // per_iteration
    spec = algorithm.rollout_spec()
    update_spec = algorithm.update_spec()
    scenes_per_rank = config.train.batch_size
    while True:
        generator = np.random.default_rng([config.train.seed, iteration])
        order = generator.permutation(len(dataset))
        total = scenes_per_rank * world_size()
        picked = order[np.arange(total) % len(order)][rank() :: world_size()][:scenes_per_rank]
        batch = collate_fn([dataset[int(i)] for i in picked])
        trains_backbone = not hasattr(batch, "cond") and model.backbone.trainable != "frozen"
        if hasattr(batch, "cond"):  # cached features
            cond = batch.cond.to(model.device)
        else:  # rollouts need no gradient; a training backbone re-encodes the scenes in the loss
            with torch.no_grad():
                cond = call(lambda module, batch=batch: module(EncodeRequest(batch)))
        torch_generator = torch.Generator(device=cond.tokens.device).manual_seed(
            int(np.random.default_rng([config.train.seed, iteration, rank()]).integers(2**62))
        )
        previous = previous_plans.plans(model, batch.tokens, spec, call) if previous_plans is not None else None
        rollouts, stats = collect_rollouts(
            model, cond.detach(), batch.tokens, spec, reward, torch_generator, call, batch.trajectory, previous
        )
        if trains_backbone:
            rollouts.inputs = batch
        update_generator = torch.Generator().manual_seed(int(generator.integers(2**62)))
        replaying = replay is not None and replay.iterations > 0
        layout = None if replaying else minibatch_layout(rollouts.num_samples, update_spec, update_generator)
        context = UpdateContext(call, layout[0] if layout is not None else None, torch_generator)
        rollouts = algorithm.prepare(rollouts, context)
        policy = torch.ones_like(rollouts.reward, dtype=torch.bool) if rollouts.logged is None else ~rollouts.logged
        valid = rollouts.reward[policy & torch.isfinite(rollouts.reward)]
        summary = {
            "rl/iteration": float(iteration),
            "rl/reward_mean": float(valid.mean()) if valid.numel() else float("nan"),
            "rl/reward_std": float(valid.std(unbiased=False)) if valid.numel() else float("nan"),
            "rl/sample_seconds": stats.sample_seconds,
            "rl/score_seconds": stats.score_seconds,
            "rl/failed_samples": float(stats.failed_samples),
            "rl/skipped_scenes": float(stats.skipped_scenes),
        }
        if rollouts.logged is not None:
            human = rollouts.reward[rollouts.logged & torch.isfinite(rollouts.reward)]
            summary["rl/logged_reward_mean"] = float(human.mean()) if human.numel() else float("nan")
        for name, values in rollouts.reward_terms.items():
            values = values[policy.cpu()]
            finite = values[torch.isfinite(values)]
            summary[f"rl/{name}"] = float(finite.mean()) if finite.numel() else float("nan")
        for name in ("advantage", "weight_pos", "weight"):
            if name in rollouts.extras:
                values = rollouts.extras[name][rollouts.extras["valid"]]
                if values.numel():
                    summary[f"rl/{name}_std" if name == "advantage" else f"rl/{name}_mean"] = float(
                        values.std(unbiased=False) if name == "advantage" else values.mean()
                    )
        update = replay.with_replay(rollouts) if replaying else rollouts
        summary["rl/replayed_samples"] = float(update.num_samples - rollouts.num_samples)
        if layout is None:
            layout = minibatch_layout(update.num_samples, update_spec, update_generator)
        algorithm.begin_iteration()
        for epoch in layout:
            for rows in epoch:
                yield RLMicroBatch(update, rows.to(cond.tokens.device), summary, skip=algorithm.stop_requested())
        iteration += 1


def train_rl(config: ExperimentConfig) -> Path:
    """Run an RL stage (``algorithm.name``); returns the final model directory."""
    check_run(config)
    output_dir = Path(config.train.output_dir)
    per_iteration = steps_per_iteration(config)
    if config.train.max_steps % per_iteration:  # end on an iteration boundary: the final checkpoint resumes exactly
        steps = per_iteration * -(-config.train.max_steps // per_iteration)
        LOG.info("train.max_steps %d rounded up to %d (whole RL iterations)", config.train.max_steps, steps)
        config = replace(config, train=replace(config.train, max_steps=steps))
    every = config.train.checkpoint_every
    if every and every % per_iteration:
        config = replace(
            config, train=replace(config.train, checkpoint_every=per_iteration * max(1, round(every / per_iteration)))
        )
        LOG.info("checkpoints aligned to RL iterations: every %d steps", config.train.checkpoint_every)
    accelerator = setup_accelerator(config)  # first: the process group the barriers below need
    data = load_stage_data(config)
    model = build_model(config, data.train)
    algorithm = make_algorithm(config.algorithm)
    prepare_policy(model, algorithm, config.train.seed)  # the imitation policy stays intact as the shared base
    dataset, collate_fn = training_dataset(config, model, data.train)
    store = build_reward_store(config, data.train, data.maps_root, output_dir)
    workers = config.eval.workers or 1
    reward = PdmReward(store, config.algorithm.score_version, config.algorithm.progress_weight, workers=workers)
    if is_main():
        save_run_config(config, output_dir)
    replay = ReplayBuffer(algorithm.update_spec().replay_iterations)
    previous_plans = None
    if config.algorithm.score_version == "v2" and config.algorithm.extended_comfort:
        previous_plans = PreviousPlans(data.train, dataset, collate_fn, config.train.seed)

    def source(trainer: Trainer) -> Iterator[RLMicroBatch]:
        return rl_batches(
            config,
            model,
            algorithm,
            dataset,
            collate_fn,
            reward,
            trainer.state.step,
            trainer.call_model,
            replay,
            previous_plans,
        )

    def objective(module: torch.nn.Module, micro: RLMicroBatch):
        started = time.perf_counter()
        loss, metrics = algorithm.loss(module, micro.rollouts, micro.rows)
        return loss, {**metrics, **micro.stats, "rl/loss_seconds": time.perf_counter() - started}

    trainer = Trainer(
        model,
        objective,
        config,
        batch_source=source,
        accelerator=accelerator,
        on_eval=validation_hook(config, model, data, output_dir),
        rank_state=RLState(replay, algorithm),
        step_hooks=algorithm,
    )
    try:
        trainer.fit()
    finally:
        reward.close()
    return save_final_model(trainer, model, output_dir)
