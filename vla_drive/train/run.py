"""``vla-drive train``: run the stage the config's algorithm asks for (imitation on the data, or RL on rollouts)."""

from __future__ import annotations

from pathlib import Path

from vla_drive.algorithms.registry import algorithm_class
from vla_drive.config import ExperimentConfig


def train(config: ExperimentConfig) -> Path:
    """Train as ``config`` says; returns the final model directory (``<train.output_dir>/model``)."""
    if algorithm_class(config.algorithm.name).uses_rollouts:
        from vla_drive.train.rl import train_rl

        return train_rl(config)
    from vla_drive.train.stages import train_imitation

    return train_imitation(config)
