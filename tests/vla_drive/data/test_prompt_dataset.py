"""Prompts and the driving dataset over a small generated synthetic world (real OpenScene-format files)."""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.data.dataset import SceneDataset, ego_status_vector
from vla_drive.data.prompt import build_prompt, command_name, driving_instruction
from vla_drive.model.backbone import VLMBackbone
from vla_drive.model.presets import build_processor
from vla_drive.model.processor import Collator, collate
from vla_drive.model.types import DrivingSampleError

CAMERAS = ("CAM_F0", "CAM_L0")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loader(tmp_path_factory) -> SceneLoader:
    """One 8 s log with front and front-left cameras: 3 scenes."""
    world = generate_world(
        tmp_path_factory.mktemp("world"), WorldConfig(num_logs=1, frames_per_log=16, cameras=CAMERAS)
    )
    split = load_split(world.splits_dir, f"{world.data_split}_all")
    return SceneLoader(world.data_root, split.data_split, split.scene_filter)


@pytest.fixture(scope="module")
def backbone() -> VLMBackbone:
    return VLMBackbone.from_preset("tiny-qwen2.5-vl")


def test_prompt_goes_through_the_chat_template(loader, backbone) -> None:
    scene = loader[0]
    ego = scene.current_frame.ego
    text, images = build_prompt(scene, backbone.processor, CAMERAS, image_size=56)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert f"Driving command: {command_name(scene.current_frame.driving_command)}." in text
    assert f"Ego speed {math.hypot(ego.vx, ego.vy):.1f} m/s" in text and f"ax {ego.ax:.2f}" in text
    assert [image.size for image in images] == [(56, 56)] * 2 and all(image.mode == "RGB" for image in images)
    assert "Past ego poses" not in text


def test_prompt_formats_of_other_families(loader) -> None:
    scene = loader[0]
    smol, _ = build_prompt(scene, build_processor("tiny-smolvlm"))  # template rendered through the tokenizer
    assert smol.startswith("<|im_start|>User:front camera: <image>Driving command:")
    assert smol.endswith("<end_of_utterance>\nAssistant:")
    pali, _ = build_prompt(scene, build_processor("tiny-paligemma"), CAMERAS)  # no chat template
    assert pali.startswith("<image><image>Driving command:")


def test_history_adds_past_poses(loader) -> None:
    scene = loader[1]
    text = driving_instruction(scene, include_history=True)
    assert text.count("(") == scene.num_history - 1 + 1  # three past poses + "(x m, y m, heading rad)"
    assert "Past ego poses in the current ego frame" in text
    assert command_name([0, 0, 1, 0]) == "turn right" and command_name([0, 0, 0, 0]) == "unknown"


def test_dataset_samples(loader, backbone) -> None:
    dataset = SceneDataset.for_backbone(loader, backbone, cameras=CAMERAS)
    assert len(dataset) == len(loader) == 3 and dataset.tokens == loader.tokens
    sample = dataset[2]
    scene = loader[2]
    assert sample.token == scene.token and len(sample.images) == 2
    assert all(image.size == (56, 56) for image in sample.images)
    assert sample.ego_status.shape == (8,) and sample.ego_status.dtype == np.float32
    ego = scene.current_frame.ego
    np.testing.assert_allclose(sample.ego_status[:4], [ego.vx, ego.vy, ego.ax, ego.ay], rtol=1e-6)
    np.testing.assert_array_equal(sample.ego_status[4:], scene.current_frame.driving_command)
    np.testing.assert_array_equal(sample.command, sample.ego_status[4:])
    assert sample.trajectory.shape == (8, 3) and sample.trajectory.dtype == np.float32
    np.testing.assert_allclose(sample.trajectory, scene.future_trajectory().poses, atol=1e-5)
    assert sample.prompt.count("<|image_pad|>") == 2


def test_collate_keeps_tokens_and_trajectories(loader, backbone) -> None:
    dataset = SceneDataset.for_backbone(loader, backbone, cameras=CAMERAS, include_history=True)
    samples = [dataset[2], dataset[0]]
    batch = collate(samples, backbone)
    assert batch.tokens == [loader.tokens[2], loader.tokens[0]] and batch.batch_size == 2
    assert batch.ego.shape == (2, 8) and batch.trajectory.shape == (2, 8, 3)
    assert torch.equal(batch.trajectory[0], torch.from_numpy(samples[0].trajectory))
    assert batch.inputs["image_grid_thw"].shape[0] == 4 and "mm_token_type_ids" in batch.inputs
    tokens, mask = backbone.encode(batch.to("cpu").inputs)
    assert tokens.shape[:2] == mask.shape and tokens.shape[0] == 2 and tokens.shape[2] == backbone.hidden_size

    collator = pickle.loads(pickle.dumps(Collator(backbone.processor)))  # what a DataLoader worker receives
    loaded = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collator)))
    assert loaded.tokens == loader.tokens[:2]
    assert torch.equal(loaded.trajectory, torch.stack([torch.from_numpy(dataset[i].trajectory) for i in (0, 1)]))


def test_non_finite_ego_status_names_the_scene(loader) -> None:
    scene = loader[0]
    frame = scene.current_frame
    ego = dataclasses.replace(frame.ego)
    object.__setattr__(ego, "ax", float("nan"))  # EgoState validates on construction; corrupt it afterwards
    frames = list(scene.frames)
    frames[scene.num_history - 1] = dataclasses.replace(frame, ego=ego)
    broken = dataclasses.replace(scene, frames=frames)
    with pytest.raises(DrivingSampleError, match=rf"scene {scene.token}: ego status has non-finite ax"):
        ego_status_vector(broken)
    with pytest.raises(DrivingSampleError, match=scene.token):
        SceneDataset([broken], build_processor("tiny-llava"))[0]


def test_missing_camera_image_names_the_path(loader, backbone) -> None:
    scene = loader[0]
    dataset = SceneDataset.for_backbone(loader, backbone, cameras=("CAM_F0", "CAM_R0"))  # CAM_R0 was not rendered
    with pytest.raises(FileNotFoundError, match=rf"scene {scene.token}: CAM_R0 image .*CAM_R0.*\.jpg does not exist"):
        dataset[0]
    with pytest.raises(KeyError, match="no camera 'CAM_X9'"):
        SceneDataset.for_backbone(loader, backbone, cameras=("CAM_X9",))[0]


def test_wrong_image_count_is_caught_at_collate(loader, backbone) -> None:
    dataset = SceneDataset.for_backbone(loader, backbone, cameras=CAMERAS)
    sample = dataset[0]
    sample.images = sample.images[:1]
    with pytest.raises(ValueError, match=r"2 image placeholder.*1 image"):
        collate([sample], backbone)
