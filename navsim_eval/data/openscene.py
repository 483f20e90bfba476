"""Reader for OpenScene / NAVSIM log pickles (``navsim_logs/<split>/<log_name>.pkl``): frame dicts to ``Frame``s.

A log is a pickled ``list`` of frame ``dict``s at 2 Hz (OpenScene v1.1, ``create_openscene_metadata.py``). Each frame
is validated strictly and decoded as NAVSIM decodes it (``navsim/common/dataclasses.py``,
``navsim/planning/scenario_builder/navsim_scenario_utils.py``):

* ego pose = (``ego2global_translation[0]``, ``[1]``, ``Quaternion(*ego2global_rotation).yaw_pitch_roll[0]``), the
  rear-axle pose; the yaw is computed with pyquaternion's float operations (:func:`quaternion_yaw`);
* ego velocity / acceleration = ``ego_dynamic_state[:2]`` / ``[2:]`` rounded to float32, as NAVSIM's ``EgoStatus``;
* annotation boxes (ego frame) to global: (x, y) rotated by the ego yaw and shifted by the ego position, heading
  ``normalize(normalize(h + yaw))``; agent velocities rotated by the ego yaw; static objects get no (zero) velocity.

Pickles are read with a restricted unpickler that resolves only plain builtins and numpy array / scalar
reconstruction: a log cannot run code or build arbitrary objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.pickle_io import BASE_GLOBALS, CORRUPT_PICKLE_ERRORS, ForbiddenGlobalError, restricted_loads
from navsim_eval.scene import Boxes, EgoState, Frame, ObjectType

CAMERA_NAMES = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")
REQUIRED_FRAME_KEYS = (
    "token",
    "timestamp",
    "log_name",
    "map_location",
    "roadblock_ids",
    "ego2global_translation",
    "ego2global_rotation",
    "ego_dynamic_state",
    "traffic_lights",
    "driving_command",
    "cams",
    "lidar_path",
)
ANNOTATION_KEYS = ("gt_boxes", "gt_names", "gt_velocity_3d", "instance_tokens", "track_tokens")
CAMERA_KEYS = ("data_path", "sensor2lidar_rotation", "sensor2lidar_translation", "cam_intrinsic", "distortion")
# NavSimScenario maps this legacy location name before building the map API.
MAP_NAME_ALIASES = {"las_vegas": "us-nv-las-vegas-strip"}
_OBJECT_TYPES = {t.value: t for t in ObjectType}


# ------------------------------------------------------------------------------------------------ pickle


def load_log_pickle(path: str | Path) -> list[dict[str, Any]]:
    """The raw frame dicts of one log pickle, with only the container checked (a list of dicts).

    Truncated, corrupt or non-list pickles and pickles that reference other classes raise
    :class:`InvalidSceneError` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidSceneError(f"{path}: cannot read log pickle ({error.strerror or error})") from None
    try:
        frames = restricted_loads(data, BASE_GLOBALS, "a log holds only builtins and numpy arrays")
    except ForbiddenGlobalError as error:
        raise InvalidSceneError(f"{path}: not an OpenScene log pickle: {error}") from None
    except CORRUPT_PICKLE_ERRORS as error:
        raise InvalidSceneError(f"{path}: truncated or corrupt log pickle ({type(error).__name__}: {error})") from None
    if not isinstance(frames, list):
        raise InvalidSceneError(f"{path}: expected a list of frame dicts, got {type(frames).__name__}")
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise InvalidSceneError(f"{path}: frame {index}: expected a dict, got {type(frame).__name__}")
    return frames


# ------------------------------------------------------------------------------------------------ geometry


def quaternion_yaw(quaternion: Sequence[float] | np.ndarray) -> float:
    """Yaw of a [w, x, y, z] quaternion with pyquaternion's exact float operations (``yaw_pitch_roll[0]``).

    pyquaternion converts the elements with ``float``, normalises only when ``|1 - q.q| >= 1e-14`` and computes
    ``arctan2(2 (w z - x y), 1 - 2 (y^2 + z^2))``.
    """
    q = np.asarray([float(e) for e in quaternion])
    sum_of_squares = np.dot(q, q)
    if not abs(1.0 - sum_of_squares) < 1e-14:
        norm = math.sqrt(sum_of_squares)
        if norm > 0:
            q = q / norm
    return float(np.arctan2(2 * (q[0] * q[3] - q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2)))


