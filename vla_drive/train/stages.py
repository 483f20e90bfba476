"""What every training stage shares, and the imitation stage (diffusion behaviour cloning) end to end.

``train_imitation(config)`` prepares the data (generating the synthetic world when the config asks for it and it
is missing), builds or loads the model, fits the trajectory normaliser, optionally caches frozen-backbone features,
trains with the accelerate / DeepSpeed :class:`Trainer`, evaluates PDMS on the validation split every
``train.eval_every`` steps, and writes the final model to ``<output_dir>/model`` (a ``from_pretrained`` directory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.data.loader import SceneLoader
from navsim_eval.progress import Progress
from vla_drive.algorithms.registry import make_algorithm
from vla_drive.config import ExperimentConfig, data_paths, save_run_config, validate_config, validate_paths
from vla_drive.data.dataset import SceneDataset
from vla_drive.data.feature_cache import CachedFeatureDataset, build_feature_cache, collate_cached
from vla_drive.eval.predictions import predict_scenes
from vla_drive.eval.progress import StageProgress
from vla_drive.eval.scoring import SceneScorer, summarize
from vla_drive.model.processor import Collator
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.checkpoint import CHECKPOINTS_DIR, consolidate, latest_checkpoint
from vla_drive.train.deepspeed_config import check_deepspeed_file
from vla_drive.train.distributed import barrier, is_main, rank, setup_accelerator, world_size
from vla_drive.train.trainer import Trainer

LOG = logging.getLogger(__name__)
MODEL_DIR = "model"


@dataclass
class StageData:
    """The scenes of a run: training and (optional) validation loaders, and where maps live."""

    train: SceneLoader
    val: SceneLoader | None
    maps_root: Path


def check_run(config: ExperimentConfig) -> None:
    """The config is valid (also when built or changed in code), and everything the run reads exists and agrees
    with it (data paths, model and checkpoint directories, the DeepSpeed JSON): raises
    :class:`~vla_drive.config.ConfigError` before anything is built."""
    validate_config(config, f"config {config.name!r}")
    validate_paths(config)
    check_deepspeed_file(config)


def ensure_synthetic_world(config: ExperimentConfig) -> None:
    """Generate the synthetic world the config points at, once (main rank), if its split files are missing."""
    data = config.data
    if not data.synthetic_world or Path(data_paths(config).train_split).is_file():
        return
    if is_main():
        from navsim_eval.synthetic.world import WorldConfig, generate_world

        LOG.info("generating the synthetic world in %s", data.synthetic_world)
        generate_world(
            data.synthetic_world,
            WorldConfig(num_logs=data.synthetic_logs, seed=data.synthetic_seed, cameras=_world_cameras(config)),
            show_progress=True,
        )
    barrier()


def _world_cameras(config: ExperimentConfig) -> tuple[str, ...]:
    """The cameras the world renders: the model's, or the world's default for a model that reads none (the world
    is shared with the presets that do)."""
    from navsim_eval.synthetic.world import WorldConfig

    return tuple(config.model.cameras) or WorldConfig.cameras


def load_stage_data(config: ExperimentConfig) -> StageData:
    ensure_synthetic_world(config)
    paths = data_paths(config)
    train = SceneLoader.from_split_file(paths.train_split, paths.data_root, config.data.max_train_scenes)
    val = None
    if paths.val_split:
        val = SceneLoader.from_split_file(paths.val_split, paths.data_root, config.data.max_val_scenes)
    if is_main():
        LOG.info("train: %s", train.report.summary())
        if val is not None:
            LOG.info("val: %s", val.report.summary())
    return StageData(train, val, Path(paths.maps_root))


def build_model(config: ExperimentConfig, train: SceneLoader) -> DrivingVLA:
    """Load ``train.init_from`` or build a new model; a new model's normaliser is fitted on the training split."""
    if config.train.init_from:
        return DrivingVLA.from_pretrained(config.train.init_from, trainable=config.model.trainable)
    model = DrivingVLA.build(config.model, seed=config.train.seed)
    trajectories = np.stack([train[token].future_trajectory().poses for token in train.tokens])
    model.fit_normalizer(trajectories)
    return model


