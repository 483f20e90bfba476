"""A generic training loop over accelerate: any objective, one process or many, with or without DeepSpeed ZeRO.

The trainer owns what every stage shares: the AdamW optimizer (a separate learning rate for backbone parameters),
the warm-up + decay schedule, gradient accumulation and clipping, mixed precision, the data order sharded over
ranks, periodic evaluation, checkpoints and logging. The stage supplies the model and an objective::

    accelerator = setup_accelerator(config)             # first: under ZeRO-3 the model is built partitioned
    model = DrivingVLA.build(vla_config)
    trainer = Trainer(model, objective, config, dataset=dataset, collate_fn=Collator(model.backbone.processor),
                      accelerator=accelerator, on_eval=evaluate)
    history = trainer.fit()

``objective(model, batch) -> (loss, metrics)`` gets the plain model and one micro-batch; it runs inside the forward
of a wrapper module, so DDP synchronises its gradients and ZeRO-3 gathers whatever parameters it touches, whichever
methods of the model it calls. RL stages pass ``batch_source(trainer)`` (a factory of ready micro-batches, e.g.
built from rollouts of ``trainer.model`` from ``trainer.state.step`` on) instead of a dataset, or call
:meth:`Trainer.train_step` from their own loop. Model code outside the objective (rollouts, evaluation) goes
through :meth:`Trainer.call_model`, which is what makes it work on ZeRO-3 partitioned parameters; the trainer hands
itself to ``batch_source`` and ``on_eval`` for that.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from vla_drive.config import ExperimentConfig, TrainConfig
from vla_drive.config.schema import LR_SCHEDULES
from vla_drive.train.checkpoint import (
    CHECKPOINTS_DIR,
    CheckpointManager,
    TrainerState,
    latest_checkpoint,
    resolve_resume,
)
from vla_drive.train.deepspeed_config import fill_model_dependent
from vla_drive.train.distributed import rank_seed, seed_everything, setup_accelerator, zero_stage
from vla_drive.train.logging import RunLogger

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

# objective(model, micro_batch) -> (scalar loss, metrics); every rank must return the same metric names.
Objective = Callable[[nn.Module, Any], tuple[Tensor, Mapping[str, float]]]
# on_eval(trainer, step) -> metrics to log (or None); called on every rank.
EvalHook = Callable[["Trainer", int], Mapping[str, float] | None]
# batch_source(trainer) -> micro-batches; called once training starts (after resuming), on every rank.
BatchSource = Callable[["Trainer"], Iterable[Any]]
T = TypeVar("T")


class StepHooks(Protocol):
    """What an objective may steer between optimizer steps (an RL algorithm: GenPO's KL-adaptive rate, target-KL
    early stops). Both are called on every rank; ``after_step`` gets the step's metrics averaged over ranks, so
    every rank decides alike."""

    def lr_scale(self) -> float:
        """Factor on the scheduled learning rate of the next step."""
        ...

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after every optimizer step (and every skipped one)."""
        ...


