"""The navsim agent adapter, against stand-ins of navsim's AbstractAgent interface (navsim is not installed here):
it builds the same sample from an AgentInput as the dataset builds from the scene, and returns a Trajectory."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import vla_drive.navsim_agent as navsim_agent
from navsim_eval.geometry import absolute_to_relative_poses
from tests.vla_drive.tiny_world import tiny_world

pytestmark = pytest.mark.slow


def _stand_ins(v2: bool):
    """Modules shaped like navsim's and nuplan's, written for this test."""

    @dataclass
    class TrajectorySampling:
        num_poses: int | None = None
        time_horizon: float | None = None
        interval_length: float | None = None

    @dataclass
    class Trajectory:
        poses: np.ndarray
        trajectory_sampling: TrajectorySampling = None

    @dataclass
    class SensorConfig:
        cam_f0: bool | list[int]
        cam_l0: bool | list[int]
        cam_l1: bool | list[int]
        cam_l2: bool | list[int]
        cam_r0: bool | list[int]
        cam_r1: bool | list[int]
        cam_r2: bool | list[int]
        cam_b0: bool | list[int]
        lidar_pc: bool | list[int]

    class AbstractAgentV1(torch.nn.Module, ABC):
        def __init__(self, requires_scene: bool = False):
            super().__init__()
            self.requires_scene = requires_scene

        @abstractmethod
        def name(self) -> str: ...

        @abstractmethod
        def get_sensor_config(self): ...

        @abstractmethod
        def initialize(self) -> None: ...

    class AbstractAgentV2(AbstractAgentV1):
        def __init__(self, trajectory_sampling, requires_scene: bool = False):
            super().__init__(requires_scene)
            self._trajectory_sampling = trajectory_sampling

    modules = {
        "navsim.agents.abstract_agent": {"AbstractAgent": AbstractAgentV2 if v2 else AbstractAgentV1},
        "navsim.common.dataclasses": {"Trajectory": Trajectory, "SensorConfig": SensorConfig},
        "nuplan.planning.simulation.trajectory.trajectory_sampling": {"TrajectorySampling": TrajectorySampling},
    }
    return modules, Trajectory


@pytest.fixture(params=[False, True], ids=["navsim-v1.1", "navsim-v2"])
def official(request, monkeypatch):
    modules, trajectory_cls = _stand_ins(v2=request.param)
    for path, attributes in modules.items():
        parts = path.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            monkeypatch.setitem(sys.modules, name, sys.modules.get(name, types.ModuleType(name)))
        for key, value in attributes.items():
            setattr(sys.modules[path], key, value)
    module = importlib.reload(navsim_agent)
    yield module, trajectory_cls, modules["navsim.agents.abstract_agent"]["AbstractAgent"]
    monkeypatch.undo()
    importlib.reload(navsim_agent)


@pytest.fixture(scope="module")
def scene_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent")
    tiny = tiny_world(root, include_history=True, spread=0.2)
    loader, dataset, model = tiny.loader, tiny.dataset, tiny.model
    return loader[0], dataset[0], model, model.save_pretrained(root / "model")


def _agent_input(scene, image_frames: int = 1):
    """What navsim's SceneLoader hands an agent: 4 history frames, poses local to the current one, the images of the
    last ``image_frames`` frames (what the sensor config asked for)."""
    history = scene.frames[: scene.num_history]
    local = absolute_to_relative_poses(scene.current_frame.ego.pose, np.array([f.ego.pose for f in history]))
    statuses, cameras = [], []
    for frame, pose in zip(history, local, strict=True):
        statuses.append(
            types.SimpleNamespace(
                ego_pose=pose.astype(np.float32),
                ego_velocity=np.array([frame.ego.vx, frame.ego.vy], np.float32),
                ego_acceleration=np.array([frame.ego.ax, frame.ego.ay], np.float32),
                driving_command=np.asarray(frame.driving_command, dtype=np.int64),
            )
        )
        wanted = frame in history[len(history) - image_frames :]
        image = np.array(Image.open(frame.cameras["CAM_F0"]).convert("RGB")) if wanted else None
        cameras.append(types.SimpleNamespace(cam_f0=types.SimpleNamespace(image=image)))
    return types.SimpleNamespace(ego_statuses=statuses, cameras=cameras, lidars=[None] * len(history))


def test_agent_computes_the_models_trajectory_from_an_agent_input(official, scene_and_model):
    module, trajectory_cls, abstract_agent = official
    scene, sample, model, model_dir = scene_and_model
    assert module.NAVSIM_AVAILABLE and issubclass(module.VLADriveAgent, abstract_agent)
    agent = module.VLADriveAgent(model_dir=str(model_dir), steps=3, seed=7, device="cpu")
    assert agent.name() == "vla_drive" and agent.requires_scene is True
    config = agent.get_sensor_config()
    assert config.cam_f0 == [3] and config.cam_b0 is False and config.lidar_pc is False
    agent.initialize()

    built = module.agent_input_to_sample(_agent_input(scene), agent.model)
    assert built.prompt == sample.prompt, "the agent prompts exactly as training did"
    np.testing.assert_allclose(built.ego_status, sample.ego_status, rtol=1e-6)
    assert np.array_equal(np.asarray(built.images[0]), np.asarray(sample.images[0]))

    official_scene = types.SimpleNamespace(scene_metadata=types.SimpleNamespace(initial_token=scene.token))
    trajectory = agent.compute_trajectory(_agent_input(scene), official_scene)
    assert type(trajectory) is trajectory_cls
    assert trajectory.poses.shape == (8, 3) and trajectory.poses.dtype == np.float32
    expected = model.predict([sample], 1, 3, seed=7)[0, 0]  # seeded by the token, as vla-drive eval seeds it
    np.testing.assert_allclose(trajectory.poses, expected, atol=1e-5)
    assert trajectory.trajectory_sampling.num_poses == 8 and trajectory.trajectory_sampling.interval_length == 0.5
    again = agent.compute_trajectory(_agent_input(scene), official_scene)
    np.testing.assert_array_equal(again.poses, trajectory.poses, err_msg="a scene's trajectory is order-independent")

    blind = module.VLADriveAgent(model_dir=str(model_dir), steps=3, seed=7, device="cpu", requires_scene=False)
    assert blind.requires_scene is False  # what the official submission script accepts: seeded by the inputs
    without_scene = blind.compute_trajectory(_agent_input(scene))
    by_inputs = dataclasses.replace(sample, token=f"inputs-{module._input_key(sample)}")
    np.testing.assert_allclose(without_scene.poses, model.predict([by_inputs], 1, 3, seed=7)[0, 0], atol=1e-5)


def test_agent_reads_history_frames_without_ego_status_under_a_pixel_budget(official, scene_and_model, tmp_path):
    module, _, _ = official
    scene, _, model, _ = scene_and_model
    config = dataclasses.replace(model.config, history_frames=2, ego_status=False, max_pixels=(28 * 28 * 3,))
    ablated = type(model)(config, model.backbone, model.head, model.normalizer)
    model_dir = ablated.save_pretrained(tmp_path / "ablated")
    agent = module.VLADriveAgent(model_dir=str(model_dir), steps=3, seed=7, device="cpu")
    assert agent.get_sensor_config().cam_f0 == [1, 2, 3]
    agent.initialize()
    from vla_drive.data.dataset import SceneDataset

    sample = SceneDataset.for_model([scene], agent.model)[0]
    assert len(sample.images) == 3 and sample.images[0].size == (56, 28)  # 2 visual tokens within 3, aspect kept
    assert "front camera 1 s ago: " in sample.prompt and "front camera now: " in sample.prompt
    assert "Ego speed" not in sample.prompt and not sample.ego_status[:4].any() and sample.ego_status[4:].any()
    built = module.agent_input_to_sample(_agent_input(scene, image_frames=3), agent.model)
    assert built.prompt == sample.prompt
    np.testing.assert_array_equal(built.ego_status, sample.ego_status)
    for ours, theirs in zip(built.images, sample.images, strict=True):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    with pytest.raises(ValueError, match="CAM_F0 image 2 frames before the current one"):
        module.agent_input_to_sample(_agent_input(scene, image_frames=1), agent.model)


def test_without_navsim_the_module_imports_and_the_agent_says_what_to_install():
    assert not navsim_agent.NAVSIM_AVAILABLE
    with pytest.raises(ImportError, match="needs the official navsim"):
        navsim_agent.VLADriveAgent(model_dir="anything")


def test_the_shipped_hydra_config_matches_the_agent_and_the_docs():
    import inspect
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "configs" / "navsim" / "agent" / "vla_drive.yaml").read_text())
    assert config.pop("_target_") == "vla_drive.navsim_agent.VLADriveAgent" and config.pop("_convert_") == "all"
    parameters = inspect.signature(navsim_agent._AgentLogic._setup).parameters
    assert set(config) - {"requires_scene"} == set(parameters) - {"self"}, "every agent argument, nothing else"
    assert config["model_dir"] == "???" and config["requires_scene"] is True
    assert "configs/navsim/agent/vla_drive.yaml" in (root / "docs" / "evaluation.md").read_text()
