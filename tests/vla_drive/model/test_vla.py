"""DrivingVLA end to end on a tiny generated world: losses, prediction, guidance, save / load, LoRA merge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import MODEL_CONFIG_FILE, DrivingVLA, VLAConfig, VLAModelError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    world = generate_world(tmp_path_factory.mktemp("world"), WorldConfig(num_logs=1, frames_per_log=17))
    split = load_split(world.splits_dir, "synthetic_all")
    return SceneLoader(world.data_root, split.data_split, split.scene_filter)


def _model_and_samples(loader, trainable: str = "frozen"):
    model = DrivingVLA.build(
        VLAConfig(trainable=trainable, head=HeadConfig(hidden_size=128, depth=4, num_heads=4)), seed=0
    )
    dataset = SceneDataset.for_backbone(loader, model.backbone)
    samples = [dataset[i] for i in range(len(dataset))]
    model.fit_normalizer(np.stack([s.trajectory for s in samples]))
    return model, samples


def test_imitation_loss_trains_the_intended_parameters(loader):
    model, samples = _model_and_samples(loader, "frozen")
    loss = model.imitation_loss(model.collate(samples))
    assert loss.shape == (len(samples),) and torch.isfinite(loss).all()
    loss.mean().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad and not any(name.startswith("backbone.") for name in with_grad)
    assert not any(".lora_" in name for name in with_grad if name.startswith("head."))  # the base branch only


def test_predict_shape_determinism_and_zero_adapter_guidance(loader):
    model, samples = _model_and_samples(loader)
    first = model.predict(samples[:2], num_samples=3, steps=4, seed=7)
    assert first.shape == (2, 3, 8, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, model.predict(samples[:2], num_samples=3, steps=4, seed=7))
    # Zero-initialised pos / neg adapters: guidance changes nothing, whatever omega.
    for omega in (0.0, 1.0, 5.0):
        np.testing.assert_allclose(model.predict(samples[:2], 3, 4, omega=omega, seed=7), first, atol=1e-5)


@pytest.mark.parametrize("trainable", ["frozen", "lora"])
def test_save_and_load_reproduce_predictions(loader, tmp_path, trainable):
    model, samples = _model_and_samples(loader, trainable)
    with torch.no_grad():  # make the adapters and the LoRA matter
        for name, parameter in model.named_parameters():
            if ".lora_" in name or "lora_B" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.config.guidance_omega = 1.5
    before = model.predict(samples[:2], num_samples=2, steps=3, seed=1)
    model.save_pretrained(tmp_path / "model")
    loaded = DrivingVLA.from_pretrained(tmp_path / "model")
    assert loaded.config.guidance_omega == 1.5 and loaded.config.trainable == trainable
    np.testing.assert_allclose(loaded.predict(samples[:2], num_samples=2, steps=3, seed=1), before, atol=1e-6)


def test_merge_lora_keeps_the_outputs(loader):
    model, samples = _model_and_samples(loader, "lora")
    with torch.no_grad():
        for name, parameter in model.backbone.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    before = model.predict(samples[:2], num_samples=2, steps=3, seed=2)
    model.merge_lora()
    assert not any("lora_" in name for name, _ in model.backbone.named_parameters())
    np.testing.assert_allclose(model.predict(samples[:2], num_samples=2, steps=3, seed=2), before, atol=1e-4)


def test_bad_inputs_are_named(loader, tmp_path):
    model, samples = _model_and_samples(loader)
    batch = model.collate(samples[:2])
    batch.ego[1, 0] = float("nan")
    with pytest.raises(VLAModelError, match=samples[1].token):
        model.encode(batch)
    with pytest.raises(VLAModelError, match=r"no vla_config\.json"):
        DrivingVLA.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / MODEL_CONFIG_FILE).read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / MODEL_CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(VLAModelError, match="format version 99"):
        DrivingVLA.from_pretrained(tmp_path / "m")
    with pytest.raises(VLAModelError, match="unknown model config keys"):
        VLAConfig.from_dict({"backbone": "tiny-qwen2.5-vl", "wings": 2})


def _flip_a_bit(path, offset_from_end: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncate head.safetensors", "head.safetensors"),
        ("flip a bit in head.safetensors", "head.safetensors"),
        ("flip a bit in the backbone weights", "backbone/model.safetensors"),
        ("truncate the backbone weights", "backbone/model.safetensors"),
        ("remove normalizer.json", "normalizer.json"),
        ("vla_config.json is not JSON", "vla_config.json"),
        ("vla_config.json holds a list", "vla_config.json"),
        ("a config field of the wrong type", "vla_config.json"),
    ],
)
def test_damaged_model_files_are_named_in_one_line(loader, tmp_path, capsys, damage, named):
    from vla_drive.cli import main

    model, _ = _model_and_samples(loader)
    directory = model.save_pretrained(tmp_path / "model")
    config_file = directory / MODEL_CONFIG_FILE
    if damage == "truncate head.safetensors":
        path = directory / "head.safetensors"
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "flip a bit in head.safetensors":
        _flip_a_bit(directory / "head.safetensors")
    elif damage == "flip a bit in the backbone weights":
        _flip_a_bit(directory / "backbone" / "model.safetensors")
    elif damage == "truncate the backbone weights":
        path = directory / "backbone" / "model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "remove normalizer.json":
        (directory / "normalizer.json").unlink()
    elif damage == "vla_config.json is not JSON":
        config_file.write_text(config_file.read_text()[:40])
    elif damage == "vla_config.json holds a list":
        config_file.write_text("[1, 2]")
    else:
        meta = json.loads(config_file.read_text())
        meta["config"]["cameras"] = 5
        config_file.write_text(json.dumps(meta))
    with pytest.raises(VLAModelError, match=named.replace(".", r"\.")):
        DrivingVLA.from_pretrained(directory)
    capsys.readouterr()  # what saving printed
    assert main(["export", "--model", str(directory), "--out", str(tmp_path / "exported")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err, err


def test_checksums_cover_the_weights_not_the_metadata(loader, tmp_path):
    from vla_drive.model.vla import store_guidance_omega

    model, samples = _model_and_samples(loader)
    directory = model.save_pretrained(tmp_path / "model")
    checksums = json.loads((directory / MODEL_CONFIG_FILE).read_text())["checksums"]
    assert {"head.safetensors", "normalizer.json", "backbone/model.safetensors"} <= set(checksums)
    assert all(len(value) == 64 for value in checksums.values())  # sha256 hex
    store_guidance_omega(directory, 2.5)  # the sweep rewrites the config: the weights stay verified
    loaded = DrivingVLA.from_pretrained(directory)
    assert loaded.config.guidance_omega == 2.5
    np.testing.assert_array_equal(loaded.predict(samples[:1], 1, 2, seed=0), model.predict(samples[:1], 1, 2, seed=0))


def test_a_format_2_directory_without_checksums_still_loads(loader, tmp_path):
    model, samples = _model_and_samples(loader)
    directory = model.save_pretrained(tmp_path / "model")
    meta = json.loads((directory / MODEL_CONFIG_FILE).read_text())
    del meta["checksums"]
    meta["format_version"] = 2
    (directory / MODEL_CONFIG_FILE).write_text(json.dumps(meta))
    loaded = DrivingVLA.from_pretrained(directory)
    np.testing.assert_array_equal(loaded.predict(samples[:1], 1, 2, seed=0), model.predict(samples[:1], 1, 2, seed=0))


def test_backbone_settings_and_input_switches_survive_save_and_load(loader, tmp_path):
    config = VLAConfig(
        dtype="bfloat16",
        attn_implementation="eager",
        max_pixels=(28 * 28 * 3,),
        history_frames=1,
        ego_status=False,
        head=HeadConfig(hidden_size=64, depth=2, num_heads=4),
    )
    model = DrivingVLA.build(config, seed=0)
    assert model.backbone.dtype == torch.bfloat16
    assert model.backbone.config.text_config._attn_implementation == "eager"
    samples = [SceneDataset.for_model(loader, model)[i] for i in range(2)]
    assert len(samples[0].images) == 2 and samples[0].images[0].size == (56, 28)
    batch = model.collate(samples)
    assert not batch.ego[:, :4].any() and batch.ego[:, 4:].any(), "no velocity / acceleration, the command stays"
    before = model.predict(samples, 1, 2, seed=0)
    model.save_pretrained(tmp_path / "model")
    loaded = DrivingVLA.from_pretrained(tmp_path / "model")
    assert loaded.config == model.config and loaded.backbone.dtype == torch.bfloat16
    np.testing.assert_array_equal(loaded.predict(samples, 1, 2, seed=0), before)
    on_cpu = DrivingVLA.from_pretrained(tmp_path / "model", dtype="float32", attn_implementation="sdpa")
    assert on_cpu.backbone.dtype == torch.float32 and on_cpu.config.attn_implementation == "sdpa"