class TrainerError(ValueError):
    """A training setup that cannot run, with the config field or argument named."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.fit`: the step reached and the checkpoint a rerun resumes from."""

    def __init__(self, step: int, max_steps: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step, self.max_steps, self.checkpoint = step, max_steps, checkpoint


# ------------------------------------------------------------------------------------------------ optimisation


def lr_factor(step: int, train: TrainConfig) -> float:
    """Multiplier of the base learning rates for optimizer update ``step`` (0-based): a linear warm-up to 1 over
    ``warmup_steps`` updates (the first update already moves), then constant, or linear / cosine decay to 0 at
    ``max_steps``."""
    if train.lr_schedule not in LR_SCHEDULES:
        raise TrainerError(f"train.lr_schedule must be one of {list(LR_SCHEDULES)}, got {train.lr_schedule!r}")
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - train.warmup_steps) / max(1, train.max_steps - train.warmup_steps))
    if train.lr_schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: backbone (``train.backbone_learning_rate``) or not
    (``train.learning_rate``), each with weight decay on matrices only (not on biases, norms, embeddings of one
    dimension). Each group keeps its base rate as ``base_lr`` for the schedule."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
    backbone_lr = train.learning_rate if train.backbone_learning_rate is None else train.backbone_learning_rate
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        shape = getattr(param, "ds_shape", param.shape)  # ZeRO-3 partitions hold an empty local tensor
        buckets.setdefault((id(param) in backbone_ids, len(shape) >= 2), []).append(param)
    groups = []
    for is_backbone in (False, True):
        for decay in (True, False):
            params = buckets.get((is_backbone, decay))
            if params:
                lr = backbone_lr if is_backbone else train.learning_rate
                groups.append(
                    {
                        "params": params,
                        "lr": lr,
                        "base_lr": lr,
                        "weight_decay": train.weight_decay if decay else 0.0,
                        "group": f"{'backbone' if is_backbone else 'model'}{'' if decay else '/no_decay'}",
                    }
                )
    if not groups:
        raise TrainerError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return groups


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's rate to ``base_lr * factor``; return the first group's rate (for logging)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return float(optimizer.param_groups[0]["lr"])


# ------------------------------------------------------------------------------------------------ data order