def normalize_angle(angle: np.ndarray | float) -> np.ndarray:
    """NAVSIM's ``normalize_angle``: ``arctan2(sin, cos)`` into [-pi, pi]."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def ego_to_global(
    local_xyh: np.ndarray, local_velocity: np.ndarray, ego_pose: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 3] (x, y, heading) and velocities [N, 2] from the ego frame to global, as NAVSIM's
    ``gt_boxes_oriented_box`` / ``rotate_vector`` (same operations in the same order)."""
    ego_x, ego_y, ego_heading = (np.float64(v) for v in ego_pose)
    sin, cos = np.sin(ego_heading), np.cos(ego_heading)
    x, y, heading = local_xyh[:, 0], local_xyh[:, 1], local_xyh[:, 2]
    global_xyh = np.stack(
        [
            (x * cos - y * sin) + ego_x,
            (x * sin + y * cos) + ego_y,
            normalize_angle(normalize_angle(heading + ego_heading)),
        ],
        axis=-1,
    )
    vx, vy = local_velocity[:, 0], local_velocity[:, 1]
    global_velocity = np.stack([vx * cos - vy * sin, vx * sin + vy * cos], axis=-1)
    return global_xyh, global_velocity


# ------------------------------------------------------------------------------------------------ dataclasses


@dataclass(frozen=True)
class Camera:
    """One camera of a frame: the image blob path (relative to the sensor root) and its calibration."""

    name: str
    data_path: str
    sensor2lidar_rotation: np.ndarray  # [3, 3]
    sensor2lidar_translation: np.ndarray  # [3]
    intrinsics: np.ndarray  # [3, 3]
    distortion: np.ndarray  # [K]

    def path(self, sensor_root: str | Path) -> Path:
        """Absolute image path under ``sensor_root`` (``sensor_blobs/<split>``)."""
        return Path(sensor_root) / self.data_path


@dataclass(frozen=True)
class Annotations:
    """A frame's object annotations as stored (ego frame), like NAVSIM's ``Annotations``."""

    boxes: np.ndarray  # [N, 7] x, y, z, length, width, height, heading (heading = yaw - ego yaw, not wrapped)
    names: list[str]
    velocity_3d: np.ndarray  # [N, 3]
    instance_tokens: list[str]
    track_tokens: list[str]

    def __len__(self) -> int:
        return len(self.track_tokens)

    @classmethod
    def empty(cls) -> Annotations:
        return cls(np.zeros((0, 7)), [], np.zeros((0, 3)), [], [])

    def to_global(self, ego_pose: Sequence[float]) -> Boxes:
        """Global :class:`Boxes` (tokens = track tokens); static classes get zero velocity (NAVSIM: none)."""
        types = [_OBJECT_TYPES[name] for name in self.names]
        xyh, velocity = ego_to_global(self.boxes[:, [0, 1, 6]], self.velocity_3d[:, :2], ego_pose)
        is_agent = np.array([t.is_agent for t in types], dtype=bool)
        velocity[~is_agent] = 0.0
        return Boxes(list(self.track_tokens), types, xyh, self.boxes[:, 3:6].copy(), velocity)


@dataclass(frozen=True)
class LogFrame:
    """One validated frame of a log: the stored dict, the decoded :class:`Frame` and what ``Frame`` leaves out."""

    data: dict[str, Any]  # the frame dict as stored (not copied: treat as read-only)
    frame: Frame
    cameras: dict[str, Camera]
    annotations: Annotations | None  # None when the log has no ``anns`` (OpenScene ``--is-test``)
    source: str = ""
    index: int = 0

    @property
    def token(self) -> str:
        return self.frame.token

    @property
    def log_name(self) -> str:
        return self.data["log_name"]

    @property
    def map_location(self) -> str:
        return self.data["map_location"]

    @property
    def map_name(self) -> str:
        """The map location NAVSIM opens (``las_vegas`` is an alias of ``us-nv-las-vegas-strip``)."""
        return MAP_NAME_ALIASES.get(self.map_location, self.map_location)

    @property
    def scene_token(self) -> str | None:
        return self.data.get("scene_token")

    @property
    def lidar_path(self) -> str:
        return self.data["lidar_path"]


# ------------------------------------------------------------------------------------------------ validation


class _Where:
    """Names the file, frame and key in every error message."""

    __slots__ = ("index", "source", "token")

    def __init__(self, source: str, index: int, token: str | None = None) -> None:
        self.source, self.index, self.token = source, index, token

    def error(self, key: str, message: str) -> InvalidSceneError:
        frame = f"frame {self.index}" + (f" (token {self.token})" if self.token else "")
        return InvalidSceneError(f"{self.source}: {frame}: key {key!r}: {message}")


def _require(data: Mapping[str, Any], key: str, where: _Where, prefix: str = "") -> Any:
    if key not in data:
        raise where.error(prefix + key, "missing")
    return data[key]


