"""Training checkpoints: atomic, resumable bit for bit, pruned to the last K, and consolidated into a model.

Layout of a run's ``checkpoints/`` directory::

    step_00000200/            one complete checkpoint (accelerate ``save_state``)
        trainer_state.json    step, data-order position, world size, the resolved config; written last
        model.safetensors, optimizer.bin            without DeepSpeed
        pytorch_model/ (zero_pp_rank_*, mp_rank_*)  with DeepSpeed (ZeRO shards of every rank), + zero_to_fp32.py
        random_states_<rank>.pkl                    python / numpy / torch RNG of every rank
        custom_checkpoint_<i>.pkl                   objects registered with ``accelerator.register_for_checkpointing``
    latest                    the name of the newest complete checkpoint

A checkpoint is written into ``.step_XXXXXXXX.partial`` next to its final place and renamed when every rank has
finished; ``latest`` is replaced atomically after the rename. A crash mid-write therefore leaves the previous
checkpoint and ``latest`` untouched (the partial directory is removed by the next run). All ranks must see the same
filesystem (the usual shared checkpoint directory of multi-node DeepSpeed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from navsim_eval.atomic import atomic_write_text, replace_directory

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
STATE_FILE = "trainer_state.json"
RANK_STATE_FILE = "rank_state_{rank}.pt"  # per-rank extra state (e.g. the RL replay buffer)
DEEPSPEED_TAG = "pytorch_model"  # the tag accelerate's save_state gives the DeepSpeed engine's checkpoint
WRAPPED_PREFIX = "model."  # the trainer's objective wrapper holds the model as ``.model``
_STEP_DIR = re.compile(r"^step_(\d+)$")
_PARTIAL = re.compile(r"^\.step_\d+\.(partial|old)$")

ModelT = TypeVar("ModelT", bound=nn.Module)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (incomplete, another format, weights that do not fit the model)."""


@dataclass
class TrainerState:
    """What the trainer needs besides weights, optimizer and RNG to continue exactly where it stopped."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # data-order epoch of the next micro-batch
    epoch_batches: int = 0  # global micro-batches of that epoch already consumed
    world_size: int = 1
    micro_batch_size: int = 0  # per rank

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerState:
        known = {f.name for f in fields(cls)}
        return cls(**{key: int(value) for key, value in data.items() if key in known})


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The step of a checkpoint directory name (``step_00000200`` -> 200), None for other names."""
    match = _STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints under ``directory`` (those with a trainer state), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if checkpoint_step(p) is not None and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``latest`` names under ``directory`` (a run's ``checkpoints/``, or the run directory itself);
    the newest complete one if the pointer is missing or stale; None when there is none."""
    directory = Path(directory)
    if (directory / CHECKPOINTS_DIR).is_dir():
        directory = directory / CHECKPOINTS_DIR
    pointer = directory / LATEST_FILE
    if pointer.is_file():
        candidate = directory / pointer.read_text(encoding="utf-8").strip()
        if checkpoint_step(candidate) is not None and (candidate / STATE_FILE).is_file():
            return candidate
        logger.warning("%s names %s, which is not a complete checkpoint; using the newest one", pointer, candidate)
    complete = list_checkpoints(directory)
    return complete[-1] if complete else None


def resolve_resume(resume: str, checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """``train.resume``: ``auto`` (latest under the run, or none), ``never``, or a checkpoint directory."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(checkpoints_dir)
    path = Path(resume).expanduser()
    if checkpoint_step(path) is None and path.is_dir():
        found = latest_checkpoint(path)  # a run or checkpoints directory: its latest
        if found is not None:
            return found
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"train.resume: {path} is not a complete checkpoint (no {STATE_FILE})")
    return path


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointManager:
    """Saves and loads the checkpoints of one run through an ``accelerate.Accelerator`` (DeepSpeed or not).

    ``save`` and ``load`` are collective: every rank calls them. Only the main rank renames, points ``latest`` and
    prunes; the other ranks write their own shards and RNG states.
    """

    def __init__(self, accelerator: Any, directory: str | os.PathLike[str], keep: int = 2) -> None:
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.keep = int(keep)
        if accelerator.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.iterdir():
                if _PARTIAL.match(stale.name):
                    logger.warning("removing %s, left by an interrupted checkpoint write", stale)
                    shutil.rmtree(stale, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.register_save_state_pre_hook(store_tied_weights_once)

    def save(self, state: TrainerState, metadata: Mapping[str, Any] | None = None, rank_state: Any = None) -> Path:
        """Write the checkpoint of ``state.step`` atomically and return its directory. ``rank_state`` (tensors,
        lists, dicts, strings) is this rank's own extra state, e.g. the RL replay buffer."""
        name = checkpoint_name(state.step)
        target, staging = self.directory / name, self.directory / f".{name}.partial"
        main = self.accelerator.is_main_process
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(staging))
        if rank_state is not None:
            torch.save(rank_state, staging / RANK_STATE_FILE.format(rank=self.accelerator.process_index))
        if main:
            self._write_state(staging, state, metadata or {})
        self.accelerator.wait_for_everyone()  # every rank's shards and RNG states are on disk
        if main:
            self._commit(staging, target)
            atomic_write_text(self.directory / LATEST_FILE, name + "\n")
            _fsync_dir(self.directory)
            self._prune(keep_also=target)
        self.accelerator.wait_for_everyone()
        return target

    def load(self, path: str | os.PathLike[str]) -> TrainerState:
        """Restore model, optimizer, RNG states and registered objects from a checkpoint; return its trainer state."""
        path = Path(path)
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise CheckpointError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
        meta = json.loads(state_file.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{state_file}: checkpoint format {meta.get('format_version')!r}, this trainer reads {FORMAT_VERSION}"
            )
        ranks, stage = meta["state"].get("world_size"), meta.get("zero_stage")
        if stage is not None and ranks != self.accelerator.num_processes:
            raise CheckpointError(
                f"{path}: ZeRO-{stage} shards of {ranks} ranks cannot be loaded by {self.accelerator.num_processes}; "
                "consolidate the checkpoint (vla_drive.train.consolidate) and start from the model (train.init_from)"
            )
        self.accelerator.load_state(str(path))
        rng_file = path / f"random_states_{self.accelerator.process_index}.pkl"
        if not rng_file.is_file():
            rank = self.accelerator.process_index
            logger.warning("%s: no RNG state for rank %d; the run continues, not bit for bit", path, rank)
        return TrainerState.from_dict(meta["state"])

    def load_rank_state(self, path: str | os.PathLike[str]) -> Any:
        """This rank's extra state saved with the checkpoint at ``path`` (None when it has none)."""
        file = Path(path) / RANK_STATE_FILE.format(rank=self.accelerator.process_index)
        if not file.is_file():
            return None
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: name it
            raise CheckpointError(f"{file}: unreadable rank state ({error})") from None

    # -------------------------------------------------------------------------------------------- internals

    def _write_state(self, staging: Path, state: TrainerState, metadata: Mapping[str, Any]) -> None:
        meta = {"format_version": FORMAT_VERSION, "state": asdict(state), **metadata}
        atomic_write_text(staging / STATE_FILE, json.dumps(meta, indent=2, default=_json_default))

    def _commit(self, staging: Path, target: Path) -> None:
        replace_directory(staging, target)  # target exists when the same step is written again (a rerun)
        _fsync_dir(self.directory)

    def _prune(self, keep_also: Path) -> None:
        if self.keep < 1:
            return
        complete = list_checkpoints(self.directory)
        for old in complete[: max(0, len(complete) - self.keep)]:
            if old != keep_also:
                shutil.rmtree(old, ignore_errors=True)


