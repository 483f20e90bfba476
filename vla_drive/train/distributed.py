"""Process setup for training: one accelerate ``Accelerator`` for every launcher (none, torchrun, accelerate launch,
the deepspeed launcher, SLURM), on GPUs or on CPU ranks over gloo, with DeepSpeed ZeRO 0 / 2 / 3 from the config.

The DeepSpeed config of a run is the JSON named by ``distributed.deepspeed_config`` (``configs/deepspeed/*.json``)
or one generated from ``distributed.*`` (both through ``vla_drive.config``); the fields the experiment config owns
(micro batch, accumulation, clipping, bf16, ZeRO stage, offload) are filled from it where the JSON says ``"auto"``
and must agree with it where the JSON gives a value. The trainer builds the optimizer and the LR schedule itself, so
the JSON has no ``optimizer`` or ``scheduler`` block. ``accelerate launch`` with configs/accelerate/zero*.yaml must
agree with ``distributed.*`` too; its JSON is used when the config names none.

CPU quirks handled here (see docs, environment Q3): ``PartialState(backend="gloo")`` before ``Accelerator()`` (else
every rank believes it is rank 0 of 1), DeepSpeed's own process group initialised over gloo before ZeRO-3 builds
a model under ``zero.Init``, one intra-op thread share per local rank when ``OMP_NUM_THREADS`` is unset (the
deepspeed launcher does not set it), and ``DS_ACCELERATOR=cpu`` when there is no GPU.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vla_drive.config import ExperimentConfig
from vla_drive.config.schema import BACKENDS, MIXED_PRECISIONS
from vla_drive.train.deepspeed_config import resolve_deepspeed_config

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)
# What the launcher asked for, read before setup_accelerator changes these variables for accelerate.
_LAUNCHER_ENV = {
    key: os.environ.get(key, "") for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE")
}


class DistributedSetupError(ValueError):
    """A distributed setting that cannot work, with the file or config field named."""


# ------------------------------------------------------------------------------------------------ rank helpers


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """Number of training processes (1 without a process group)."""
    return torch.distributed.get_world_size() if _dist_ready() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return torch.distributed.get_rank() if _dist_ready() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on global rank 0: the rank that logs and writes shared files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in one process). The process group is created by :func:`setup_accelerator`; a
    multi-process launch that reaches a barrier before it would race, so that raises."""
    if _dist_ready():
        if torch.distributed.get_world_size() > 1:
            torch.distributed.barrier()
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(
            "barrier(): launched with WORLD_SIZE > 1 but there is no process group yet; call "
            "setup_accelerator(config) first (and pass the accelerator to the Trainer)"
        )


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    from accelerate.utils import set_seed

    set_seed(seed)


def rank_seed(seed: int, process_rank: int | None = None) -> int:
    """The seed of one rank's random stream (diffusion noise, dropout): ``seed + rank``. Model initialisation uses
    ``seed`` itself, so every rank starts from the same weights."""
    return seed + (rank() if process_rank is None else process_rank)


# ------------------------------------------------------------------------------------------------ accelerator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _apply_launcher(config: ExperimentConfig) -> ExperimentConfig:
    """``accelerate launch`` with a DeepSpeed YAML (configs/accelerate/zero*.yaml) must agree with
    ``distributed.*``; its JSON is used when the config names none."""
    if _LAUNCHER_ENV["ACCELERATE_USE_DEEPSPEED"].lower() != "true":
        return config
    dist = config.distributed
    launcher_file = _LAUNCHER_ENV["ACCELERATE_DEEPSPEED_CONFIG_FILE"]
    if dist.backend != "deepspeed":
        raise DistributedSetupError(
            f"launched by accelerate with DeepSpeed ({launcher_file or 'plugin settings'}) but distributed.backend is "
            f"{dist.backend!r}; add distributed.backend=deepspeed distributed.zero_stage=N, or launch with "
            "configs/accelerate/single.yaml"
        )
    if not launcher_file or launcher_file == "none":
        return config
    if not dist.deepspeed_config:
        return replace(config, distributed=replace(dist, deepspeed_config=launcher_file))
    if Path(os.path.expandvars(dist.deepspeed_config)).expanduser().resolve() != Path(launcher_file).resolve():
        raise DistributedSetupError(
            f"the accelerate config uses {launcher_file} but distributed.deepspeed_config is "
            f"{dist.deepspeed_config!r}; name one of them only"
        )
    return config