def _string(value: Any, key: str, where: _Where, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise where.error(key, f"expected a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise where.error(key, "expected a non-empty string")
    return str(value)


def _string_list(value: Any, key: str, where: _Where) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size else []
    if not isinstance(value, list | tuple):
        raise where.error(key, f"expected a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise where.error(key, f"expected a list of strings, found {type(item).__name__} {item!r}")
    return [str(item) for item in value]


def _array(value: Any, shape: tuple[int | None, ...], key: str, where: _Where, finite: bool = True) -> np.ndarray:
    """A float64 array of the given shape (``None`` = any length); ``finite`` rejects NaN and infinities."""
    if type(value) is np.ndarray and value.dtype == np.float64:
        array = value  # the common case, kept fast
    else:
        if isinstance(value, str | bytes | dict) or value is None:
            kind = type(value).__name__
            raise where.error(key, f"expected a numeric array of shape {_shape_text(shape)}, got {kind}")
        try:
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise TypeError(f"dtype {array.dtype}")
            array = array.astype(np.float64, copy=False)
        except (TypeError, ValueError) as error:
            raise where.error(key, f"expected a numeric array of shape {_shape_text(shape)} ({error})") from None
    if array.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, array.shape, strict=True)):
        raise where.error(key, f"expected shape {_shape_text(shape)}, got {list(array.shape)}")
    if finite and not np.isfinite(array).all():
        raise where.error(key, "contains NaN or infinite values")
    return array


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("N" if n is None else str(n) for n in shape) + "]"


def _integer(value: Any, key: str, where: _Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise where.error(key, f"expected an integer, got {type(value).__name__}")
    return int(value)


def _traffic_lights(value: Any, where: _Where) -> list[tuple[str, bool]]:
    key = "traffic_lights"
    if not isinstance(value, list | tuple):
        raise where.error(key, f"expected a list of (lane_connector_id, is_red) pairs, got {type(value).__name__}")
    lights: list[tuple[str, bool]] = []
    for i, item in enumerate(value):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise where.error(key, f"entry {i}: expected a (lane_connector_id, is_red) pair, got {item!r}")
        lane_id, is_red = item
        if isinstance(lane_id, bool) or not isinstance(lane_id, int | np.integer | str):
            raise where.error(key, f"entry {i}: lane_connector_id must be an int or str, got {lane_id!r}")
        if not isinstance(is_red, bool | np.bool_):
            raise where.error(key, f"entry {i}: is_red must be a bool, got {is_red!r}")
        lights.append((str(lane_id), bool(is_red)))
    return lights


def _cameras(value: Any, where: _Where) -> dict[str, Camera]:
    if not isinstance(value, dict):
        raise where.error("cams", f"expected a dict of cameras, got {type(value).__name__}")
    missing = [name for name in CAMERA_NAMES if name not in value]
    if missing:
        raise where.error("cams", f"missing cameras {missing} (expected all of {list(CAMERA_NAMES)})")
    cameras: dict[str, Camera] = {}
    for name, spec in value.items():
        prefix = f"cams.{name}."
        if not isinstance(spec, dict):
            raise where.error(f"cams.{name}", f"expected a dict, got {type(spec).__name__}")
        for key in CAMERA_KEYS:
            _require(spec, key, where, prefix)
        cameras[str(name)] = Camera(
            name=str(name),
            data_path=_string(spec["data_path"], prefix + "data_path", where),
            sensor2lidar_rotation=_array(
                spec["sensor2lidar_rotation"], (3, 3), prefix + "sensor2lidar_rotation", where
            ),
            sensor2lidar_translation=_array(
                spec["sensor2lidar_translation"], (3,), prefix + "sensor2lidar_translation", where
            ),
            intrinsics=_array(spec["cam_intrinsic"], (3, 3), prefix + "cam_intrinsic", where),
            distortion=_array(spec["distortion"], (None,), prefix + "distortion", where),
        )
    return cameras


def _annotations(value: Any, where: _Where) -> Annotations:
    if not isinstance(value, dict):
        raise where.error("anns", f"expected a dict, got {type(value).__name__}")
    for key in ANNOTATION_KEYS:
        _require(value, key, where, "anns.")
    boxes = _array(value["gt_boxes"], (None, 7), "anns.gt_boxes", where)
    n = boxes.shape[0]
    raw_names = value["gt_names"]
    if isinstance(raw_names, np.ndarray) and raw_names.size == 0:
        names: list[str] = []  # OpenScene stores an empty float64 array when a frame has no boxes
    else:
        names = _string_list(raw_names, "anns.gt_names", where)
    velocity = _array(value["gt_velocity_3d"], (None, 3), "anns.gt_velocity_3d", where, finite=False)
    instance_tokens = _string_list(value["instance_tokens"], "anns.instance_tokens", where)
    track_tokens = _string_list(value["track_tokens"], "anns.track_tokens", where)
    lengths = {
        "gt_boxes": n,
        "gt_names": len(names),
        "gt_velocity_3d": velocity.shape[0],
        "instance_tokens": len(instance_tokens),
        "track_tokens": len(track_tokens),
    }
    if len(set(lengths.values())) != 1:
        raise where.error("anns", f"annotation columns differ in length: {lengths}")
    unknown = sorted({name for name in names if name not in _OBJECT_TYPES})
    if unknown:
        raise where.error("anns.gt_names", f"unknown classes {unknown}; expected one of {sorted(_OBJECT_TYPES)}")
    if len(set(track_tokens)) != n:
        raise where.error("anns.track_tokens", "a track token appears twice")
    agent = np.array([_OBJECT_TYPES[name].is_agent for name in names], dtype=bool)
    if n and not np.all(np.isfinite(velocity[agent, :2])):
        raise where.error("anns.gt_velocity_3d", "an agent (vehicle, pedestrian, bicycle) has a NaN/inf velocity")
    return Annotations(boxes, names, velocity, instance_tokens, track_tokens)


def decode_frame(
    data: Mapping[str, Any],
    *,
    source: str = "<frame>",
    index: int = 0,
    sensor_root: str | Path | None = None,
    require_annotations: bool = True,
) -> LogFrame:
    """Validate one OpenScene frame dict and decode it as NAVSIM does; errors name ``source``, ``index`` and the key.

    ``Frame.cameras`` maps camera names to image paths: ``sensor_root / data_path`` when ``sensor_root`` is given,
    else the stored relative ``data_path``. ``require_annotations=False`` accepts logs without ``anns`` (test
    logs built with ``--is-test``); their frames have no boxes.
    """
    where = _Where(source, index)
    if not isinstance(data, dict):
        raise InvalidSceneError(f"{source}: frame {index}: expected a dict, got {type(data).__name__}")
    for key in REQUIRED_FRAME_KEYS:
        _require(data, key, where)
    token = _string(data["token"], "token", where)
    where.token = token
    timestamp = _integer(data["timestamp"], "timestamp", where)
    if timestamp < 0:
        raise where.error("timestamp", f"expected microseconds >= 0, got {timestamp}")
    _string(data["log_name"], "log_name", where)
    _string(data["map_location"], "map_location", where)
    _string(data["lidar_path"], "lidar_path", where, allow_empty=True)
    scene_token = data.get("scene_token")
    if scene_token is not None and not isinstance(scene_token, str):
        raise where.error("scene_token", f"expected a string, got {type(scene_token).__name__}")
    roadblock_ids = _string_list(data["roadblock_ids"], "roadblock_ids", where)
    translation = _array(data["ego2global_translation"], (3,), "ego2global_translation", where)
    rotation = _array(data["ego2global_rotation"], (4,), "ego2global_rotation", where)
    if not np.any(rotation):
        raise where.error("ego2global_rotation", "zero quaternion (expected [w, x, y, z] of unit length)")
    dynamics = _array(data["ego_dynamic_state"], (4,), "ego_dynamic_state", where)
    command = _array(data["driving_command"], (4,), "driving_command", where)
    traffic_lights = _traffic_lights(data["traffic_lights"], where)
    cameras = _cameras(data["cams"], where)

    # NAVSIM: pose float64 from the stored values; velocity / acceleration through float32 (EgoStatus).
    heading = quaternion_yaw(data["ego2global_rotation"])
    vx, vy, ax, ay = (float(v) for v in dynamics.astype(np.float32))
    ego = EgoState(float(translation[0]), float(translation[1]), heading, vx, vy, ax, ay, time_us=timestamp)

    if "anns" in data:
        annotations: Annotations | None = _annotations(data["anns"], where)
    elif require_annotations:
        raise where.error("anns", "missing (pass require_annotations=False for logs without annotations)")
    else:
        annotations = None
    boxes = annotations.to_global(ego.pose) if annotations is not None else Boxes.empty()

    raw_command = np.asarray(data["driving_command"])
    frame = Frame(
        token=token,
        timestamp_us=timestamp,
        ego=ego,
        boxes=boxes,
        roadblock_ids=roadblock_ids,
        traffic_lights=traffic_lights,
        driving_command=raw_command.copy() if raw_command.dtype.kind in "biu" else command,
        cameras={
            name: str(camera.path(sensor_root)) if sensor_root is not None else camera.data_path
            for name, camera in cameras.items()
        },
    )
    return LogFrame(data=dict(data), frame=frame, cameras=cameras, annotations=annotations, source=source, index=index)


def read_log(
    path: str | Path, *, sensor_root: str | Path | None = None, require_annotations: bool = True
) -> list[LogFrame]:
    """Read and decode every frame of a log pickle; the first invalid frame raises :class:`InvalidSceneError`."""
    path = Path(path)
    return [
        decode_frame(data, source=str(path), index=i, sensor_root=sensor_root, require_annotations=require_annotations)
        for i, data in enumerate(load_log_pickle(path))
    ]
