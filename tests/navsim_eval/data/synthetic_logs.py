"""Synthetic OpenScene logs for the data tests: an ego on a circle (headings through +-pi) among moving agents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from navsim_eval.data.openscene import CAMERA_NAMES
from navsim_eval.data.openscene_writer import camera_blob_path, write_log
from navsim_eval.scene import Boxes, EgoState, Frame, ObjectType

ORIGIN = (664_400.0, 3_996_000.0)  # Las Vegas UTM 11N magnitudes
START_US = 1_625_000_000_000_000
AGENT_TYPES = (ObjectType.VEHICLE, ObjectType.PEDESTRIAN, ObjectType.BICYCLE)
STATIC_TYPES = (ObjectType.TRAFFIC_CONE, ObjectType.BARRIER, ObjectType.CZONE_SIGN, ObjectType.GENERIC_OBJECT)


def f32(value: float) -> float:
    """A float32-representable value (what NAVSIM's reader returns for ego dynamics)."""
    return float(np.float32(value))


def make_frames(
    num_frames: int = 30,
    *,
    seed: int = 0,
    log_tag: str = "a",
    empty_route: Sequence[int] = (),
    num_agents: int = 6,
    num_static: int = 3,
) -> list[Frame]:
    """Frames at 2 Hz: ego on a 60 m circle at 8 m/s (heading from 2 rad through +-pi), agents on their own
    circles, a few static objects; the route is empty at the ``empty_route`` frame indices."""
    rng = np.random.default_rng(seed)
    radius, speed = 60.0, 8.0
    agent_phase = rng.uniform(0, 2 * np.pi, num_agents)
    agent_radius = rng.uniform(10, 50, num_agents)
    agent_speed = rng.uniform(0.5, 12, num_agents)
    static_xy = rng.uniform(-40, 40, (num_static, 2))
    num_boxes = num_agents + num_static
    sizes = np.column_stack([rng.uniform(0.5, 5, num_boxes), rng.uniform(0.4, 2.2, num_boxes)])
    frames = []
    for i in range(num_frames):
        t = 0.5 * i
        heading = float(np.arctan2(np.sin(2.0 + speed * t / radius), np.cos(2.0 + speed * t / radius)))
        # Driving counter-clockwise on the circle, tangent to it: the heading passes +-pi after about 8 s.
        x, y = ORIGIN[0] + radius * np.sin(heading), ORIGIN[1] - radius * np.cos(heading)
        dynamics = f32(speed), f32(0.01 * i), f32(0.1), f32(speed**2 / radius)
        ego = EgoState(x, y, heading, *dynamics, time_us=START_US + i * 500_000)
        tokens, types, xyh, velocity = [], [], [], []
        for k in range(num_agents):
            phase = agent_phase[k] + agent_speed[k] * t / agent_radius[k]
            tokens.append(f"{log_tag}agent{k:02d}")
            types.append(AGENT_TYPES[k % len(AGENT_TYPES)])
            xyh.append(
                [
                    ORIGIN[0] + agent_radius[k] * np.cos(phase),
                    ORIGIN[1] + agent_radius[k] * np.sin(phase),
                    float(np.arctan2(np.cos(phase), -np.sin(phase))),
                ]
            )
            velocity.append([-agent_speed[k] * np.sin(phase), agent_speed[k] * np.cos(phase)])
        for k in range(num_static):
            tokens.append(f"{log_tag}static{k:02d}")
            types.append(STATIC_TYPES[k % len(STATIC_TYPES)])
            xyh.append([ORIGIN[0] + static_xy[k, 0], ORIGIN[1] + static_xy[k, 1], 0.3 * k])
            velocity.append([0.0, 0.0])
        size = np.column_stack([sizes, np.full(len(tokens), 1.5)])
        frames.append(
            Frame(
                token=f"{log_tag}{i:015x}",
                timestamp_us=START_US + i * 500_000,
                ego=ego,
                boxes=Boxes(tokens, types, np.array(xyh), size, np.array(velocity)),
                roadblock_ids=[] if i in empty_route else ["1001", "1002"],
                traffic_lights=[("2001", i % 4 == 0), ("2002", False)],
                driving_command=np.array([0, 1, 0, 0]),
            )
        )
    return frames


def write_synthetic_log(
    log_dir: Path, log_name: str, frames: Sequence[Frame], map_location: str = "us-nv-las-vegas-strip"
) -> Path:
    """Write ``frames`` as ``<log_dir>/<log_name>.pkl``."""
    return write_log(log_dir / f"{log_name}.pkl", frames, log_name=log_name, map_location=map_location)


def write_camera_files(sensor_root: Path, log_name: str, frames: Sequence[Frame], skip: Sequence[str] = ()) -> None:
    """Create empty image files at the writer's default paths, except for the ``skip`` frame tokens."""
    for frame in frames:
        if frame.token in skip:
            continue
        for name in CAMERA_NAMES:
            path = sensor_root / camera_blob_path(log_name, name, frame.token)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")


def assert_frames_equal(actual: Frame, expected: Frame, *, cameras: bool = False) -> None:
    """Bit-for-bit equality of the scoring fields of two frames."""
    assert actual.token == expected.token
    assert actual.timestamp_us == expected.timestamp_us
    assert actual.ego == expected.ego
    assert actual.boxes.tokens == expected.boxes.tokens
    assert actual.boxes.types == expected.boxes.types
    np.testing.assert_array_equal(actual.boxes.xyh, expected.boxes.xyh)
    np.testing.assert_array_equal(actual.boxes.size, expected.boxes.size)
    np.testing.assert_array_equal(actual.boxes.velocity, expected.boxes.velocity)
    assert actual.roadblock_ids == expected.roadblock_ids
    assert actual.traffic_lights == expected.traffic_lights
    np.testing.assert_array_equal(actual.driving_command, expected.driving_command)
    if cameras:
        assert actual.cameras == expected.cameras
