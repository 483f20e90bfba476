"""NAVSIM v2 synthetic scenes (``synthetic_scene_pickles/<scene_token>.pkl``): the second stage of two-stage splits.

A file is what ``navsim.common.dataclasses.Scene.save_to_disk`` pickles (``main``): ``{"scene_metadata": {log_name,
scene_token, map_name, initial_token, num_history_frames, num_future_frames, corresponding_original_scene,
corresponding_original_initial_token}, "frames": [4 history frame dicts], "extended_traffic_light_data": [8
nuPlan TrafficLightStatuses], "extended_detections_tracks": [8 nuPlan DetectionsTracks]}``. A frame dict holds
``token``, ``timestamp``, ``roadblock_ids``, ``traffic_lights``, ``annotations`` (ego-frame boxes, as in the logs),
``ego_status`` (global rear-axle pose, float32 velocity and acceleration, driving command).

The nuPlan objects are read with the allow-list unpickler as inert :class:`~navsim_eval.pickle_io.ForeignObject`
stand-ins (an unknown class is refused naming it) and turned into our :class:`Scene`: the 4 history frames, then
8 future frames at +0.5 s each holding the extended detections (global boxes) and traffic lights, which is what
``NavSimScenario`` serves the metric caching. The scene token is ``initial_token`` (the current frame's token,
17 characters: NAVSIM's ``is_synthetic_scene``). The future frames carry the current ego (the ego's future is what
the planner is scored on, it is not part of the scene).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.data.openscene import MAP_NAME_ALIASES, _annotations, _traffic_lights, _Where
from navsim_eval.errors import InvalidSceneError
from navsim_eval.pickle_io import (
    BASE_GLOBALS,
    CORRUPT_PICKLE_ERRORS,
    ForbiddenGlobalError,
    ForeignObject,
    foreign_classes,
    restricted_loads,
)
from navsim_eval.scene import Boxes, EgoState, Frame, ObjectType, Scene

SYNTHETIC_TOKEN_LENGTH = 17  # NAVSIM: is_synthetic_scene = len(token) == 17
SCENE_PICKLES_DIR = "synthetic_scene_pickles"
SENSOR_BLOBS_DIR = "sensor_blobs"  # beside it: the synthetic scenes' camera images (NAVSIM's layout)
FRAME_INTERVAL_US = 500_000
NUM_HISTORY_FRAMES = 4

# The nuPlan classes a synthetic scene pickle holds (and nothing else may be loaded from one).
NUPLAN_CLASSES = (
    "nuplan.planning.simulation.observation.observation_type.DetectionsTracks",
    "nuplan.common.actor_state.tracked_objects.TrackedObjects",
    "nuplan.common.actor_state.agent.Agent",
    "nuplan.common.actor_state.static_object.StaticObject",
    "nuplan.common.actor_state.oriented_box.OrientedBox",
    "nuplan.common.actor_state.state_representation.StateSE2",
    "nuplan.common.actor_state.state_representation.StateVector2D",
    "nuplan.common.actor_state.state_representation.TimePoint",
    "nuplan.common.actor_state.scene_object.SceneObjectMetadata",
    "nuplan.common.actor_state.tracked_objects_types.TrackedObjectType",
    "nuplan.common.maps.maps_datatypes.TrafficLightStatuses",
    "nuplan.common.maps.maps_datatypes.TrafficLightStatusData",
    "nuplan.common.maps.maps_datatypes.TrafficLightStatusType",
)
FOREIGN = foreign_classes(NUPLAN_CLASSES)
ALLOWED_GLOBALS = {**BASE_GLOBALS, **FOREIGN}
# nuPlan's TrackedObjectType values -> our classes; TrafficLightStatusType.RED
TRACKED_OBJECT_TYPES = {
    0: ObjectType.VEHICLE,
    1: ObjectType.PEDESTRIAN,
    2: ObjectType.BICYCLE,
    3: ObjectType.TRAFFIC_CONE,
    4: ObjectType.BARRIER,
    5: ObjectType.CZONE_SIGN,
    6: ObjectType.GENERIC_OBJECT,
    7: ObjectType.EGO,
}
RED = 2


def sorted_by_type(boxes: Boxes) -> Boxes:
    """The boxes in the order nuPlan's ``TrackedObjects`` keeps them: by type (vehicles first), stable."""
    codes = {kind: code for code, kind in TRACKED_OBJECT_TYPES.items()}
    order = sorted(range(len(boxes)), key=lambda i: codes[boxes.types[i]])
    return Boxes(
        [boxes.tokens[i] for i in order],
        [boxes.types[i] for i in order],
        boxes.xyh[order],
        boxes.size[order],
        boxes.velocity[order],
    )


def is_synthetic_token(token: str) -> bool:
    """NAVSIM's rule: a synthetic (second-stage) scene token has 17 characters, a logged one 16."""
    return len(token) == SYNTHETIC_TOKEN_LENGTH


