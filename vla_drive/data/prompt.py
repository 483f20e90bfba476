"""Driving prompts: the instruction text (command, ego velocity and acceleration unless the ego status is switched
off, optionally past poses) with one labelled image placeholder per camera and frame (the current frame, and
optionally the history frames NAVSIM gives), formatted with the processor's chat template (or the family's plain
format)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from navsim_eval.geometry import absolute_to_relative_poses
from navsim_eval.scene import Scene
from vla_drive.model.processor import ImageSizing, image_placeholder
from vla_drive.model.types import DrivingSampleError

COMMAND_NAMES = ("turn left", "go straight", "turn right", "unknown")  # NAVSIM one-hot order
CAMERA_LABELS = {
    "CAM_F0": "front camera",
    "CAM_L0": "front left camera",
    "CAM_L1": "left camera",
    "CAM_L2": "back left camera",
    "CAM_R0": "front right camera",
    "CAM_R1": "right camera",
    "CAM_R2": "back right camera",
    "CAM_B0": "back camera",
}
PLAN_REQUEST = "Plan the trajectory for the next 4 seconds."
FRAME_INTERVAL_S = 0.5  # NAVSIM frames are 2 Hz
MAX_HISTORY_FRAMES = 3  # NAVSIM's agent input: 3 past frames + the current one


def command_name(command: np.ndarray | Sequence[float]) -> str:
    """The driving command of a NAVSIM one-hot (left, forward, right, unknown); 'unknown' when none is set."""
    values = np.asarray(command, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)) or values.max() <= 0:
        return COMMAND_NAMES[3]
    return COMMAND_NAMES[int(values.argmax())]


def driving_instruction(scene: Scene, include_history: bool = False, ego_status: bool = True) -> str:
    """The instruction text of a scene's current frame: command, speed, velocity, acceleration (+ past poses)."""
    frame = scene.current_frame
    ego = frame.ego
    past = None
    if include_history and scene.num_history > 1:
        history = np.array([f.ego.pose for f in scene.frames[: scene.num_history - 1]])
        past = absolute_to_relative_poses(ego.pose, history)
    return instruction_text(frame.driving_command, (ego.vx, ego.vy), (ego.ax, ego.ay), past, ego_status)


def instruction_text(
    command: np.ndarray | Sequence[float],
    velocity: Sequence[float],
    acceleration: Sequence[float],
    past_poses: np.ndarray | None = None,
    ego_status: bool = True,
) -> str:
    """The instruction from its parts (body-frame velocity and acceleration; past poses [N, 3] in the current ego
    frame, oldest first): shared by dataset scenes and the navsim agent's AgentInput. With ``ego_status`` False the
    speed, velocity and acceleration are left out (the driving command stays: it is the route, not ego status)."""
    vx, vy = (float(v) for v in velocity)
    ax, ay = (float(a) for a in acceleration)
    parts = [f"Driving command: {command_name(command)}."]
    if ego_status:
        parts.append(
            f"Ego speed {np.hypot(vx, vy):.1f} m/s, velocity vx {vx:.2f} m/s vy {vy:.2f} m/s,"
            f" acceleration ax {ax:.2f} m/s2 ay {ay:.2f} m/s2."
        )
    if past_poses is not None and len(past_poses):
        poses = " ".join(f"({x:.2f}, {y:.2f}, {h:.2f})" for x, y, h in np.asarray(past_poses))
        parts.append(f"Past ego poses in the current ego frame (x m, y m, heading rad): {poses}.")
    parts.append(PLAN_REQUEST)
    return " ".join(parts)


def camera_label(camera: str, frames_ago: int = 0, history_frames: int = 0) -> str:
    """How an image is introduced in the prompt: the camera, and with history frames how long ago it was taken."""
    label = CAMERA_LABELS.get(camera, camera)
    if not history_frames:
        return label
    return f"{label} {'now' if frames_ago == 0 else f'{frames_ago * FRAME_INTERVAL_S:g} s ago'}"


def format_prompt(processor: Any, instruction: str, cameras: Sequence[str], history_frames: int = 0) -> str:
    """One user turn: a labelled image placeholder per camera and frame (oldest first per camera), then the
    instruction.

    With a chat template the turn goes through it (generation prompt added); without one (PaliGemma) the images come
    first as the family's image tokens and the processor adds BOS and the separator.
    """
    if getattr(processor, "chat_template", None):
        content: list[dict[str, str]] = []
        for camera in cameras:
            for frames_ago in range(history_frames, -1, -1):
                content.append({"type": "text", "text": f"{camera_label(camera, frames_ago, history_frames)}: "})
                content.append({"type": "image"})
        content.append({"type": "text", "text": instruction})
        messages = [{"role": "user", "content": content}]
        try:
            return str(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        except AttributeError:
            # Some processors (SmolVLM) read defaults from the video processor that no_video removed: render the
            # same template through the tokenizer.
            return str(
                processor.tokenizer.apply_chat_template(
                    messages, chat_template=processor.chat_template, tokenize=False, add_generation_prompt=True
                )
            )
    return image_placeholder(processor) * (len(cameras) * (history_frames + 1)) + instruction


def load_camera_images(
    scene: Scene,
    cameras: Sequence[str],
    image_size: int | tuple[int, int] | ImageSizing | None = None,
    history_frames: int = 0,
) -> list[Image.Image]:
    """RGB images of the cameras, per camera the ``history_frames`` past frames then the current one, sized by
    ``image_size`` (an :class:`ImageSizing`, or a side / (width, height) to resize to)."""
    sizing = as_sizing(image_size)
    first = scene.num_history - 1 - history_frames
    if first < 0:
        raise DrivingSampleError(
            f"scene {scene.token}: {history_frames} history frames asked, the scene has {scene.num_history - 1}"
        )
    images = []
    for index, camera in enumerate(cameras):
        for frame in scene.frames[first : scene.num_history]:
            if camera not in frame.cameras:
                has = sorted(frame.cameras)
                raise KeyError(f"scene {scene.token}: no camera {camera!r} in frame {frame.token} (has {has})")
            path = Path(frame.cameras[camera])
            try:
                with Image.open(path) as opened:
                    image = opened.convert("RGB")
            except FileNotFoundError:
                raise FileNotFoundError(f"scene {scene.token}: {camera} image {path} does not exist") from None
            images.append(sizing.fit(image, index))
    return images


def as_sizing(image_size: int | tuple[int, int] | ImageSizing | None) -> ImageSizing:
    """An :class:`ImageSizing` from a sizing or a plain side / (width, height) (None: images as they come)."""
    if isinstance(image_size, ImageSizing):
        return image_size
    return ImageSizing(side=tuple(image_size) if isinstance(image_size, list | tuple) else image_size)


def build_prompt(
    scene: Scene,
    processor: Any,
    cameras: Sequence[str] = ("CAM_F0",),
    include_history: bool = False,
    image_size: int | tuple[int, int] | ImageSizing | None = None,
    history_frames: int = 0,
    ego_status: bool = True,
) -> tuple[str, list[Image.Image]]:
    """The prompt text and its images (per camera, oldest frame first, in placeholder order) for a scene."""
    if not cameras:
        raise ValueError("build_prompt: pass at least one camera (e.g. ('CAM_F0',))")
    text = format_prompt(processor, driving_instruction(scene, include_history, ego_status), cameras, history_frames)
    return text, load_camera_images(scene, cameras, image_size, history_frames)
