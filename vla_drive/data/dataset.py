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
from vla_drive.data.prompt import MAX_HISTORY_FRAMES, as_sizing, build_prompt, format_prompt, instruction_text
from vla_drive.model.processor import ImageSizing
from vla_drive.model.types import POSE_DIM, TRAJECTORY_POSES, DrivingSample, DrivingSampleError

EGO_STATUS_NAMES = ("vx", "vy", "ax", "ay", "command_left", "command_forward", "command_right", "command_unknown")
MOTION = slice(0, 4)  # the entries of the ego status vector that the ego-status switch removes (the command stays)


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
    image_size: int | tuple[int, int] | ImageSizing | None = None,
    history_frames: int = 0,
    ego_status: bool = True,
) -> DrivingSample:
    """A sample without a scene (e.g. from a navsim AgentInput): no ground truth, so the trajectory is zeros.
    ``images`` holds, per camera, the ``history_frames`` past frames then the current one."""
    expected = len(cameras) * (history_frames + 1)
    if len(images) != expected:
        raise DrivingSampleError(
            f"scene {token}: {len(images)} images for {len(cameras)} cameras {list(cameras)} x {history_frames + 1} "
            f"frames ({expected} expected)"
        )
    status = _switched(ego_status_from_parts(token, velocity, acceleration, command), ego_status)
    text = ""  # no processor (the ego-status encoder): no prompt
    if processor is not None:
        instruction = instruction_text(status[4:], velocity, acceleration, past_poses, ego_status)
        text = format_prompt(processor, instruction, cameras, history_frames)
    sizing = as_sizing(image_size)
    images = [sizing.fit(image.convert("RGB"), i // (history_frames + 1)) for i, image in enumerate(images)]
    return DrivingSample(
        token, images, status[4:].copy(), status, np.zeros((TRAJECTORY_POSES, POSE_DIM), np.float32), text
    )


def _switched(status: np.ndarray, ego_status: bool) -> np.ndarray:
    """The ego status vector the model sees: velocity and acceleration zeroed when the ego status is off."""
    if not ego_status:
        status = status.copy()
        status[MOTION] = 0.0
    return status


def make_sample(
    scene: Scene,
    processor: Any,
    cameras: Sequence[str] = ("CAM_F0",),
    image_size: int | tuple[int, int] | ImageSizing | None = None,
    include_history: bool = False,
    history_frames: int = 0,
    ego_status: bool = True,
) -> DrivingSample:
    """A :class:`DrivingSample` of one scene (images read from the camera files); without a processor (the
    ego-status encoder) no prompt and no images: no camera file is opened."""
    status = _switched(ego_status_vector(scene), ego_status)
    try:
        trajectory = scene.future_trajectory(TRAJECTORY_POSES).poses.astype(np.float32)
    except InvalidSceneError as error:
        raise DrivingSampleError(f"scene {scene.token}: no ground-truth trajectory ({error})") from None
    if processor is None:
        return DrivingSample(scene.token, [], status[4:].copy(), status, trajectory, "")
    text, images = build_prompt(scene, processor, cameras, include_history, image_size, history_frames, ego_status)
    if len(images) != len(cameras) * (history_frames + 1):
        raise DrivingSampleError(f"scene {scene.token}: {len(images)} images for {len(cameras)} cameras {cameras}")
    return DrivingSample(scene.token, images, status[4:].copy(), status, trajectory, text)


class SceneDataset(Dataset[DrivingSample]):
    """Samples of a :class:`SceneLoader` (or a list of scenes): the cameras' images (the current frame, and
    ``history_frames`` past ones) sized by ``image_size`` (an :class:`ImageSizing` or a side), the prompt built with
    ``processor``, ego status (velocity and acceleration zeroed with ``ego_status`` False) and the logged future.
    With ``processor`` None and no cameras (``model.backbone: none``) the samples hold the ego status and the future
    only."""

    def __init__(
        self,
        scenes: SceneLoader | Sequence[Scene],
        processor: Any,
        *,
        cameras: Sequence[str] = ("CAM_F0",),
        image_size: int | tuple[int, int] | ImageSizing | None = None,
        include_history: bool = False,
        history_frames: int = 0,
        ego_status: bool = True,
    ) -> None:
        if bool(cameras) != (processor is not None):
            raise ValueError(
                "SceneDataset: pass a processor and at least one camera (e.g. ('CAM_F0',)), or neither (samples of "
                f"ego status only), got {'a' if processor is not None else 'no'} processor and cameras {list(cameras)}"
            )
        if not 0 <= history_frames <= MAX_HISTORY_FRAMES:
            raise ValueError(f"SceneDataset: history_frames must be in 0..{MAX_HISTORY_FRAMES}, got {history_frames}")
        self.scenes = scenes
        self.processor = processor
        self.cameras = tuple(cameras)
        self.sizing = as_sizing(image_size)
        self.include_history = include_history
        self.history_frames = history_frames
        self.ego_status = ego_status

    @property
    def image_size(self) -> int | tuple[int, int] | None:
        return self.sizing.side

    @classmethod
    def for_backbone(cls, scenes: SceneLoader | Sequence[Scene], backbone: Any, **kwargs: Any) -> SceneDataset:
        """A dataset using the backbone's processor and image size (the preset's size; None keeps camera images)."""
        kwargs.setdefault("image_size", backbone.image_size)
        return cls(scenes, backbone.processor, **kwargs)

    @classmethod
    def for_model(cls, scenes: SceneLoader | Sequence[Scene], model: Any) -> SceneDataset:
        """The samples a DrivingVLA reads: its processor and image sizing (per-camera pixel budgets), its cameras,
        history frames, past poses and ego-status switch."""
        config = model.config
        return cls(
            scenes,
            model.backbone.processor,
            cameras=config.cameras,
            image_size=model.image_sizing,
            include_history=config.include_history,
            history_frames=config.history_frames,
            ego_status=config.ego_status,
        )

    def settings(self) -> dict[str, Any]:
        """What decides the samples besides the scenes (the feature cache keys on it)."""
        return {
            "cameras": list(self.cameras),
            "sizing": self.sizing.to_dict(),
            "include_history": self.include_history,
            "history_frames": self.history_frames,
            "ego_status": self.ego_status,
        }

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def tokens(self) -> list[str]:
        if isinstance(self.scenes, SceneLoader):
            return self.scenes.tokens
        return [scene.token for scene in self.scenes]

    def __getitem__(self, index: int) -> DrivingSample:
        scene = self.scenes[index]
        return make_sample(
            scene,
            self.processor,
            self.cameras,
            self.sizing,
            self.include_history,
            self.history_frames,
            self.ego_status,
        )
