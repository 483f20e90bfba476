"""Writer of OpenScene / NAVSIM log pickles: the inverse of :mod:`navsim_eval.data.openscene`.

Used by the synthetic world and by tests. Frame dicts and :class:`LogFrame`s are written as they are: reading
them back is exact. A :class:`Frame` is encoded with every key of ``create_openscene_metadata.py`` and the same
types (numpy arrays, lists, int lane-connector ids); its global boxes go back to the ego frame, as OpenScene
stores them, with a corrected inverse (the encoder runs the reader's forward transform and nudges the stored
values by a few ulps where plain inversion rounds differently). Reading a written ``Frame`` gives back

* ego positions, sizes, tokens, types, routes, lights and commands exactly;
* ego velocity / acceleration rounded to float32 (NAVSIM reads them so);
* box positions, velocities and headings and the ego yaw exactly when the reader can produce the value, else
  about one ulp (of the vector's length) off: a global box heading is ``normalize(normalize(local + ego_yaw))``,
  a velocity a rotated pair, and some doubles are no such result; likewise a few ego yaws near +-pi/2 are no
  pure-yaw quaternion's yaw.

Frames read from a log are canonical: writing them again reproduces them bit for bit (in tests of 50 000
random reader-produced boxes, all positions and headings and all but about 0.02 % of the velocities; those miss
by one ulp). :func:`canonical_frames` gives the canonical form of generated frames without a file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.data.openscene import (
    CAMERA_NAMES,
    Camera,
    LogFrame,
    decode_frame,
    normalize_angle,
    quaternion_yaw,
)
from navsim_eval.data.paths import log_pickle_path
from navsim_eval.errors import InvalidSceneError
from navsim_eval.pickle_io import write_pickle
from navsim_eval.scene import Frame

_NUDGES = 4  # ulps tried on each side when a corrected inverse still rounds differently

# Rough nuPlan rig: camera yaw (deg, left positive) about the lidar z axis; images are 1920 x 1080.
_CAMERA_YAW_DEG = {
    "CAM_F0": 0.0,
    "CAM_L0": 55.0,
    "CAM_L1": 110.0,
    "CAM_L2": 160.0,
    "CAM_R0": -55.0,
    "CAM_R1": -110.0,
    "CAM_R2": -160.0,
    "CAM_B0": 180.0,
}
_INTRINSICS = np.array([[1545.0, 0.0, 960.0], [0.0, 1545.0, 560.0], [0.0, 0.0, 1.0]])


def camera_rig() -> dict[str, Camera]:
    """A plausible 8-camera calibration (synthetic, not nuPlan's values) with empty ``data_path``s."""
    # Camera axes (x right, y down, z forward) in lidar axes (x forward, y left, z up) at yaw 0.
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    rig = {}
    for name in CAMERA_NAMES:
        yaw = np.deg2rad(_CAMERA_YAW_DEG[name])
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        rig[name] = Camera(
            name=name,
            data_path="",
            sensor2lidar_rotation=rz @ base,
            sensor2lidar_translation=rz @ np.array([1.0, 0.0, 1.6]) - np.array([1.0, 0.0, 0.0]),
            intrinsics=_INTRINSICS.copy(),
            distortion=np.zeros(5),
        )
    return rig


def camera_blob_path(log_name: str, camera_name: str, frame_token: str) -> str:
    """Default relative image path ``<log>/<CAM>/<token>.jpg`` (nuPlan names images by image token)."""
    return f"{log_name}/{camera_name}/{frame_token}.jpg"


def lidar_blob_path(log_name: str, frame_token: str) -> str:
    """Default relative point-cloud path ``<log>/MergedPointCloud/<token>.pcd``."""
    return f"{log_name}/MergedPointCloud/{frame_token}.pcd"


# ------------------------------------------------------------------------------------------------ exact inverses


@functools.cache
def _steps(radius: int) -> np.ndarray:
    """-radius .. radius, nearest first."""
    return np.array(sorted(range(-radius, radius + 1), key=abs), dtype=np.float64)


@functools.cache
def _offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (i, j) in [-radius, radius]^2, nearest first, as two arrays."""
    pairs = sorted(
        ((i, j) for i in range(-radius, radius + 1) for j in range(-radius, radius + 1)),
        key=lambda ij: (abs(ij[0]) + abs(ij[1]), ij),
    )
    return np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=np.float64)


def _first_hits(hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a [M, K] boolean matrix with a hit, and the column of each row's first hit."""
    rows = np.flatnonzero(hit.any(axis=1))
    return rows, hit[rows].argmax(axis=1)


def _solve_pair(
    forward: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    target: tuple[np.ndarray, np.ndarray],
    guess: tuple[np.ndarray, np.ndarray],
    correct: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (a, b) with ``forward(a, b) == target`` bit for bit where corrections or a local search find one.

    ``forward`` and ``correct`` are elementwise (they close over scalars only), so they broadcast over candidates.
    """
    a, b = guess[0].copy(), guess[1].copy()
    for _ in range(4):
        fa, fb = forward(a, b)
        ra, rb = target[0] - fa, target[1] - fb
        bad = (ra != 0) | (rb != 0)
        if not bad.any():
            return a, b
        da, db = correct(ra, rb)
        a, b = np.where(bad, a + da, a), np.where(bad, b + db, b)
    fa, fb = forward(a, b)
    bad = np.flatnonzero((fa != target[0]) | (fb != target[1]))
    # Nudge by the components' own ulps, then by fractions of the larger component's ulp: the smaller component
    # may need many of its own ulps to move the rotated sum by one ulp.
    own_a, own_b = np.spacing(np.abs(a)), np.spacing(np.abs(b))
    shared = np.maximum(own_a, own_b) / 8.0
    levels = ((own_a, own_b), (own_a, shared), (shared, own_b), (shared, shared))
    for unit_a, unit_b in levels:
        if bad.size == 0:
            break
        i, j = _offsets(2 * _NUDGES)
        ta = a[bad, None] + i[None, :] * unit_a[bad, None]
        tb = b[bad, None] + j[None, :] * unit_b[bad, None]
        fa, fb = forward(ta, tb)
        hit = (fa == target[0][bad, None]) & (fb == target[1][bad, None])
        rows, cols = _first_hits(hit)
        a[bad[rows]], b[bad[rows]] = ta[rows, cols], tb[rows, cols]
        bad = np.delete(bad, rows)
    return a, b  # where nothing was found: off by about one ulp of the target


def global_to_ego(
    global_xyh: np.ndarray, global_velocity: np.ndarray, ego_pose: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Global boxes [N, 3] and velocities [N, 2] to the ego frame such that :func:`ego_to_global` returns them.

    Headings stay unwrapped (``yaw - ego yaw``), as OpenScene stores them.
    """
    global_xyh = np.asarray(global_xyh, dtype=np.float64).reshape(-1, 3)
    global_velocity = np.asarray(global_velocity, dtype=np.float64).reshape(-1, 2)
    ego_x, ego_y, ego_heading = (np.float64(v) for v in ego_pose)
    sin, cos = np.sin(ego_heading), np.cos(ego_heading)

    def rotate_back(dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dx * cos + dy * sin, -dx * sin + dy * cos

    def position(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x * cos - y * sin) + ego_x, (x * sin + y * cos) + ego_y

    def velocity(vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return vx * cos - vy * sin, vx * sin + vy * cos

    gx, gy, gh = global_xyh[:, 0], global_xyh[:, 1], global_xyh[:, 2]
    x, y = _solve_pair(position, (gx, gy), rotate_back(gx - ego_x, gy - ego_y), rotate_back)
    gvx, gvy = global_velocity[:, 0], global_velocity[:, 1]
    vx, vy = _solve_pair(velocity, (gvx, gvy), rotate_back(gvx, gvy), rotate_back)

    h = _solve_heading(gh, ego_heading)
    return np.stack([x, y, h], axis=-1), np.stack([vx, vy], axis=-1)


def _solve_heading(target: np.ndarray, ego_heading: np.float64) -> np.ndarray:
    """Local headings h with ``normalize(normalize(h + ego_heading)) == target`` where one exists nearby.

    Searches sums s near ``target`` that the double normalisation maps onto it, then h with ``h + ego_heading == s``.
    A target that no s maps onto (possible for headings not produced by the reader) keeps ``target - ego_heading``.
    """
    h = target - ego_heading
    bad = np.flatnonzero(normalize_angle(normalize_angle(h + ego_heading)) != target)
    if bad.size == 0:
        return h
    # The reader's sum may lie a turn away from the target (it wraps), so try sums near target + 2 pi m too.
    base = target[bad, None] + np.array([0.0, 2.0 * np.pi, -2.0 * np.pi])[None, :]  # [M, 3]
    sums = (base[:, :, None] + _steps(_NUDGES)[None, None, :] * np.spacing(np.abs(base))[:, :, None]).reshape(
        bad.size, -1
    )
    usable = normalize_angle(normalize_angle(sums)) == target[bad, None]
    local = sums - ego_heading
    candidates = local[:, :, None] + _steps(_NUDGES // 2)[None, None, :] * np.spacing(np.abs(local))[:, :, None]
    hit = (usable[:, :, None] & (candidates + ego_heading == sums[:, :, None])).reshape(bad.size, -1)
    rows, cols = _first_hits(hit)
    h[bad[rows]] = candidates.reshape(bad.size, -1)[rows, cols]
    return h


def yaw_to_quaternion(yaw: float) -> np.ndarray:
    """A [w, 0, 0, z] quaternion whose :func:`quaternion_yaw` is ``yaw`` bit for bit where a few ulp nudges allow."""
    yaw = float(yaw)
    w0, z0 = np.cos(yaw / 2.0), np.sin(yaw / 2.0)
    i, j = _offsets(2 * _NUDGES)
    w, z = w0 + i * np.spacing(abs(w0)), z0 + j * np.spacing(abs(z0))
    # Vectorised pyquaternion formula (x = y = 0, no normalisation near unit length) to rank candidates; the scalar
    # function confirms the pick.
    for k in np.flatnonzero(np.arctan2(2 * (w * z), 1 - 2 * (z * z)) == yaw)[:8]:
        quaternion = np.array([w[k], 0.0, 0.0, z[k]])
        if quaternion_yaw(quaternion) == yaw:
            return quaternion
    return np.array([w0, 0.0, 0.0, z0])


def _rotation_matrix(quaternion: np.ndarray) -> np.ndarray:
    """3x3 rotation of a unit [w, x, y, z] quaternion."""
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# ------------------------------------------------------------------------------------------------ encoding


def encode_frame(
    frame: Frame,
    *,
    log_name: str,
    map_location: str,
    frame_idx: int = 0,
    scene_token: str | None = None,
    cameras: Mapping[str, Camera] | None = None,
    lidar_path: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An OpenScene frame dict for ``frame`` with the key order and types of ``create_openscene_metadata.py``.

    ``cameras`` gives the calibration (default :func:`camera_rig`); image paths come from ``frame.cameras`` or
    default to :func:`camera_blob_path`. Boxes without a z get z = 0. ``extra`` keys are added last (overriding).
    """
    ego = frame.ego
    rotation = yaw_to_quaternion(ego.heading)
    heading = quaternion_yaw(rotation)  # what the reader will use (equal to ego.heading unless a nudge failed)
    translation = np.array([ego.x, ego.y, 0.0])
    ego2global = np.eye(4)
    ego2global[:3, :3] = _rotation_matrix(rotation)
    ego2global[:3, 3] = translation
    lidar2ego = np.eye(4)
    rig = dict(cameras) if cameras is not None else camera_rig()
    missing = [name for name in CAMERA_NAMES if name not in rig]
    if missing:
        raise InvalidSceneError(f"encode_frame: camera calibration missing for {missing}")

    boxes = frame.boxes
    local_xyh, local_velocity = global_to_ego(boxes.xyh, boxes.velocity, (ego.x, ego.y, heading))
    n = len(boxes)
    gt_boxes = np.concatenate([local_xyh[:, :2], np.zeros((n, 1)), boxes.size, local_xyh[:, 2:3]], axis=1)
    names = [t.value for t in boxes.types]
    command = np.asarray(frame.driving_command)
    if command.dtype.kind == "f" and np.array_equal(command, np.round(command)):
        command = command.astype(np.int64)
    can_bus = np.zeros(18)
    can_bus[0:3], can_bus[3:7] = translation, rotation
    can_bus[7:9], can_bus[10:12] = (ego.ax, ego.ay), (ego.vx, ego.vy)

    data: dict[str, Any] = {
        "token": frame.token,
        "frame_idx": int(frame_idx),
        "timestamp": int(frame.timestamp_us),
        "log_name": log_name,
        "log_token": log_name,
        "scene_name": f"log-0000-{scene_token or log_name}",
        "scene_token": scene_token if scene_token is not None else log_name,
        "map_location": map_location,
        "roadblock_ids": [str(r) for r in frame.roadblock_ids],
        "vehicle_name": "synthetic",
        "can_bus": can_bus,
        "lidar_path": lidar_path if lidar_path is not None else lidar_blob_path(log_name, frame.token),
        "lidar2ego_translation": np.zeros(3),
        "lidar2ego_rotation": [1.0, 0.0, 0.0, 0.0],
        "ego2global_translation": translation,
        "ego2global_rotation": rotation,
        "ego_dynamic_state": [float(ego.vx), float(ego.vy), float(ego.ax), float(ego.ay)],
        "traffic_lights": [
            (int(lane_id) if str(lane_id).isdigit() else str(lane_id), bool(is_red))
            for lane_id, is_red in frame.traffic_lights
        ],
        "driving_command": command.copy(),
        "cams": {
            name: {
                "data_path": frame.cameras.get(name) or camera_blob_path(log_name, name, frame.token),
                "sensor2lidar_rotation": np.array(rig[name].sensor2lidar_rotation, dtype=np.float64),
                "sensor2lidar_translation": np.array(rig[name].sensor2lidar_translation, dtype=np.float64),
                "cam_intrinsic": np.array(rig[name].intrinsics, dtype=np.float64),
                "distortion": np.array(rig[name].distortion, dtype=np.float64),
            }
            for name in CAMERA_NAMES
        },
        "sample_prev": None,
        "sample_next": None,
        "ego2global": ego2global,
        "lidar2ego": lidar2ego,
        "lidar2global": ego2global @ lidar2ego,
        "anns": {
            "gt_boxes": gt_boxes,
            "gt_names": np.array(names) if names else np.array([]),
            "gt_velocity_3d": np.concatenate([local_velocity, np.zeros((n, 1))], axis=1),
            "instance_tokens": [f"{frame.token}_{i:04d}" for i in range(n)],
            "track_tokens": list(boxes.tokens),
        },
    }
    if extra:
        data.update(extra)
    return data


def canonical_frames(frames: Sequence[Frame], *, log_name: str, map_location: str, **kwargs: Any) -> list[Frame]:
    """``frames`` as the reader returns them once written (see the module docstring for what may change)."""
    return [
        decode_frame(encode_frame(frame, log_name=log_name, map_location=map_location, frame_idx=i, **kwargs)).frame
        for i, frame in enumerate(frames)
    ]


def _as_dict(item: Frame | LogFrame | Mapping[str, Any], index: int, **kwargs: Any) -> dict[str, Any]:
    if isinstance(item, LogFrame):
        return item.data
    if isinstance(item, Frame):
        return encode_frame(item, frame_idx=index, **kwargs)
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"write_log: frame {index} is a {type(item).__name__}, expected Frame, LogFrame or dict")


def write_log(
    path: str | Path,
    frames: Sequence[Frame | LogFrame | Mapping[str, Any]],
    *,
    log_name: str | None = None,
    map_location: str | None = None,
    scene_token: str | None = None,
    cameras: Mapping[str, Camera] | None = None,
    validate: bool = True,
) -> Path:
    """Write one log pickle (a list of frame dicts) atomically; returns the path.

    The pickle loads under NumPy 1.x and 2.x alike (:func:`navsim_eval.pickle_io.write_pickle`: no ``numpy._core``
    module paths), so the official devkit reads it whichever NumPy wrote it.

    ``Frame`` items need ``log_name`` and ``map_location`` (default ``log_name`` = the file stem); consecutive
    ``Frame`` items get ``sample_prev`` / ``sample_next`` links. With ``validate`` every dict is decoded first, so
    an invalid log is never written (tests of the reader's errors pass ``validate=False``).
    """
    path = Path(path)
    log_name = log_name if log_name is not None else path.stem
    if any(isinstance(f, Frame) for f in frames) and map_location is None:
        raise InvalidSceneError(f"{path}: writing Frame objects needs map_location")
    kwargs = {"log_name": log_name, "map_location": map_location, "scene_token": scene_token, "cameras": cameras}
    dicts = [_as_dict(item, i, **kwargs) for i, item in enumerate(frames)]
    for i, item in enumerate(frames):
        if isinstance(item, Frame):
            dicts[i]["sample_prev"] = dicts[i - 1]["token"] if i > 0 else None
            dicts[i]["sample_next"] = dicts[i + 1]["token"] if i + 1 < len(dicts) else None
    if validate:
        for i, data in enumerate(dicts):
            decode_frame(data, source=str(path), index=i, require_annotations=False)
    return write_pickle(path, dicts)


def write_split_log(
    data_root: str | Path,
    split: str,
    log_name: str,
    frames: Sequence[Frame | LogFrame | Mapping[str, Any]],
    **kwargs: Any,
) -> Path:
    """Write ``<data_root>/navsim_logs/<split>/<log_name>.pkl`` (see :func:`write_log` for ``kwargs``)."""
    return write_log(log_pickle_path(split, log_name, data_root), frames, log_name=log_name, **kwargs)
