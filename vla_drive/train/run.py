"""``vla-drive train``: run the stage the config's algorithm asks for (imitation on the data, or RL on rollouts),
after training the model it starts from when ``train.init_preset`` says how and ``train.init_from`` is missing."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from vla_drive.algorithms.registry import algorithm_class
from vla_drive.config import ExperimentConfig, load_config

LOG = logging.getLogger(__name__)


def train(config: ExperimentConfig) -> Path:
    """Train as ``config`` says; returns the final model directory (``<train.output_dir>/model``)."""
    if config.train.init_preset and not Path(config.train.init_from).exists():
        build_initial_model(config)
    if algorithm_class(config.algorithm.name).uses_rollouts:
        from vla_drive.train.rl import train_rl

        return train_rl(config)
    from vla_drive.train.stages import train_imitation

    return train_imitation(config)


def initial_model_config(config: ExperimentConfig) -> ExperimentConfig:
    """The config that trains ``train.init_from``: ``train.init_preset``'s algorithm and training settings, writing
    to the folder above it, for this run's model (every ``model.*`` key, so a command-line override reaches the start
    the run fine-tunes; the head kind the algorithm trains, GenPO's coupled flow), data and distributed set-up."""
    initial = load_config(config.train.init_preset, [f"train.output_dir={Path(config.train.init_from).parent}"])
    model = replace(config.model, head=replace(config.model.head, kind=config.algorithm.head_kind))
    return replace(initial, model=model, data=config.data, distributed=config.distributed)


def build_initial_model(config: ExperimentConfig) -> Path:
    """Train the model ``train.init_from`` names from ``train.init_preset`` (every rank takes part)."""
    initial = initial_model_config(config)
    LOG.info("%s is missing: training it first with %s", config.train.init_from, config.train.init_preset)
    return train(initial)