def setup_accelerator(config: ExperimentConfig) -> Accelerator:
    """An ``accelerate.Accelerator`` for this process, set up from ``config.distributed`` and ``config.train``.

    Call it before building the model: under ZeRO-3 the backbone is then built partitioned (``zero.Init``). Every
    rank is seeded with ``train.seed`` here, so models initialise identically; the trainer then reseeds each rank
    with :func:`rank_seed`.
    """
    dist = config.distributed
    if dist.backend not in BACKENDS:
        raise DistributedSetupError(f"distributed.backend must be one of {list(BACKENDS)}, got {dist.backend!r}")
    if config.train.mixed_precision not in MIXED_PRECISIONS:
        raise DistributedSetupError(
            f"train.mixed_precision must be one of {list(MIXED_PRECISIONS)}, got {config.train.mixed_precision!r}"
        )
    config = _apply_launcher(config)
    dist = config.distributed
    if dist.backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise DistributedSetupError("distributed.backend=deepspeed needs the deepspeed package (pip install deepspeed)")
    use_gpu = torch.cuda.is_available()
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skip DeepSpeed's accelerator probing and its warning
    if dist.backend == "deepspeed" and "WORLD_SIZE" not in os.environ:
        # DeepSpeed in one process without a launcher: a process group of one.
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", num_processes)))
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_processes)))

    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DeepSpeedPlugin, DistributedDataParallelKwargs

    if AcceleratorState._shared_state:
        # A second run in this process (tests, imitation then RL): the process group stays, the plugin changes.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    plugin = None
    if dist.backend == "deepspeed":
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # PartialState then initialises deepspeed.comm too
        ds_config = resolve_deepspeed_config(config, num_processes)
        plugin = DeepSpeedPlugin(hf_ds_config=ds_config, zero3_init_flag=dist.zero_stage == 3)
    else:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        _unset_zero3_init()
    # CPU ranks: gloo, chosen before Accelerator() (else every rank is rank 0 of 1); plain DDP also needs cpu=True
    # (MULTI_CPU), while DeepSpeed must not get it (accelerate would skip DeepSpeed's process group).
    cpu_ddp = num_processes > 1 and not use_gpu and plugin is None
    if num_processes > 1 and not use_gpu:
        PartialState(cpu=cpu_ddp, backend="gloo")
    accelerator = Accelerator(
        cpu=cpu_ddp,
        mixed_precision=config.train.mixed_precision,
        gradient_accumulation_steps=config.train.grad_accumulation,
        deepspeed_plugin=plugin,
        # Objectives may leave trainable parameters unused (a branch the loss does not touch).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.num_processes != num_processes or (num_processes > 1 and not accelerator.use_distributed):
        raise DistributedSetupError(
            f"accelerate sees {accelerator.num_processes} processes ({accelerator.distributed_type}) but WORLD_SIZE "
            f"is {num_processes}"
        )
    seed_everything(config.train.seed)
    return accelerator


def _unset_zero3_init() -> None:
    """Forget a ZeRO-3 config registered by an earlier run in this process (models would build partitioned)."""
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover - transformers is a training dependency
        return
    unset_hf_deepspeed_config()


def zero_stage(accelerator: Accelerator) -> int | None:
    """The ZeRO stage of a DeepSpeed accelerator; None without DeepSpeed."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(accelerator.state.deepspeed_plugin.zero_stage)
