"""Training stages: imitation (diffusion behaviour cloning), run end to end from an ExperimentConfig.

``train_imitation(config)`` prepares the data (generating the synthetic world when the config asks for it and it
is missing), builds or loads the model, fits the trajectory normaliser, optionally caches frozen-backbone features,
trains with the accelerate / DeepSpeed :class:`Trainer`, evaluates PDMS on the validation split every
``train.eval_every`` steps, and writes the final model to ``<output_dir>/model`` (a ``from_pretrained`` directory).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from vla_drive.algorithms.bc import imitation_objective
from vla_drive.config import ExperimentConfig, data_paths, save_run_config, validate_paths
from vla_drive.data.dataset import Collator, SceneDataset
from vla_drive.data.feature_cache import CachedFeatureDataset, build_feature_cache, collate_cached
from vla_drive.eval.scoring import SceneScorer, summarize
from vla_drive.model.vla import DrivingVLA, VLAConfig
from vla_drive.train.checkpoint import CHECKPOINTS_DIR, consolidate, latest_checkpoint
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
            WorldConfig(num_logs=data.synthetic_logs, seed=data.synthetic_seed, cameras=tuple(data.cameras)),
        )
    barrier()


def load_stage_data(config: ExperimentConfig) -> StageData:
    ensure_synthetic_world(config)
    validate_paths(config)
    paths = data_paths(config)

    def loader(split_file: Path, limit: int | None) -> SceneLoader:
        split = load_split(split_file.parent, split_file.stem)
        scene_filter = split.scene_filter
        if limit is not None:
            scene_filter = replace(scene_filter, max_scenes=limit)
        return SceneLoader(paths.data_root, split.data_split, scene_filter)

    train = loader(paths.train_split, config.data.max_train_scenes)
    val = loader(paths.val_split, config.data.max_val_scenes) if paths.val_split else None
    if is_main():
        LOG.info("train: %s", train.report.summary())
        if val is not None:
            LOG.info("val: %s", val.report.summary())
    return StageData(train, val, Path(paths.maps_root))


def vla_config(config: ExperimentConfig) -> VLAConfig:
    """The model part of an experiment config."""
    return VLAConfig(
        backbone=config.model.backbone,
        trainable=config.model.trainable,
        lora=config.model.lora,
        hidden_layers=tuple(config.model.hidden_layers),
        head=config.head,
        cameras=tuple(config.data.cameras),
        include_history=config.data.include_history,
        sample_steps=config.eval.sample_steps,
    )


def build_model(config: ExperimentConfig, train: SceneLoader) -> DrivingVLA:
    """Load ``model.init_from`` or build a new model; a new model's normaliser is fitted on the training split."""
    if config.model.init_from:
        return DrivingVLA.from_pretrained(config.model.init_from, trainable=config.model.trainable)
    model = DrivingVLA.build(vla_config(config), seed=config.train.seed)
    trajectories = np.stack([train[token].future_trajectory().poses for token in train.tokens])
    model.fit_normalizer(trajectories)
    return model


def training_dataset(config: ExperimentConfig, model: DrivingVLA, scenes: SceneLoader):
    """The dataset and collate function: cached frozen-backbone features when ``train.feature_cache`` is set."""
    dataset = SceneDataset.for_backbone(
        scenes, model.backbone, cameras=config.data.cameras, include_history=config.data.include_history
    )
    if config.train.feature_cache and model.backbone.trainable == "frozen":
        if is_main():
            build_feature_cache(model.backbone, dataset, config.train.feature_cache, batch_size=config.train.batch_size)
        barrier()
        folder = build_feature_cache(model.backbone, dataset, config.train.feature_cache)  # found, not rebuilt
        return CachedFeatureDataset(folder), collate_cached
    return dataset, Collator(model.backbone.processor)


def validation_hook(config: ExperimentConfig, model: DrivingVLA, data: StageData, output_dir: Path, trainer_ref: dict):
    """Every rank predicts its even share of the validation scenes through ``Trainer.call_model`` (all ranks run
    the same forwards, as ZeRO-3 requires); rank 0 gathers the predictions and scores them."""
    if data.val is None:
        return None
    dataset = SceneDataset.for_backbone(
        data.val, model.backbone, cameras=config.data.cameras, include_history=config.data.include_history
    )
    scorer = None
    if is_main():
        scenes = [data.val[token] for token in data.val.tokens]
        scorer = SceneScorer.from_scenes(
            scenes, data.maps_root, config.eval.score_version, cache_dir=output_dir / "metric_cache_val"
        )
        if scorer.skipped:
            LOG.warning("validation: %d scenes have no metric cache: %s", len(scorer.skipped), scorer.skipped)
    barrier()

    def hook(step: int) -> dict[str, float] | None:
        trainer = trainer_ref["trainer"]
        count, ranks, me = len(dataset), world_size(), rank()
        share = -(-count // ranks)
        indices = [min(i, count - 1) for i in range(me * share, (me + 1) * share)]  # padded: equal work per rank
        predictions: dict[str, np.ndarray] = {}
        batch_size = config.train.batch_size
        for start in range(0, share, batch_size):
            samples = [dataset[i] for i in indices[start : start + batch_size]]
            seed = config.eval.seed + indices[start]

            def predict(module, samples=samples, seed=seed):
                return module.predict(samples, 1, config.eval.sample_steps, config.eval.omega, seed=seed)

            trajectories = trainer.call_model(predict)
            predictions.update({s.token: t for s, t in zip(samples, trajectories, strict=True)})
        gathered = gather_objects(predictions)
        if scorer is None:
            return None
        merged = {token: trajectory for part in gathered for token, trajectory in part.items()}
        tokens = [token for token in data.val.tokens if token in merged and token in scorer]
        return summarize(scorer.score(tokens, np.stack([merged[token] for token in tokens])))

    return hook


def gather_objects(value):
    """``value`` of every rank, in rank order (a one-element list without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def save_final_model(trainer: Trainer, model: DrivingVLA, output_dir: Path) -> Path:
    """``<output_dir>/model``: from the live model, or consolidated from the last checkpoint under ZeRO-3."""
    target = output_dir / MODEL_DIR
    if trainer.zero_stage == 3:
        checkpoint = latest_checkpoint(output_dir / CHECKPOINTS_DIR)
        if is_main():
            config, normalizer = model.config, model.normalizer

            def builder() -> DrivingVLA:
                rebuilt = DrivingVLA.build(config, normalizer)
                return rebuilt

            consolidate(checkpoint, builder, target)
    elif is_main():
        model.save_pretrained(target)
    barrier()
    return target


def train_imitation(config: ExperimentConfig) -> Path:
    """Run the imitation stage; returns the final model directory."""
    output_dir = Path(config.train.output_dir)
    accelerator = setup_accelerator(config)  # first: the process group the barriers below need
    data = load_stage_data(config)
    model = build_model(config, data.train)
    dataset, collate_fn = training_dataset(config, model, data.train)
    if is_main():
        save_run_config(config, output_dir)
    trainer_ref: dict = {}
    trainer = Trainer(
        model, imitation_objective, config, dataset=dataset, collate_fn=collate_fn, accelerator=accelerator,
        on_eval=validation_hook(config, model, data, output_dir, trainer_ref),
    )  # fmt: skip
    trainer_ref["trainer"] = trainer
    trainer.fit()
    return save_final_model(trainer, model, output_dir)
