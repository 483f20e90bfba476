"""Typed experiment configuration: one dataclass per concern, composed into :class:`ExperimentConfig`.

Configs come from YAML files (``configs/*.yaml``) or named presets, with command-line overrides ``key.sub=value``;
every value is validated before any model is built, and errors name the field and what was expected. The resolved
config and the package versions are saved in every run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vla_drive.model.backbone import LoraSettings
from vla_drive.model.head import HeadConfig


@dataclass
class DataConfig:
    """Which scenes to train and validate on (real NAVSIM data or the synthetic world)."""

    data_root: str = ""  # OpenScene root (navsim_logs/, sensor_blobs/); "" = $OPENSCENE_DATA_ROOT
    maps_root: str = ""  # nuPlan maps root; "" = $NUPLAN_MAPS_ROOT
    train_split: str = ""  # a NAVSIM split file (<name>.yaml next to scene_filter/)
    val_split: str = ""  # split file for periodic PDMS evaluation ("" = none)
    cameras: tuple[str, ...] = ("CAM_F0",)
    include_history: bool = False
    max_train_scenes: int | None = None
    max_val_scenes: int | None = 64
    num_workers: int = 0  # DataLoader workers
    synthetic_world: str = ""  # generate the synthetic world here when the splits do not exist yet ("" = never)
    synthetic_logs: int = 4
    synthetic_seed: int = 0


@dataclass
class ModelConfig:
    """The backbone and how it trains; the head has its own section."""

    backbone: str = "tiny-qwen2.5-vl"  # preset, hub id or directory
    trainable: str = "frozen"  # frozen | lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)
    hidden_layers: tuple[int, ...] = (-1,)
    gradient_checkpointing: bool = False
    init_from: str = ""  # a DrivingVLA directory to start from (e.g. the imitation model before RL)


@dataclass
class AlgorithmConfig:
    """The training objective: ``bc`` (imitation) or an RL algorithm (``dipole``, ...)."""

    name: str = "bc"
    # RL rollouts
    samples_per_scene: int = 8
    rollout_steps: int = 10
    rollout_omega: float = 0.0
    stochastic: bool = False
    update_epochs: int = 1
    beta: float = 1.0  # DIPOLE temperature of sigmoid(beta * G)
    score_version: str = "v1"  # v1 (PDMS) or v2 (EPDMS)
    progress_weight: float = 5.0  # PDM score weight of ego progress (5 = official)
    replay_iterations: int = 0  # reuse rollouts of this many past iterations (0 = none)


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints and logging."""

    output_dir: str = "runs/experiment"
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8  # per rank, per micro-step
    grad_accumulation: int = 1
    learning_rate: float = 3e-4
    backbone_learning_rate: float | None = None  # None = learning_rate
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 50
    lr_schedule: str = "cosine"  # constant | linear | cosine
    mixed_precision: str = "no"  # no | bf16
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 200
    log_every: int = 10
    loggers: tuple[str, ...] = ("jsonl", "tensorboard")  # + "wandb"
    wandb_project: str = "vla-drive"
    resume: str = "auto"  # auto (latest checkpoint in output_dir) | never | <checkpoint dir>
    feature_cache: str = ""  # frozen backbone: cache condition tokens here ("" = off)


@dataclass
class DistributedConfig:
    """How to shard: no DeepSpeed (one process or DDP) or DeepSpeed ZeRO stage 2 / 3."""

    backend: str = "none"  # none | deepspeed
    zero_stage: int = 2
    deepspeed_config: str = ""  # a DeepSpeed JSON (configs/deepspeed/zero2.json, ...); "" = generated from this
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass
class EvalConfig:
    """Evaluation and guidance sweeps."""

    score_version: str = "v1"
    sample_steps: int = 10
    omega: float | None = None  # None = the model's chosen omega
    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
    seed: int = 0
    workers: int = 0  # scoring processes (0 = automatic)


@dataclass
class ExperimentConfig:
    """One experiment: every section, plus a name."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=lambda: HeadConfig(hidden_size=128, depth=4, num_heads=4, cond_dim=64))
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