def training_dataset(config: ExperimentConfig, model: DrivingVLA, scenes: SceneLoader):
    """The dataset and collate function: cached frozen-backbone features when ``train.feature_cache`` is set."""
    dataset = SceneDataset.for_model(scenes, model)
    if config.train.feature_cache and model.backbone.trainable == "frozen":
        if is_main():
            with Progress(len(dataset), "feature cache") as shown:
                build_feature_cache(
                    model.backbone,
                    dataset,
                    config.train.feature_cache,
                    batch_size=config.train.batch_size,
                    progress=shown.update,
                )
        barrier()
        folder = build_feature_cache(model.backbone, dataset, config.train.feature_cache)  # found, not rebuilt
        return CachedFeatureDataset(folder), collate_cached
    return dataset, Collator(model.backbone.processor)


def validation_hook(
    config: ExperimentConfig, model: DrivingVLA, data: StageData, output_dir: Path
) -> Callable[[Trainer, int], Mapping[str, float] | None] | None:
    """Every rank predicts its share of the validation scenes through ``Trainer.call_model`` (all ranks run the
    same forwards, as ZeRO-3 requires); rank 0 gathers the predictions and scores them."""
    if data.val is None:
        return None
    dataset = SceneDataset.for_model(data.val, model)
    scorer = None
    if is_main():
        scorer = SceneScorer.from_scenes(
            data.val,
            data.maps_root,
            Path(config.data.val_metric_cache) if config.data.val_metric_cache else output_dir / "metric_cache_val",
            config.eval.score_version,
            progress=StageProgress(),
            workers=config.eval.workers,
        )
        if scorer.skipped:
            LOG.warning("validation: %d scenes have no metric cache: %s", len(scorer.skipped), scorer.skipped)
    barrier()

    def hook(trainer: Trainer, step: int) -> dict[str, float] | None:
        predictions = predict_scenes(
            model,
            dataset,
            steps=config.eval.sample_steps,
            omega=config.eval.omega,
            seed=config.eval.seed,
            temperature=config.eval.temperature,
            batch_size=config.train.batch_size,
            call=trainer.call_model,
            shard=(rank(), world_size()),
            gather=gather_objects,
        ).first()
        if scorer is None:
            return None
        return summarize(
            scorer.score_plans({token: predictions[token] for token in data.val.tokens if token in predictions})
        )

    return hook


def gather_objects(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a one-element list without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def save_final_model(trainer: Trainer, model: DrivingVLA, output_dir: Path) -> Path:
    """``<output_dir>/model``: from the live model, or consolidated from the last checkpoint under ZeRO-3; it
    records how it was trained (shown on its model card)."""
    target = output_dir / MODEL_DIR
    record = training_record(trainer.config, trainer.state.step)
    if trainer.zero_stage == 3:
        checkpoint = latest_checkpoint(output_dir / CHECKPOINTS_DIR)
        if is_main():
            config, normalizer = model.config, model.normalizer

            def build() -> DrivingVLA:
                built = DrivingVLA.build(config, normalizer)
                built.training_record = record
                return built

            consolidate(checkpoint, build, target)
    elif is_main():
        model.training_record = record
        model.save_pretrained(target)
    barrier()
    return target


def training_record(config: ExperimentConfig, steps: int) -> dict[str, Any]:
    """What a final model records about its training: experiment, algorithm, steps, split, seed, starting model."""
    return {
        "experiment": config.name,
        "algorithm": config.algorithm.name,
        "steps": int(steps),
        "train_split": Path(config.data.train_split).stem if config.data.train_split else "",
        "init_from": config.train.init_from,
        "seed": config.train.seed,
    }


def train_imitation(config: ExperimentConfig) -> Path:
    """Run the imitation stage; returns the final model directory."""
    check_run(config)
    output_dir = Path(config.train.output_dir)
    accelerator = setup_accelerator(config)  # first: the process group the barriers below need
    data = load_stage_data(config)
    model = build_model(config, data.train)
    algorithm = make_algorithm(config.algorithm)
    dataset, collate_fn = training_dataset(config, model, data.train)
    if is_main():
        save_run_config(config, output_dir)
    trainer = Trainer(
        model,
        algorithm.loss,
        config,
        dataset=dataset,
        collate_fn=collate_fn,
        accelerator=accelerator,
        on_eval=validation_hook(config, model, data, output_dir),
    )
    trainer.fit()
    return save_final_model(trainer, model, output_dir)