class ShardedBatchSampler:
    """Per-rank micro-batches of indices, for ever, from one global order that every rank computes alike.

    Epoch ``e`` permutes all indices with ``seed`` and ``e``; global micro-batch ``j`` is the slice
    ``[j*G, (j+1)*G)`` of that permutation (``G = batch_size * world_size``, the incomplete tail dropped) and rank
    ``r`` takes its ``batch_size`` consecutive indices of it. Any world size with the same global batch sees the same
    global batches. Iteration starts at ``(epoch, batch)`` to resume mid-epoch without touching skipped samples.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        start_epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        self.global_batch = batch_size * world_size
        if num_samples < self.global_batch:
            raise TrainerError(
                f"the dataset has {num_samples} samples, fewer than one global micro-batch of {self.global_batch} "
                f"(train.batch_size={batch_size} x {world_size} ranks)"
            )
        self.num_samples, self.batch_size, self.rank = num_samples, batch_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.batches_per_epoch = num_samples // self.global_batch
        self.start_epoch, self.start_batch = start_epoch, start_batch

    def order(self, epoch: int) -> np.ndarray:
        """The global sample order of ``epoch``."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, batch = self.start_epoch, self.start_batch
        while True:
            order = self.order(epoch)
            for j in range(batch, self.batches_per_epoch):
                start = j * self.global_batch + self.rank * self.batch_size
                yield order[start : start + self.batch_size].tolist()
            epoch, batch = epoch + 1, 0


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` on ``device``: tensors, objects with ``.to`` (Batch, BatchFeature), mappings and sequences of them."""
    if isinstance(batch, Tensor) or (hasattr(batch, "to") and not isinstance(batch, nn.Module)):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({key: move_to_device(value, device) for key, value in batch.items()})
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


# ------------------------------------------------------------------------------------------------ the trainer


class ObjectiveModule(nn.Module):
    """The model and its objective as one module whose ``forward`` is the objective: DDP and the DeepSpeed engine
    wrap this, so gradient synchronisation and ZeRO-3 parameter gathering see every parameter the objective uses."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model  # checkpoint.WRAPPED_PREFIX depends on this name
        self.objective = objective

    def forward(self, batch: Any, call: tuple[Callable[..., Any], tuple, dict] | None = None) -> Any:
        if call is not None:  # Trainer.call_model: any model code as a forward
            fn, args, kwargs = call
            return (fn(self.model, *args, **kwargs),)  # a tuple: DeepSpeed's hooks walk the output
        return self.objective(self.model, batch)


def _hidden_size(model: nn.Module) -> int | None:
    """The language model's hidden size of the first HF config found in the model (for DeepSpeed bucket sizes)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "get_text_config"):
            return int(config.get_text_config().hidden_size)
    return None


class Trainer:
    """Trains ``model`` on ``objective`` as ``config.train`` and ``config.distributed`` say (see the module doc).

    accelerate keeps its state per process: a new Trainer (through :func:`setup_accelerator`) supersedes the
    previous one, which should not train any more.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        config: ExperimentConfig,
        *,
        dataset: Dataset[Any] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        batch_source: BatchSource | None = None,
        accelerator: Accelerator | None = None,
        on_eval: EvalHook | None = None,
        rank_state: Any = None,
        step_hooks: StepHooks | None = None,
    ) -> None:
        """``rank_state``: an object with ``state_dict()`` / ``load_state_dict()`` whose state is this rank's own
        and travels with every checkpoint (e.g. the RL replay buffer). ``step_hooks``: a learning-rate factor applied
        on top of the schedule at every step, and a callback after every step (see :class:`StepHooks`)."""
        if (dataset is None) == (batch_source is None):
            raise TrainerError("Trainer: pass either dataset (+ collate_fn) or batch_source, not both / neither")
        train = config.train
        for name in ("max_steps", "batch_size", "grad_accumulation"):
            if getattr(train, name) < 1:
                raise TrainerError(f"train.{name} must be >= 1, got {getattr(train, name)}")
        lr_factor(0, train)  # validates the schedule name
        if isinstance(objective, nn.Module):
            raise TrainerError("the objective must be a plain callable; put trainable modules in the model")
        self.config = config
        self.dataset, self.collate_fn, self.batch_source = dataset, collate_fn, batch_source
        self.on_eval = on_eval
        self.rank_state = rank_state
        self.step_hooks = step_hooks
        self.accelerator = accelerator if accelerator is not None else setup_accelerator(config)
        self.model = model
        self.output_dir = Path(train.output_dir)
        optimizer = torch.optim.AdamW(parameter_groups(model, train), lr=train.learning_rate)
        self.zero_stage = zero_stage(self.accelerator)
        if self.zero_stage is not None:
            fill_model_dependent(self.accelerator.state.deepspeed_plugin.deepspeed_config, _hidden_size(model))
        self.engine, self.optimizer = self.accelerator.prepare(ObjectiveModule(model, objective), optimizer)
        self._trainable = [p for p in self.engine.parameters() if p.requires_grad]
        seed_everything(rank_seed(train.seed, self.accelerator.process_index))  # noise / dropout differ per rank
        self.state = TrainerState(world_size=self.accelerator.num_processes, micro_batch_size=train.batch_size)
        self.checkpoints = CheckpointManager(
            self.accelerator, self.output_dir / CHECKPOINTS_DIR, train.keep_checkpoints
        )
        self.resumed_from: Path | None = None
        self._resume_checked = False
        self._saved_step: int | None = None

    # -------------------------------------------------------------------------------------------- properties

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    # -------------------------------------------------------------------------------------------- the loop

    def fit(self) -> list[dict[str, float]]:
        """Train to ``train.max_steps`` (resuming first as ``train.resume`` says); return this call's per-step
        metrics (loss, lr, grad_norm, samples_per_s and the objective's own, averaged over ranks).

        ``on_eval`` runs every ``train.eval_every`` steps and after the last one (0: never); a checkpoint is written
        every ``train.checkpoint_every`` steps (0: only at the end) and at the end. A ``batch_source`` that runs out
        ends training early.
        """
        train = self.config.train
        if not self._resume_checked:
            self.resume()
        run_log = RunLogger(
            self.output_dir,
            loggers=train.loggers,
            total_steps=train.max_steps,
            initial_step=self.state.step,
            log_every=train.log_every,
            enabled=self.is_main,
            run_name=self.config.name,
            config=asdict(self.config),
            wandb_project=train.wandb_project,
        )
        history: list[dict[str, float]] = []
        batches = self._micro_batches()
        self.engine.train()
        try:
            while self.state.step < train.max_steps:
                micro_batches = list(_take(batches, train.grad_accumulation))
                if len(micro_batches) < train.grad_accumulation:
                    run_log.message(f"batch source exhausted at step {self.state.step}; stopping")
                    break
                metrics = self.train_step(micro_batches)
                history.append(metrics)
                step = self.state.step
                run_log.log_step(step, metrics)
                if self.on_eval is not None and train.eval_every > 0:
                    if step % train.eval_every == 0 or step == train.max_steps:
                        self.evaluate(run_log)
                if train.checkpoint_every > 0 and step % train.checkpoint_every == 0:
                    self.save_checkpoint()
            run_log.flush(self.state.step)
            if self._saved_step != self.state.step:
                self.save_checkpoint()
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                self.state.step, train.max_steps, latest_checkpoint(self.checkpoints.directory)
            ) from None
        finally:
            run_log.close()
        return history

    def train_step(self, micro_batches: Sequence[Any]) -> dict[str, float]:
        """One optimizer update from ``train.grad_accumulation`` micro-batches of this rank; returns the metrics
        averaged over micro-batches and ranks.

        Micro-batches whose ``skip`` attribute is true (an RL iteration stopped early at its target KL: every rank
        skips alike) make a skipped step: no forward, no update, the step counted (iterations keep their length,
        so checkpoints stay on iteration boundaries)."""
        if len(micro_batches) != self.config.train.grad_accumulation:
            raise TrainerError(
                f"train_step got {len(micro_batches)} micro-batches; train.grad_accumulation is "
                f"{self.config.train.grad_accumulation}"
            )
        skipped = [bool(getattr(batch, "skip", False)) for batch in micro_batches]
        if any(skipped):
            if not all(skipped):
                raise TrainerError("train_step: a step mixes skipped and live micro-batches")
            self.state.step += 1
            out = {"skipped_step": 1.0}
            if self.step_hooks is not None:
                self.step_hooks.after_step(out)
            return out
        start = time.perf_counter()
        scale = self.step_hooks.lr_scale() if self.step_hooks is not None else 1.0
        lr = set_learning_rates(self.optimizer, lr_factor(self.state.step, self.config.train) * scale)
        totals: dict[str, Tensor] = {}
        samples = 0
        for index, batch in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            self.accelerator.sync_gradients = last  # DeepSpeed steps inside backward at the boundary
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.engine)
            with sync:
                with self.accelerator.autocast():
                    loss, metrics = self.engine(move_to_device(batch, self.device))
                if self.zero_stage is None:
                    (loss / len(micro_batches)).backward()  # mean over micro-batches, like DeepSpeed's scaling
                else:
                    self.accelerator.backward(loss)  # the engine divides by its gradient_accumulation_steps
            for key, value in {"loss": loss, **metrics}.items():
                value = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, dtype=torch.float64)
                totals[key] = totals.get(key, 0.0) + value.cpu()
            samples += _batch_size(batch)
        max_norm = self.config.train.max_grad_norm
        grad_norm = self.accelerator.clip_grad_norm_(self._trainable, max_norm if max_norm > 0 else math.inf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        keys = sorted(totals)
        means = torch.stack([totals[key] for key in keys]).to(self.device) / len(micro_batches)
        means = self.accelerator.reduce(means, reduction="mean") if self.accelerator.num_processes > 1 else means
        out = {key: float(value) for key, value in zip(keys, means.tolist(), strict=True)}
        out["lr"] = lr
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        out["samples_per_s"] = samples * self.accelerator.num_processes / max(time.perf_counter() - start, 1e-9)
        if self.step_hooks is not None:
            self.step_hooks.after_step(out)
        return out

    def call_model(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(model, *args, **kwargs)`` without gradients, for sampling (RL rollouts) and evaluation.

        Under ZeRO-3 the parameters are partitioned and gathered only inside the engine's forward, so ``fn`` runs as
        one: every rank must make the same calls (each forward gathers from all ranks). Otherwise ``fn`` is called
        directly and any rank may call it alone.
        """
        with torch.no_grad():
            if self.zero_stage == 3:
                return self.engine(None, call=(fn, args, kwargs))[0]
            return fn(self.model, *args, **kwargs)

    def evaluate(self, run_log: RunLogger | None = None) -> Mapping[str, float] | None:
        """Call ``on_eval(step)`` on every rank, log what it returns, train on. Under ZeRO-3 the hook must run the
        same forwards on every rank, through :meth:`call_model`."""
        if self.on_eval is None:
            return None
        metrics = self.on_eval(self, self.state.step)
        self.engine.train()
        if metrics and run_log is not None:
            run_log.log(self.state.step, metrics, prefix="eval/")
        return metrics

    # -------------------------------------------------------------------------------------------- data

    def _micro_batches(self) -> Iterator[Any]:
        if self.batch_source is not None:
            yield from self.batch_source(self)
            return
        train = self.config.train
        sampler = ShardedBatchSampler(
            len(self.dataset),
            train.batch_size,
            self.accelerator.process_index,
            self.accelerator.num_processes,
            seed=train.seed,
            start_epoch=self.state.epoch,
            start_batch=self.state.epoch_batches,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
            # Worker seeds from a private generator: building the loader never draws from the global RNG.
            generator=torch.Generator().manual_seed(rank_seed(train.seed, self.accelerator.process_index)),
        )
        for batch in loader:
            # The position counts a micro-batch as consumed once handed out, so a checkpoint taken after the step
            # that used it resumes with the next one.
            self.state.epoch_batches += 1
            if self.state.epoch_batches == sampler.batches_per_epoch:
                self.state.epoch, self.state.epoch_batches = self.state.epoch + 1, 0
            yield batch

    # -------------------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (every rank calls this)."""
        metadata = {"config": asdict(self.config), "zero_stage": self.zero_stage}
        extra = self.rank_state.state_dict() if self.rank_state is not None else None
        path = self.checkpoints.save(self.state, metadata, rank_state=extra)
        self._saved_step = self.state.step
        return path

    def resume(self, checkpoint: str | Path | None = None) -> Path | None:
        """Load ``checkpoint`` (default: as ``train.resume`` says); return the checkpoint loaded, if any."""
        self._resume_checked = True
        path = (
            Path(checkpoint)
            if checkpoint is not None
            else resolve_resume(self.config.train.resume, self.checkpoints.directory)
        )
        if path is None:
            return None
        state = self.checkpoints.load(path)
        if self.rank_state is not None:
            extra = self.checkpoints.load_rank_state(path)
            if extra is None:
                logger.warning("%s has no rank state for this rank; it starts empty", path)
            else:
                self.rank_state.load_state_dict(extra)
        if (state.world_size, state.micro_batch_size) != (self.state.world_size, self.state.micro_batch_size):
            logger.warning(
                "%s was written by %d ranks x %d samples; this run has %d x %d: the data order differs from there on",
                path,
                state.world_size,
                state.micro_batch_size,
                self.state.world_size,
                self.state.micro_batch_size,
            )
        state.world_size, state.micro_batch_size = self.state.world_size, self.state.micro_batch_size
        self.state = state
        self.resumed_from = path
        self._saved_step = state.step
        if self.is_main:
            logger.info("resumed from %s at step %d", path, state.step)
        return path


def _take(iterator: Iterator[Any], count: int) -> Iterator[Any]:
    for _ in range(count):
        try:
            yield next(iterator)
        except StopIteration:
            return


def _batch_size(batch: Any) -> int:
    """Samples in a micro-batch: ``batch_size`` / ``len`` of the batch or of its first tensor (0 when unknown)."""
    size = getattr(batch, "batch_size", None)
    if isinstance(size, int):
        return size
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping) and batch:
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    return 0
