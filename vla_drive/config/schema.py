"""The experiment config: what a run reads, builds, trains and evaluates, one dataclass per concern.

A config comes from a YAML file in ``configs/`` (``base:`` inherits another file) plus ``key.sub=value`` overrides;
:mod:`vla_drive.config.loader` reads and validates it before anything is built. Field rules (ranges, choices) are
declared beside each field as ``metadata``, so a field, its default, its meaning and its rule sit on one line:

* ``{"min": x}`` value >= x; ``{"min": x, "strict": True}`` value > x; ``{"fraction": True}`` in [0, 1);
* ``{"choices": (...)}`` one of; ``{"items": (...)}`` a list drawn from, without repeats (``"allow_empty"``);
* ``{"each_min": x}`` a non-empty list of values >= x; ``{"nonempty": True}`` a non-empty string or list;
* ``{"fixed": (value, why)}`` exactly this value.

``model`` is the :class:`~vla_drive.model.vla.VLAConfig` the model is built from and saves; ``algorithm`` is the
config class that the registry (:mod:`vla_drive.algorithms.registry`) names for ``algorithm.name``.

The path fields of :data:`PLACEHOLDER_FIELDS` may name other config values in braces, filled in once the whole
config is read: ``output_dir: runs/debug-rl-{algorithm.name}``, ``init_from: runs/debug-{algorithm.head_kind}/model``
(``${VAR}`` stays an environment variable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vla_drive.algorithms.base import AlgorithmConfig
from vla_drive.algorithms.bc import BCConfig
from vla_drive.algorithms.registry import ALGORITHMS
from vla_drive.model.vla import VLAConfig

LR_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")
MIXED_PRECISIONS: tuple[str, ...] = ("no", "bf16")
BACKENDS: tuple[str, ...] = ("none", "deepspeed")
ZERO_STAGES: tuple[int, ...] = (0, 1, 2, 3)
SCORE_VERSIONS: tuple[str, ...] = ("v1", "v2")
LOGGERS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb")
RESUME_MODES: tuple[str, ...] = ("auto", "never")  # or a checkpoint directory
ALGORITHM_NAMES: tuple[str, ...] = tuple(ALGORITHMS)
PLACEHOLDER_FIELDS: tuple[str, ...] = (
    "train.output_dir",
    "train.init_from",
    "train.init_preset",
    "train.feature_cache",
    "data.metric_cache",
    "data.val_metric_cache",
)


@dataclass
class DataConfig:
    """Which scenes to train and validate on: real NAVSIM data or the synthetic world."""

    data_root: str = ""  # OpenScene root (navsim_logs/, sensor_blobs/); "" = $OPENSCENE_DATA_ROOT
    maps_root: str = ""  # nuPlan maps root; "" = $NUPLAN_MAPS_ROOT
    train_split: str = ""  # a NAVSIM split file (<name>.yaml next to scene_filter/)
    val_split: str = ""  # the split of periodic validation and of choosing knobs ("" = none)
    max_train_scenes: int | None = field(default=None, metadata={"min": 1})  # the first N scenes (None = all)
    max_val_scenes: int | None = field(default=64, metadata={"min": 1})
    num_workers: int = field(default=0, metadata={"min": 0})  # DataLoader worker processes
    synthetic_world: str = ""  # generate the synthetic world here when its splits are missing ("" = never)
    synthetic_logs: int | None = field(default=None, metadata={"min": 1})  # None: the proving ground; N: N logs
    synthetic_seed: int = field(default=0, metadata={"min": 0})  # seed of that world
    metric_cache: str = ""  # metric caches of the training scenes for RL rewards ("" = <output_dir>/metric_cache_train)
    val_metric_cache: str = ""  # metric caches of the validation scenes ("" = <output_dir>/metric_cache_val)


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints and logging."""

    output_dir: str = field(default="runs/experiment", metadata={"nonempty": True})
    init_from: str = ""  # a model directory to start from (e.g. the imitation model before RL); "" = a new model
    init_preset: str = ""  # a preset / YAML file that trains the init_from model first when it is missing ("" = never)
    seed: int = field(default=0, metadata={"min": 0})  # model init, data order, rollouts, noise
    max_steps: int = field(default=1000, metadata={"min": 1})  # optimizer updates
    batch_size: int = field(default=8, metadata={"min": 1})  # per rank and micro-step (RL: scenes)
    grad_accumulation: int = field(default=1, metadata={"min": 1})  # micro-steps per update
    learning_rate: float = field(default=3e-4, metadata={"min": 0, "strict": True})
    backbone_learning_rate: float | None = field(default=None, metadata={"min": 0, "strict": True})  # None = lr
    weight_decay: float = field(default=0.0, metadata={"min": 0})  # AdamW, on matrices only
    max_grad_norm: float = field(default=1.0, metadata={"min": 0})  # 0 = no clipping
    warmup_steps: int = field(default=50, metadata={"min": 0})  # linear warm-up, then the schedule
    lr_schedule: str = field(default="cosine", metadata={"choices": LR_SCHEDULES})
    mixed_precision: str = field(default="no", metadata={"choices": MIXED_PRECISIONS})
    checkpoint_every: int = field(default=200, metadata={"min": 0})  # steps; 0 = only at the end
    keep_checkpoints: int = field(default=2, metadata={"min": 1})  # the newest K stay
    eval_every: int = field(default=200, metadata={"min": 0})  # validation every N steps and at the end; 0 = never
    log_every: int = field(default=10, metadata={"min": 1})
    loggers: tuple[str, ...] = field(default=("jsonl", "tensorboard"), metadata={"items": LOGGERS, "allow_empty": True})
    wandb_project: str = "vla-drive"
    resume: str = field(default="auto", metadata={"nonempty": True})  # auto | never | <checkpoint dir>
    feature_cache: str = ""  # frozen backbone: cache condition tokens here ("" = off)


@dataclass
class DistributedConfig:
    """How to shard: plain data parallel (or one process) or DeepSpeed ZeRO."""

    backend: str = field(default="none", metadata={"choices": BACKENDS})  # none | deepspeed
    zero_stage: int = field(default=2, metadata={"choices": ZERO_STAGES})
    deepspeed_config: str = ""  # a DeepSpeed JSON (configs/deepspeed/*.json); "" = generated from these fields
    offload_optimizer: bool = False  # ZeRO optimizer state on the CPU
    offload_params: bool = False  # ZeRO-3 parameters on the CPU


@dataclass
class EvalConfig:
    """Validation during training and the guidance sweep."""

    score_version: str = field(default="v1", metadata={"choices": SCORE_VERSIONS})  # v1 PDMS | v2 EPDMS
    sample_steps: int | None = field(default=None, metadata={"min": 1})  # None = the model's head.sample_steps
    omega: float | None = field(default=None, metadata={"min": 0})  # None = the model's guidance_omega
    omegas: tuple[float, ...] = field(default=(0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0), metadata={"each_min": 0})
    seed: int = field(default=0, metadata={"min": 0})  # with the scene token, the seed of every scene's noise
    temperature: float = field(default=1.0, metadata={"min": 0})  # sampler noise scale of validation (0: noise-free)
    workers: int = field(default=0, metadata={"min": 0})  # scoring processes (0 = automatic)


@dataclass
class ExperimentConfig:
    """One experiment: every section, plus a name."""

    name: str = field(default="experiment", metadata={"nonempty": True})
    data: DataConfig = field(default_factory=DataConfig)
    model: VLAConfig = field(default_factory=VLAConfig)
    algorithm: AlgorithmConfig = field(default_factory=BCConfig)  # the config class of algorithm.name
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
