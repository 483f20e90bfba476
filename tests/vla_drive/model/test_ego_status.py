"""The ego-status-only model (``model.backbone: none``): config refusals, training without any image, RL, saving
and loading, the navsim agent's sensor config."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.config import ConfigError, get_preset, load_config, with_synthetic_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.model.encoder import EgoStatusEncoder
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig, VLAModelError

# x0: the target that fits fastest, so that 60 steps show the loss falling (the default v falls slower)
HEAD = HeadConfig(hidden_size=32, depth=1, num_heads=2, sample_steps=4, lora_rank=4, lora_alpha=4.0, target="x0")


def test_the_preset_reads_no_cameras_and_caches_no_features():
    config = load_config("demo-ego-status")
    assert config.model.backbone == "none" and config.model.cameras == ()
    assert config.train.feature_cache == "" and config.train.max_steps == get_preset("demo-imitation").train.max_steps


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.trainable=lora", "model.trainable"),
        ("model.trainable=full", "model.trainable"),
        ("model.cameras=[CAM_L0]", "model.cameras"),
        ("model.history_frames=1", "model.history_frames"),
        ("model.include_history=true", "model.include_history"),
        ("model.max_pixels=[4096]", "model.max_pixels"),
        ("train.feature_cache=features", "train.feature_cache"),
    ],
)
def test_backbone_settings_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config("demo-ego-status", [override])
    assert f"{field}: " in str(error.value) and "'none'" in str(error.value), str(error.value)


def test_a_vlm_backbone_still_needs_a_camera():
    with pytest.raises(VLAModelError, match=r"model\.cameras: backbone 'tiny-qwen2\.5-vl' reads images"):
        VLAConfig(cameras=())


@pytest.fixture(scope="module")
def imageless_world(tmp_path_factory):
    """A one-log world whose camera files are deleted: an ego-status model must never need them."""
    world = generate_world(tmp_path_factory.mktemp("ego") / "world", WorldConfig(num_logs=1, frames_per_log=16))
    shutil.rmtree(world.data_root / "sensor_blobs")
    split = load_split(world.splits_dir, "synthetic_all")
    return SceneLoader(world.data_root, split.data_split, split.scene_filter)


def test_imitation_without_images_lowers_the_loss_and_save_load_reproduces_predictions(imageless_world, tmp_path):
    model = DrivingVLA.build(VLAConfig(backbone="none", head=HEAD), seed=0)
    assert isinstance(model.backbone, EgoStatusEncoder) and not list(model.backbone.parameters())
    dataset = SceneDataset.for_model(imageless_world, model)
    samples = [dataset[i] for i in range(len(dataset))]
    assert all(s.images == [] and s.prompt == "" for s in samples)
    model.fit_normalizer(np.stack([s.trajectory for s in samples]))
    batch = model.collate(samples)
    assert batch.inputs is None

    def loss() -> float:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)  # the same diffusion times and noise for every measurement
            return float(torch.stack([model.imitation_loss(batch) for _ in range(8)]).mean())

    before = loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(60):
        optimizer.zero_grad()
        model.imitation_loss(batch).mean().backward()
        optimizer.step()
    after = loss()
    assert after < 0.7 * before, f"imitation loss {before:.4f} -> {after:.4f}"

    saved = model.save_pretrained(tmp_path / "model")
    assert not (saved / "backbone").exists(), "an ego-status model has no backbone folder"
    card = (saved / "README.md").read_text()
    assert "ego-status-only" in card and "none (no images are read)" in card
    loaded = DrivingVLA.from_pretrained(saved)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(samples, 3, seed=4), model.predict(samples, 3, seed=4))
    with pytest.raises(ValueError, match=r"model\.trainable: .* has no backbone"):
        DrivingVLA.from_pretrained(saved, trainable="lora")
    (saved / "head.safetensors").write_bytes(b"broken")
    with pytest.raises(VLAModelError, match=r"head\.safetensors: checksum mismatch"):
        DrivingVLA.from_pretrained(saved)


def test_a_saved_model_names_no_camera_for_the_navsim_agent_sensor_config(tmp_path):
    """The agent's get_sensor_config asks for exactly the saved config's cameras (none here)."""
    from vla_drive.model.vla import read_model_config

    model_dir = DrivingVLA.build(VLAConfig(backbone="none", head=HEAD)).save_pretrained(tmp_path / "model")
    assert read_model_config(model_dir).cameras == ()


def test_agent_input_samples_need_no_images():
    from vla_drive.data.dataset import sample_from_parts

    sample = sample_from_parts("t", [], (5.0, 0.0), (0.1, 0.0), (0, 1, 0, 0), None, (), ego_status=True)
    assert sample.images == [] and sample.prompt == "" and sample.ego_status[0] == 5.0


@pytest.mark.slow
def test_train_then_dipole_on_a_world_without_camera_files(tmp_path):
    """`vla-drive train` code paths: imitation (no world images at all), then DIPOLE from that model, evaluated."""
    from vla_drive.train.rl import train_rl
    from vla_drive.train.stages import train_imitation

    world = generate_world(tmp_path / "world", WorldConfig(num_logs=2))
    shutil.rmtree(world.data_root / "sensor_blobs")
    config = with_synthetic_world(load_config("debug", ["model.backbone=none"]), tmp_path / "world")
    config.train.output_dir = str(tmp_path / "imitation")
    model_dir = train_imitation(config)
    assert DrivingVLA.from_pretrained(model_dir).training_record["algorithm"] == "bc"
    overrides = ["model.backbone=none", "algorithm.samples_per_scene=3", "algorithm.rollout_steps=2"]
    rl = load_config("debug-rl", [*overrides, f"train.init_from={model_dir}"])
    rl = with_synthetic_world(rl, tmp_path / "world")
    rl.train.output_dir, rl.train.max_steps, rl.train.eval_every = str(tmp_path / "dipole"), 2, 2
    final = DrivingVLA.from_pretrained(train_rl(rl))
    assert final.training_record["algorithm"] == "dipole"
    assert final.head.adapter_state_dict("pos"), "DIPOLE trained the pos branch"
