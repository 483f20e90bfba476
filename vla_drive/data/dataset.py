"""Driving samples from navsim_eval scenes: camera images, prompt, ego status, ground-truth trajectory (the sample
and batch types, and the collate function that pads them for the backbone, belong to the model:
:mod:`vla_drive.model.types`, :func:`vla_drive.model.processor.collate`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from navsim_eval.data.loader import SceneLoader
from navsim_eval.errors import InvalidSceneError
from navsim_eval.scene import Scene
from vla_drive.data.prompt import build_prompt, format_prompt, instruction_text, resize_image
from vla_drive.model.types import POSE_DIM, TRAJECTORY_POSES, DrivingSample, DrivingSampleError

EGO_STATUS_NAMES = ("vx", "vy", "ax", "ay", "command_left", "command_forward", "command_right", "command_unknown")


def ego_status_vector(scene: Scene) -> np.ndarray:
    """vx, vy, ax, ay and the driving command one-hot of the current frame, float32 [8]; non-finite values raise."""
    frame = scene.current_frame
    ego = frame.ego
    return ego_status_from_parts(scene.token, (ego.vx, ego.vy), (ego.ax, ego.ay), frame.driving_command)


def ego_status_from_parts(token: str, velocity, acceleration, command) -> np.ndarray:
    """The ego status vector [8] float32 from body-frame velocity [2], acceleration [2] and the command one-hot [4]."""
    command = np.asarray(command, dtype=np.float64).reshape(-1)
    if command.shape != (4,):
        raise DrivingSampleError(
            f"scene {token}: driving_command has {command.size} values, expected a one-hot of 4 "
            "(left, forward, right, unknown)"
        )
    motion = np.concatenate(
        [np.asarray(velocity, dtype=np.float64).reshape(-1), np.asarray(acceleration, dtype=np.float64).reshape(-1)]
    )
    if motion.shape != (4,):
        raise DrivingSampleError(f"scene {token}: expected velocity [2] and acceleration [2], got {motion.size} values")
    status = np.concatenate([motion, command])
    bad = [name for name, value in zip(EGO_STATUS_NAMES, status, strict=True) if not np.isfinite(value)]
    if bad:
        raise DrivingSampleError(f"scene {token}: ego status has non-finite {', '.join(bad)} ({status.tolist()})")
    return status.astype(np.float32)


def sample_from_parts(
    token: str,
    images: Sequence[Image.Image],
    velocity,
    acceleration,
    command,
    processor: Any,
    cameras: Sequence[str] = ("CAM_F0",),
    past_poses: np.ndarray | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> DrivingSample:
    """A sample without a scene (e.g. from a navsim AgentInput): no ground truth, so the trajectory is zeros."""
    if len(images) != len(cameras):
        raise DrivingSampleError(f"scene {token}: {len(images)} images for {len(cameras)} cameras {cameras}")
    status = ego_status_from_parts(token, velocity, acceleration, command)
    text = format_prompt(processor, instruction_text(status[4:], status[:2], status[2:4], past_poses), cameras)
    images = [resize_image(image.convert("RGB"), image_size) for image in images]
    return DrivingSample(
        token, images, status[4:].copy(), status, np.zeros((TRAJECTORY_POSES, POSE_DIM), np.float32), text
    )


def make_sample(
    scene: Scene,
    processor: Any,
    cameras: Sequence[str] = ("CAM_F0",),
    image_size: int | tuple[int, int] | None = None,
    include_history: bool = False,
) -> DrivingSample:
    """A :class:`DrivingSample` of one scene (images read from the camera files)."""
    status = ego_status_vector(scene)
    try:
        trajectory = scene.future_trajectory(TRAJECTORY_POSES).poses.astype(np.float32)
    except InvalidSceneError as error:
        raise DrivingSampleError(f"scene {scene.token}: no ground-truth trajectory ({error})") from None
    text, images = build_prompt(scene, processor, cameras, include_history, image_size)
    if len(images) != len(cameras):
        raise DrivingSampleError(f"scene {scene.token}: {len(images)} images for {len(cameras)} cameras {cameras}")
    return DrivingSample(scene.token, images, status[4:].copy(), status, trajectory, text)


class SceneDataset(Dataset[DrivingSample]):
    """Samples of a :class:`SceneLoader` (or a list of scenes): current-frame cameras resized to ``image_size``,
    the prompt built with ``processor``, ego status and the logged future trajectory."""

    def __init__(
        self,
        scenes: SceneLoader | Sequence[Scene],
        processor: Any,
        *,
        cameras: Sequence[str] = ("CAM_F0",),
        image_size: int | tuple[int, int] | None = None,
        include_history: bool = False,
    ) -> None:
        if not cameras:
            raise ValueError("SceneDataset: pass at least one camera (e.g. ('CAM_F0',))")
        self.scenes = scenes
        self.processor = processor
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.include_history = include_history

    @classmethod
    def for_backbone(cls, scenes: SceneLoader | Sequence[Scene], backbone: Any, **kwargs: Any) -> SceneDataset:
        """A dataset using the backbone's processor and image size (the preset's size; None keeps camera images)."""
        kwargs.setdefault("image_size", backbone.image_size)
        return cls(scenes, backbone.processor, **kwargs)

    @classmethod
    def for_model(cls, scenes: SceneLoader | Sequence[Scene], model: Any) -> SceneDataset:
        """The samples a DrivingVLA reads: its backbone's processor and image size, its cameras and history."""
        config = model.config
        return cls.for_backbone(scenes, model.backbone, cameras=config.cameras, include_history=config.include_history)

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def tokens(self) -> list[str]:
        if isinstance(self.scenes, SceneLoader):
            return self.scenes.tokens
        return [scene.token for scene in self.scenes]

    def __getitem__(self, index: int) -> DrivingSample:
        scene = self.scenes[index]
        return make_sample(scene, self.processor, self.cameras, self.image_size, self.include_history)