@dataclass(frozen=True)
class SyntheticScene:
    """A second-stage scene: the scene (token = ``initial_token``) and where it comes from."""

    scene: Scene
    scene_token: str  # the file name
    corresponding_original_scene: str  # the log frame it starts at (the last frame of its stage-one scene)
    corresponding_original_initial_token: str | None
    path: Path

    @property
    def token(self) -> str:
        return self.scene.token


def load_synthetic_scene_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """The raw dict of a synthetic scene pickle, nuPlan objects as :class:`ForeignObject` stand-ins."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidSceneError(f"{path}: cannot read synthetic scene ({error.strerror or error})") from None
    try:
        content = restricted_loads(data, ALLOWED_GLOBALS, "a synthetic scene holds only nuPlan tracks and lights")
    except ForbiddenGlobalError as error:
        raise InvalidSceneError(f"{path}: not a NAVSIM synthetic scene: {error}") from None
    except CORRUPT_PICKLE_ERRORS as error:
        raise InvalidSceneError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict):
        raise InvalidSceneError(f"{path}: expected a dict, got {type(content).__name__}")
    return content


def read_synthetic_scene(path: str | os.PathLike, sensor_root: str | os.PathLike | None = None) -> SyntheticScene:
    """Read one synthetic scene pickle into a :class:`SyntheticScene`; errors name the file and the field.

    The history frames' ``cameras`` map camera names (``CAM_F0`` ...) to the stored image paths, under
    ``sensor_root`` when given (NAVSIM: ``$OPENSCENE_DATA_ROOT/navhard_two_stage/sensor_blobs``); a camera the
    scene has no image for is absent.
    """
    path = Path(path)
    content = load_synthetic_scene_pickle(path)
    for key in ("scene_metadata", "frames", "extended_traffic_light_data", "extended_detections_tracks"):
        if key not in content:
            raise InvalidSceneError(f"{path}: key {key!r}: missing")
    metadata = content["scene_metadata"]
    if not isinstance(metadata, dict):
        raise InvalidSceneError(f"{path}: scene_metadata: expected a dict, got {type(metadata).__name__}")
    for key in ("log_name", "scene_token", "map_name", "initial_token", "corresponding_original_scene"):
        if not isinstance(metadata.get(key), str):
            raise InvalidSceneError(f"{path}: scene_metadata.{key}: expected a string, got {metadata.get(key)!r}")
    raw_frames = content["frames"]
    if not isinstance(raw_frames, list) or len(raw_frames) != NUM_HISTORY_FRAMES:
        raise InvalidSceneError(f"{path}: frames: expected {NUM_HISTORY_FRAMES} history frames")
    history = [_history_frame(frame, str(path), i, sensor_root) for i, frame in enumerate(raw_frames)]
    current = history[-1]
    if current.token != metadata["initial_token"]:
        raise InvalidSceneError(
            f"{path}: the current frame's token {current.token!r} is not the initial_token "
            f"{metadata['initial_token']!r}"
        )
    tracks, lights = content["extended_detections_tracks"], content["extended_traffic_light_data"]
    if not isinstance(tracks, list) or not isinstance(lights, list) or len(tracks) != len(lights):
        raise InvalidSceneError(f"{path}: extended detections and traffic lights must be lists of equal length")
    future = [
        Frame(
            token=f"{current.token}+{k + 1}",
            timestamp_us=current.timestamp_us + (k + 1) * FRAME_INTERVAL_US,
            ego=current.ego,
            boxes=_detections(detections, f"{path}: extended_detections_tracks[{k}]"),
            traffic_lights=_light_statuses(statuses, f"{path}: extended_traffic_light_data[{k}]"),
        )
        for k, (detections, statuses) in enumerate(zip(tracks, lights, strict=True))
    ]
    map_name = MAP_NAME_ALIASES.get(metadata["map_name"], metadata["map_name"])
    scene = Scene(current.token, metadata["log_name"], map_name, [*history, *future], NUM_HISTORY_FRAMES)
    return SyntheticScene(
        scene=scene,
        scene_token=metadata["scene_token"],
        corresponding_original_scene=metadata["corresponding_original_scene"],
        corresponding_original_initial_token=metadata.get("corresponding_original_initial_token"),
        path=path,
    )


def read_synthetic_scenes(
    folder: str | os.PathLike, sensor_root: str | os.PathLike | None = None
) -> tuple[dict[str, SyntheticScene], list[tuple[Path, str]]]:
    """Every ``*.pkl`` of a folder, keyed by token, and the (file, reason) of those that could not be read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidSceneError(f"{folder}: no such folder of synthetic scene pickles")
    scenes: dict[str, SyntheticScene] = {}
    problems: list[tuple[Path, str]] = []
    for path in sorted(folder.glob("*.pkl")):
        try:
            scene = read_synthetic_scene(path, sensor_root)
        except InvalidSceneError as error:
            problems.append((path, str(error)))
            continue
        scenes[scene.token] = scene
    return scenes, problems


