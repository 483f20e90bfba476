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
