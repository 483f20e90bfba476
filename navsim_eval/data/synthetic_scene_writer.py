"""Writer of NAVSIM synthetic scene pickles: the inverse of :mod:`navsim_eval.data.synthetic_scenes`.

A :class:`SyntheticScene` (4 history frames, 8 future frames) is written in the layout ``Scene.save_to_disk`` of
NAVSIM ``main`` produces: plain dicts and numpy arrays for the history frames (boxes back in the ego frame, as the
logs store them), and the future as nuPlan ``DetectionsTracks`` / ``TrafficLightStatuses`` objects with the fields
the official classes have, pickled under their official class paths through :mod:`navsim_eval.pickle_io` (NumPy 1.x
paths, no nuPlan needed here). The official loader reads the files, and so does ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from navsim_eval.data.openscene import CAMERA_NAMES
from navsim_eval.data.openscene_writer import global_to_ego
from navsim_eval.data.synthetic_scenes import FOREIGN, RED, TRACKED_OBJECT_TYPES, SyntheticScene, sorted_by_type
from navsim_eval.errors import InvalidSceneError
from navsim_eval.pickle_io import ForeignObject, write_pickle
from navsim_eval.scene import Boxes, Frame

_TYPE_CODE = {kind: code for code, kind in TRACKED_OBJECT_TYPES.items()}
_GREEN = 0
_NUPLAN = {name: cls for (_, name), cls in FOREIGN.items()}


def _make(name: str, state=None, args: tuple = ()) -> ForeignObject:
    return _NUPLAN[name].make(state, args)


def _slots(name: str, **values) -> ForeignObject:
    """A slotted nuPlan value class (its pickled state is ``(None, slots)``)."""
    return _make(name, (None, values))


def _vector(x: float, y: float) -> ForeignObject:
    return _slots("StateVector2D", _x=np.float64(x), _y=np.float64(y), _array=np.array([x, y], dtype=np.float64))


def _tracked_object(boxes: Boxes, index: int, timestamp_us: int) -> ForeignObject:
    kind = boxes.types[index]
    x, y, heading = (np.float64(v) for v in boxes.xyh[index])
    length, width, height = (np.float64(v) for v in boxes.size[index])
    box = _make(
        "OrientedBox",
        {
            "_center": _slots("StateSE2", x=x, y=y, heading=heading),
            "_length": length,
            "_width": width,
            "_height": height,
        },
    )
    metadata = _make(
        "SceneObjectMetadata",
        {
            "timestamp_us": int(timestamp_us),
            "token": boxes.tokens[index],
            "track_id": None,
            "track_token": boxes.tokens[index],
            "category_name": None,
        },
    )
    object_type = _make("TrackedObjectType", args=(_TYPE_CODE[kind],))
    if kind.is_agent:
        return _make(
            "Agent",
            {
                "_initial_time_stamp": _slots("TimePoint", time_us=int(timestamp_us)),
                "_predictions": [],
                "_past_trajectory": None,
                "_metadata": metadata,
                "instance_token": None,
                "_tracked_object_type": object_type,
                "_box": box,
                "_velocity": _vector(*boxes.velocity[index]),
                "_angular_velocity": None,
            },
        )
    return _make(
        "StaticObject",
        {
            "_metadata": metadata,
            "instance_token": None,
            "_tracked_object_type": object_type,
            "_box": box,
            "predictions": None,
            "past_trajectory": None,
            "velocity": _vector(0.0, 0.0),
        },
    )


def _detections(frame: Frame) -> ForeignObject:
    boxes = sorted_by_type(frame.boxes)  # as TrackedObjects keeps them
    objects = [_tracked_object(boxes, i, frame.timestamp_us) for i in range(len(boxes))]
    return _make("DetectionsTracks", {"tracked_objects": _make("TrackedObjects", {"tracked_objects": objects})})


def _lights(frame: Frame) -> ForeignObject:
    data = [
        _make(
            "TrafficLightStatusData",
            {
                "status": _make("TrafficLightStatusType", args=(RED if is_red else _GREEN,)),
                "lane_connector_id": int(lane_id),
                "timestamp": _slots("TimePoint", time_us=int(frame.timestamp_us)),
            },
        )
        for lane_id, is_red in frame.traffic_lights
    ]
    return _make("TrafficLightStatuses", {"traffic_lights": data})


def _history_frame(frame: Frame) -> dict:
    ego = frame.ego
    boxes = frame.boxes
    local_xyh, local_velocity = global_to_ego(boxes.xyh, boxes.velocity, ego.pose)
    n = len(boxes)
    gt_boxes = np.concatenate([local_xyh[:, :2], np.zeros((n, 1)), boxes.size, local_xyh[:, 2:3]], axis=1)
    return {
        "token": frame.token,
        "timestamp": int(frame.timestamp_us),
        "roadblock_ids": [str(r) for r in frame.roadblock_ids],
        "traffic_lights": [(int(i) if str(i).isdigit() else str(i), bool(red)) for i, red in frame.traffic_lights],
        "annotations": {
            "boxes": gt_boxes,
            "names": [kind.value for kind in boxes.types],
            "velocity_3d": np.concatenate([local_velocity, np.zeros((n, 1))], axis=1),
            "instance_tokens": list(boxes.tokens),
            "track_tokens": list(boxes.tokens),
        },
        "ego_status": {
            "ego_pose": np.array(ego.pose, dtype=np.float64),
            "ego_velocity": np.array([ego.vx, ego.vy], dtype=np.float32),
            "ego_acceleration": np.array([ego.ax, ego.ay], dtype=np.float32),
            "driving_command": np.asarray(frame.driving_command).astype(np.int64),
            "in_global_frame": True,
        },
        "lidar_path": None,
        # data_path relative to the synthetic split's sensor_blobs (only the calibration-free part of the official
        # entry: enough for readers of the images, not for the official camera-geometry code)
        "camera_dict": {
            name.lower(): ({"data_path": frame.cameras[name]} if name in frame.cameras else {}) for name in CAMERA_NAMES
        },
    }


def synthetic_scene_dict(synthetic: SyntheticScene) -> dict:
    """The dict ``Scene.save_to_disk`` pickles for a synthetic scene."""
    scene = synthetic.scene
    if scene.num_history != 4 or len(scene.frames) != 12:
        raise InvalidSceneError(f"synthetic scene {scene.token}: expected 4 history and 8 future frames")
    future = scene.future_frames
    return {
        "scene_metadata": {
            "log_name": scene.log_name,
            "scene_token": synthetic.scene_token,
            "map_name": scene.map_name,
            "initial_token": scene.token,
            "num_history_frames": scene.num_history,
            "num_future_frames": 0,
            "corresponding_original_scene": synthetic.corresponding_original_scene,
            "corresponding_original_initial_token": synthetic.corresponding_original_initial_token,
        },
        "frames": [_history_frame(frame) for frame in scene.frames[: scene.num_history]],
        "extended_traffic_light_data": [_lights(frame) for frame in future],
        "extended_detections_tracks": [_detections(frame) for frame in future],
    }


def write_synthetic_scene(folder: str | os.PathLike, synthetic: SyntheticScene) -> Path:
    """Write ``<folder>/<scene_token>.pkl`` atomically; returns the path."""
    return write_pickle(Path(folder) / f"{synthetic.scene_token}.pkl", synthetic_scene_dict(synthetic))