def _history_frame(data: Any, source: str, index: int, sensor_root: str | os.PathLike | None) -> Frame:
    where = _Where(source, index)
    if not isinstance(data, dict):
        raise InvalidSceneError(f"{source}: frame {index}: expected a dict, got {type(data).__name__}")
    for key in ("token", "timestamp", "roadblock_ids", "traffic_lights", "annotations", "ego_status"):
        if key not in data:
            raise where.error(key, "missing")
    where.token = str(data["token"])
    status = data["ego_status"]
    annotations = data["annotations"]
    if not isinstance(status, dict) or not isinstance(annotations, dict):
        raise where.error("ego_status", "ego_status and annotations must be dicts")
    try:
        pose = np.asarray(status["ego_pose"], dtype=np.float64).reshape(3)
        velocity = np.asarray(status["ego_velocity"], dtype=np.float32).reshape(2)
        acceleration = np.asarray(status["ego_acceleration"], dtype=np.float32).reshape(2)
        command = np.asarray(status["driving_command"])
    except (KeyError, TypeError, ValueError) as error:
        raise where.error(
            "ego_status", f"expected ego_pose [3], ego_velocity [2], ego_acceleration [2] ({error})"
        ) from None
    if not status.get("in_global_frame", False):
        raise where.error("ego_status.in_global_frame", "a synthetic scene stores global ego poses")
    ego = EgoState(*(float(v) for v in pose), *(float(v) for v in velocity), *(float(v) for v in acceleration))
    ego = dataclasses.replace(ego, time_us=int(data["timestamp"]))
    renamed = {
        "gt_boxes": annotations.get("boxes"),
        "gt_names": annotations.get("names"),
        "gt_velocity_3d": annotations.get("velocity_3d"),
        "instance_tokens": annotations.get("instance_tokens"),
        "track_tokens": annotations.get("track_tokens"),
    }
    boxes = _annotations(renamed, where).to_global(ego.pose)
    return Frame(
        token=str(data["token"]),
        timestamp_us=int(data["timestamp"]),
        ego=ego,
        boxes=boxes,
        roadblock_ids=[str(r) for r in data["roadblock_ids"]],
        traffic_lights=_traffic_lights(data["traffic_lights"], where),
        driving_command=command,
        cameras=_camera_paths(data.get("camera_dict"), sensor_root, where),
    )


def _camera_paths(cameras: Any, sensor_root: str | os.PathLike | None, where: _Where) -> dict[str, str]:
    """``camera_dict`` ({cam_f0: {data_path, ...} or {}}) as {CAM_F0: image path}."""
    if cameras is None:
        return {}
    if not isinstance(cameras, dict):
        raise where.error("camera_dict", f"expected a dict, got {type(cameras).__name__}")
    paths = {}
    for name, spec in cameras.items():
        if isinstance(spec, dict) and spec.get("data_path"):
            relative = str(spec["data_path"])
            paths[str(name).upper()] = str(Path(sensor_root) / relative) if sensor_root is not None else relative
    return paths


def _field(obj: Any, name: str, where: str) -> Any:
    if not isinstance(obj, ForeignObject) or name not in obj.fields:
        raise InvalidSceneError(f"{where}: expected a nuPlan object with {name!r}, got {obj!r}")
    return obj.fields[name]


def _detections(detections: Any, where: str) -> Boxes:
    """Global boxes of a nuPlan ``DetectionsTracks`` (agents keep their velocity, static objects get none)."""
    objects = _field(_field(detections, "tracked_objects", where), "tracked_objects", where)
    tokens, types, xyh, size, velocity = [], [], [], [], []
    for i, obj in enumerate(objects):
        here = f"{where}: object {i}"
        kind = _field(obj, "_tracked_object_type", here)
        code = kind.args[0] if isinstance(kind, ForeignObject) and kind.args else None
        code = code[0] if isinstance(code, tuple) else code
        if code not in TRACKED_OBJECT_TYPES:
            raise InvalidSceneError(f"{here}: unknown TrackedObjectType {code!r}")
        box = _field(obj, "_box", here)
        center = _field(box, "_center", here)
        tokens.append(str(_field(_field(obj, "_metadata", here), "track_token", here)))
        types.append(TRACKED_OBJECT_TYPES[code])
        xyh.append([float(center.fields[k]) for k in ("x", "y", "heading")])
        size.append([float(box.fields[k]) for k in ("_length", "_width", "_height")])
        moving = obj.fields.get("_velocity")
        velocity.append([float(moving.fields["_x"]), float(moving.fields["_y"])] if moving is not None else [0.0, 0.0])
    return Boxes(tokens, types, np.array(xyh), np.array(size), np.array(velocity))


def _light_statuses(statuses: Any, where: str) -> list[tuple[str, bool]]:
    """(lane connector id, is red) of a nuPlan ``TrafficLightStatuses``."""
    lights = []
    for i, data in enumerate(_field(statuses, "traffic_lights", where)):
        status = _field(data, "status", f"{where}: light {i}")
        code = status.args[0] if isinstance(status, ForeignObject) and status.args else status
        lights.append((str(_field(data, "lane_connector_id", f"{where}: light {i}")), int(code) == RED))
    return lights
