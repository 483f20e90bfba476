"""A small stand-in for DrivingVLA (a backbone and a head) and objectives, so trainer tests run in seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from vla_drive.config import DistributedConfig, ExperimentConfig, TrainConfig

IN_DIM, OUT_DIM = 6, 3


class StandInModel(nn.Module):
    """``backbone`` + ``head``, like DrivingVLA: the trainer gives backbone parameters their own learning rate."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(nn.Linear(IN_DIM, 16), nn.Tanh(), nn.LayerNorm(16))
        self.head = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, OUT_DIM))
        torch.random.set_rng_state(generator_state)

    def predict(self, x: Tensor) -> Tensor:  # not forward: the trainer must cope with any method
        # DeepSpeed bf16 keeps bf16 weights and leaves inputs alone: the model casts them, as DrivingVLA does.
        return self.head(self.backbone(x.to(self.backbone[0].weight.dtype))).float()


def noisy_objective(model: StandInModel, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Regression towards a target jittered with fresh noise, like a diffusion loss: depends on the torch RNG."""
    x, y = batch
    noise = 0.1 * torch.randn_like(y)
    loss = (model.predict(x) - y - noise).square().mean()
    return loss, {"noise_abs": float(noise.abs().mean())}


def exact_objective(model: StandInModel, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Deterministic regression: equal global batches give equal losses whatever the number of ranks."""
    x, y = batch
    return (model.predict(x) - y).square().mean(), {}


def regression_data(num_samples: int = 48, seed: int = 1) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, IN_DIM, generator=generator)
    y = torch.sin(x[:, :OUT_DIM]) + 0.5 * x[:, OUT_DIM:]
    return TensorDataset(x, y)


def stand_in_config(output_dir: str | Path, **train: Any) -> ExperimentConfig:
    """A tiny run: 8 steps, 4 samples per micro-batch, checkpoints every 4 steps, JSONL logging only."""
    values = dict(
        output_dir=str(output_dir),
        seed=3,
        max_steps=8,
        batch_size=4,
        learning_rate=1e-2,
        backbone_learning_rate=3e-3,
        weight_decay=0.01,
        max_grad_norm=0.5,
        warmup_steps=2,
        lr_schedule="cosine",
        checkpoint_every=4,
        keep_checkpoints=2,
        eval_every=0,
        log_every=1,
        loggers=("jsonl",),
    )
    values.update(train)
    return ExperimentConfig(name="stand-in", train=TrainConfig(**values))


def with_deepspeed(config: ExperimentConfig, stage: int | None, deepspeed_config: str = "") -> ExperimentConfig:
    """The config with DeepSpeed ZeRO ``stage``; None keeps it without DeepSpeed (one process, or DDP)."""
    if stage is None:
        return config
    distributed = DistributedConfig(backend="deepspeed", zero_stage=stage, deepspeed_config=deepspeed_config)
    return replace(config, distributed=distributed)


def imitation_objective(model: Any, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Behaviour cloning of a DrivingVLA: the mean per-sample diffusion loss."""
    return model.imitation_loss(batch).mean(), {}


def tiny_vla_builder(samples: list) -> Any:
    """A function building the same tiny DrivingVLA (tiny-qwen2.5-vl, LoRA, normaliser fitted on ``samples``)."""
    from vla_drive.model.head import HeadConfig
    from vla_drive.model.normalizer import TrajectoryNormalizer
    from vla_drive.model.vla import DrivingVLA, VLAConfig

    normalizer = TrajectoryNormalizer.fit(torch.stack([torch.from_numpy(s.trajectory) for s in samples]))

    def build() -> DrivingVLA:
        return DrivingVLA.build(
            VLAConfig(trainable="lora", head=HeadConfig(hidden_size=128, depth=4, num_heads=4)),
            normalizer=normalizer,
            seed=0,
        )

    return build
