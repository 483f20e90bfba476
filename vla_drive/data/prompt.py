"""Driving prompts: the instruction text (command, ego velocity and acceleration, optionally past poses) with one
image placeholder per camera, formatted with the processor's chat template (or the family's plain format)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from navsim_eval.geometry import absolute_to_relative_poses
from navsim_eval.scene import Scene
from vla_drive.model.processor import image_placeholder

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


def command_name(command: np.ndarray | Sequence[float]) -> str:
    """The driving command of a NAVSIM one-hot (left, forward, right, unknown); 'unknown' when none is set."""
    values = np.asarray(command, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)) or values.max() <= 0:
        return COMMAND_NAMES[3]
    return COMMAND_NAMES[int(values.argmax())]


def driving_instruction(scene: Scene, include_history: bool = False) -> str:
    """The instruction text of a scene's current frame: command, speed, velocity, acceleration (+ past poses)."""
    frame = scene.current_frame
    ego = frame.ego
    past = None
    if include_history and scene.num_history > 1:
        history = np.array([f.ego.pose for f in scene.frames[: scene.num_history - 1]])
        past = absolute_to_relative_poses(ego.pose, history)
    return instruction_text(frame.driving_command, (ego.vx, ego.vy), (ego.ax, ego.ay), past)


def instruction_text(
    command: np.ndarray | Sequence[float],
    velocity: Sequence[float],
    acceleration: Sequence[float],
    past_poses: np.ndarray | None = None,
) -> str:
    """The instruction from its parts (body-frame velocity and acceleration; past poses [N, 3] in the current ego
    frame, oldest first): shared by dataset scenes and the navsim agent's AgentInput."""
    vx, vy = (float(v) for v in velocity)
    ax, ay = (float(a) for a in acceleration)
    parts = [
        f"Driving command: {command_name(command)}.",
        f"Ego speed {np.hypot(vx, vy):.1f} m/s, velocity vx {vx:.2f} m/s vy {vy:.2f} m/s,"
        f" acceleration ax {ax:.2f} m/s2 ay {ay:.2f} m/s2.",
    ]
    if past_poses is not None and len(past_poses):
        poses = " ".join(f"({x:.2f}, {y:.2f}, {h:.2f})" for x, y, h in np.asarray(past_poses))
        parts.append(f"Past ego poses in the current ego frame (x m, y m, heading rad): {poses}.")
    parts.append(PLAN_REQUEST)
    return " ".join(parts)


def format_prompt(processor: Any, instruction: str, cameras: Sequence[str]) -> str:
    """One user turn: a labelled image placeholder per camera, then the instruction.

    With a chat template the turn goes through it (generation prompt added); without one (PaliGemma) the images come
    first as the family's image tokens and the processor adds BOS and the separator.
    """
    if getattr(processor, "chat_template", None):
        content: list[dict[str, str]] = []
        for camera in cameras:
            content.append({"type": "text", "text": f"{CAMERA_LABELS.get(camera, camera)}: "})
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
    return image_placeholder(processor) * len(cameras) + instruction


def load_camera_images(
    scene: Scene, cameras: Sequence[str], image_size: int | tuple[int, int] | None = None
) -> list[Image.Image]:
    """RGB images of the current frame's cameras, resized to ``image_size`` (side, or (width, height)) if given."""
    frame = scene.current_frame
    images = []
    for camera in cameras:
        if camera not in frame.cameras:
            raise KeyError(
                f"scene {scene.token}: no camera {camera!r} in the current frame (has {sorted(frame.cameras)})"
            )
        path = Path(frame.cameras[camera])
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"scene {scene.token}: {camera} image {path} does not exist") from None
        images.append(resize_image(image, image_size))
    return images


def resize_image(image: Image.Image, image_size: int | tuple[int, int] | None) -> Image.Image:
    """``image`` at ``image_size`` (side, or (width, height)); unchanged when None or already that size."""
    if image_size is None:
        return image
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


def build_prompt(
    scene: Scene,
    processor: Any,
    cameras: Sequence[str] = ("CAM_F0",),
    include_history: bool = False,
    image_size: int | tuple[int, int] | None = None,
) -> tuple[str, list[Image.Image]]:
    """The prompt text and its images (one per camera, in placeholder order) for a scene's current frame."""
    if not cameras:
        raise ValueError("build_prompt: pass at least one camera (e.g. ('CAM_F0',))")
    text = format_prompt(processor, driving_instruction(scene, include_history), cameras)
    return text, load_camera_images(scene, cameras, image_size)
