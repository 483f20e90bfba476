"""Training: the accelerate + DeepSpeed trainer, checkpoints, logging and process setup."""

from vla_drive.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    TrainerState,
    consolidate,
    consolidated_state_dict,
    latest_checkpoint,
)
from vla_drive.train.deepspeed_config import check_deepspeed_file, deepspeed_dict, resolve_deepspeed_config
from vla_drive.train.distributed import (
    DistributedSetupError,
    barrier,
    is_main,
    rank_seed,
    seed_everything,
    setup_accelerator,
    world_size,
)
from vla_drive.train.logging import RunLogger
from vla_drive.train.trainer import Objective, ShardedBatchSampler, Trainer, TrainerError, lr_factor

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "DistributedSetupError",
    "Objective",
    "RunLogger",
    "ShardedBatchSampler",
    "Trainer",
    "TrainerError",
    "TrainerState",
    "barrier",
    "check_deepspeed_file",
    "consolidate",
    "consolidated_state_dict",
    "deepspeed_dict",
    "is_main",
    "latest_checkpoint",
    "lr_factor",
    "rank_seed",
    "resolve_deepspeed_config",
    "seed_everything",
    "setup_accelerator",
    "world_size",
]