def store_tied_weights_once(models: list[nn.Module], weights: list[dict[str, Any]], output_dir: str) -> None:
    """A ``save_state`` pre-hook: a weight tied under several names (an HF ``lm_head`` sharing the input embedding)
    is stored under its first name only. safetensors cannot hold aliases, and accelerate would otherwise drop them
    itself with a warning at every checkpoint; loading (``safetensors.torch.load_model``) and :func:`consolidate`
    restore every name of a tied weight from the one stored."""
    for model, state in zip(models, weights, strict=False):
        first_name: dict[int, str] = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            first_name.setdefault(id(parameter), name)
            if first_name[id(parameter)] != name and name in state:
                del state[name]


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# ------------------------------------------------------------------------------------------------ consolidation


def consolidated_state_dict(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The full model state dict of a checkpoint, ZeRO shards merged (fp32 master weights of trainable
    parameters), with the trainer's wrapper prefixes removed: the keys of the model passed to the trainer."""
    directory = Path(checkpoint_dir)
    if (directory / DEEPSPEED_TAG).is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=DEEPSPEED_TAG)
    elif (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(directory / "model.safetensors"))
    elif (directory / "pytorch_model.bin").is_file():
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(
            f"{directory}: no model weights (expected {DEEPSPEED_TAG}/ ZeRO shards, model.safetensors or "
            "pytorch_model.bin)"
        )
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # DDP
        if not key.startswith(WRAPPED_PREFIX):
            raise CheckpointError(f"{directory}: weight {key!r} was not saved by the vla_drive trainer")
        out[key.removeprefix(WRAPPED_PREFIX)] = value
    return out


@contextlib.contextmanager
def _plain_construction() -> Iterator[None]:
    """Build models unpartitioned even while a ZeRO-3 run in this process has registered its config."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover
        yield
        return
    registered = hf_deepspeed._hf_deepspeed_config_weak_ref  # no public getter for the registered object
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered


def consolidate(
    checkpoint_dir: str | os.PathLike[str],
    model_builder: Callable[[], ModelT],
    output_dir: str | os.PathLike[str] | None = None,
) -> ModelT:
    """A single model with the weights of a checkpoint (ZeRO-2/3 shards merged with DeepSpeed's zero_to_fp32).

    ``model_builder`` returns a model of the trained architecture (for a DrivingVLA: ``DrivingVLA.build`` with the
    run's config and normaliser); its weights are replaced. With ``output_dir``, the model is also written there
    with ``save_pretrained`` (a ``DrivingVLA.from_pretrained`` directory). Runs in one process, no launcher needed.
    """
    state = consolidated_state_dict(checkpoint_dir)
    with _plain_construction():
        model = model_builder()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A tied weight (e.g. lm_head = embed_tokens) is stored once; it is loaded through the name that was saved.
    loaded = {id(p) for name, p in model.named_parameters(remove_duplicate=False) if name in state}
    missing = [
        name for name, p in model.named_parameters(remove_duplicate=False) if name in missing and id(p) not in loaded
    ] + [name for name, _ in model.named_buffers() if name in missing]
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint_dir}: the weights do not fit the built model: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {list(unexpected)[:8]}"
        )
    if output_dir is not None:
        model.save_pretrained(output_dir)
    return model
