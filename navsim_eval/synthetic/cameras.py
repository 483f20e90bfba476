"""Pinhole cameras of the synthetic world: the 8-camera NAVSIM rig and its OpenScene calibration dicts.

Frames (all right-handed, metres):

* ego: nuPlan rear-axle frame, x forward, y left, z up, origin on the ground under the rear axle;
* camera: OpenCV / OpenScene camera axes, x right, y down, z forward (optical axis);
* lidar: the frame of OpenScene's ``sensor2lidar_*`` fields. nuPlan's merged point cloud is given in the ego frame
  (NAVSIM maintainers, autonomousvision/navsim issue #71), so :data:`LIDAR2EGO_TRANSLATION` is zero; the conversions
  take it as a parameter so a rig written with another lidar offset still converts consistently.

:func:`default_rig` follows the layout of the real nuPlan rig as it appears in OpenScene logs (one Pacifica calibration,
values rounded and made left/right symmetric): every camera has f = 1545 px at 1920 x 1080 (horizontal FOV 63.7°),
the front cameras sit about 1.65 m ahead of the rear axle at about 1.5 m height, the rear ones above the rear axle.
Yaw (left positive) and downward pitch of the optical axes in degrees: F0 0 / 1.3, L0 +55 / 0.8, R0 -55 / 0.8,
L1 +111 / 0.9, R1 -111 / 0.9, L2 +141 / 0.9, R2 -141 / 0.9, B0 180 / 0.6. Distortion is zero (images are rendered
with an ideal pinhole; the real logs carry a radial model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from navsim_eval.data.openscene import CAMERA_NAMES, Camera

LIDAR2EGO_TRANSLATION = np.zeros(3)  # OpenScene lidar frame = ego (rear-axle) frame, see the module docstring
LIDAR2EGO_TRANSLATION.setflags(write=False)

REAL_IMAGE_SIZE = (1920, 1080)  # width, height of nuPlan / OpenScene camera images
_REAL_FOCAL_PX = 1545.0  # at 1920 x 1080
_REAL_PRINCIPAL_PX = (960.0, 560.0)

# name: (yaw deg, pitch-down deg, x, y, z of the camera centre in the ego frame)
_RIG_LAYOUT: dict[str, tuple[float, float, float, float, float]] = {
    "CAM_F0": (0.0, 1.3, 1.65, 0.0, 1.49),
    "CAM_L0": (55.0, 0.8, 1.63, 0.14, 1.48),
    "CAM_L1": (111.0, 0.9, 1.29, 0.62, 1.37),
    "CAM_L2": (141.0, 0.9, -0.49, 0.52, 1.35),
    "CAM_R0": (-55.0, 0.8, 1.63, -0.14, 1.48),
    "CAM_R1": (-111.0, 0.9, 1.29, -0.62, 1.37),
    "CAM_R2": (-141.0, 0.9, -0.49, -0.52, 1.35),
    "CAM_B0": (180.0, 0.6, -0.47, 0.0, 1.43),
}

# Camera axes (x right, y down, z forward) expressed in ego axes for a camera looking along ego +x.
_FORWARD_CAMERA_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _as_matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: expected a finite array of shape {shape}, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class CameraSpec:
    """One pinhole camera: image size, intrinsics ``K`` and its pose in the ego frame.

    ``rotation`` maps camera axes to ego axes and ``translation`` is the camera centre in the ego frame, so
    ``p_ego = rotation @ p_cam + translation``. Arrays are float64 and read-only.
    """

    name: str
    width: int
    height: int
    intrinsics: np.ndarray  # [3, 3]
    rotation: np.ndarray  # [3, 3] sensor2ego
    translation: np.ndarray  # [3] sensor2ego
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"camera {self.name}: image size must be positive, got {self.width} x {self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "intrinsics", _as_matrix(self.intrinsics, (3, 3), f"camera {self.name} intrinsics"))
        object.__setattr__(self, "rotation", _as_matrix(self.rotation, (3, 3), f"camera {self.name} rotation"))
        object.__setattr__(self, "translation", _as_matrix(self.translation, (3,), f"camera {self.name} translation"))
        distortion = np.array(self.distortion, dtype=np.float64).reshape(-1)
        distortion.setflags(write=False)
        object.__setattr__(self, "distortion", distortion)
        if not np.allclose(self.rotation @ self.rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(self.rotation) < 0:
            raise ValueError(f"camera {self.name}: rotation is not a proper orthonormal rotation")

    # ------------------------------------------------------------------ geometry

    def resized(self, width: int, height: int) -> CameraSpec:
        """The same camera at another resolution, intrinsics scaled per axis.

        Pixel centres are at integer coordinates (OpenCV convention), so the principal point maps as
        ``c' = s (c + 0.5) - 0.5``: an image rendered k times larger and box-reduced by k lines up exactly.
        """
        return replace(
            self,
            width=width,
            height=height,
            intrinsics=_scaled_intrinsics(self.intrinsics, width / self.width, height / self.height),
        )

    def ego_to_camera(self, points_ego: np.ndarray) -> np.ndarray:
        """Points [..., 3] from the ego frame to camera axes."""
        return (np.asarray(points_ego, dtype=np.float64) - self.translation) @ self.rotation

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u right, v down) [..., 2] and depth (camera z) [...] of ego-frame points.

        Points with depth <= 0 are behind the camera; their pixel coordinates are meaningless.
        """
        cam = self.ego_to_camera(points_ego)
        depth = cam[..., 2]
        safe = np.where(np.abs(depth) > 1e-9, depth, 1e-9)
        return self.camera_to_pixels(np.concatenate([cam[..., :2], safe[..., None]], axis=-1)), depth

    def camera_to_pixels(self, points_cam: np.ndarray) -> np.ndarray:
        """Pixel coordinates [..., 2] of camera-frame points [..., 3] in front of the camera (z > 0)."""
        uvw = points_cam @ self.intrinsics.T
        return uvw[..., :2] / uvw[..., 2:3]

    # ------------------------------------------------------------------ OpenScene calibration

    def to_openscene(
        self, data_path: str = "", lidar2ego_translation: np.ndarray = LIDAR2EGO_TRANSLATION
    ) -> dict[str, Any]:
        """The camera's entry of an OpenScene frame's ``cams`` dict; the lidar frame is the ego frame shifted by
        ``lidar2ego_translation`` (no rotation)."""
        return {
            "data_path": data_path,
            "sensor2lidar_rotation": np.array(self.rotation, dtype=np.float64),
            "sensor2lidar_translation": np.array(self.translation - np.asarray(lidar2ego_translation, dtype=float)),
            "cam_intrinsic": np.array(self.intrinsics, dtype=np.float64),
            "distortion": np.array(self.distortion, dtype=np.float64),
        }

    @classmethod
    def from_openscene(
        cls,
        name: str,
        cam: Mapping[str, Any],
        width: int = REAL_IMAGE_SIZE[0],
        height: int = REAL_IMAGE_SIZE[1],
        lidar2ego_translation: np.ndarray = LIDAR2EGO_TRANSLATION,
    ) -> CameraSpec:
        """Inverse of :meth:`to_openscene`; the image size is not stored in the dict (real images: 1920 x 1080)."""
        try:
            translation = np.asarray(cam["sensor2lidar_translation"], dtype=np.float64)
            return cls(
                name=name,
                width=width,
                height=height,
                intrinsics=cam["cam_intrinsic"],
                rotation=cam["sensor2lidar_rotation"],
                translation=translation + np.asarray(lidar2ego_translation, dtype=np.float64),
                distortion=cam.get("distortion", np.zeros(5)),
            )
        except KeyError as error:
            raise ValueError(f"camera {name}: OpenScene calibration lacks the field {error}") from None

    def to_camera(self, data_path: str = "", lidar2ego_translation: np.ndarray = LIDAR2EGO_TRANSLATION) -> Camera:
        """The calibration as the OpenScene reader's :class:`Camera` (what the log writer takes)."""
        fields = self.to_openscene(data_path, lidar2ego_translation)
        return Camera(
            name=self.name,
            data_path=data_path,
            sensor2lidar_rotation=fields["sensor2lidar_rotation"],
            sensor2lidar_translation=fields["sensor2lidar_translation"],
            intrinsics=fields["cam_intrinsic"],
            distortion=fields["distortion"],
        )


def camera_rotation(yaw: float, pitch_down: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """sensor2ego rotation of a camera whose optical axis has ``yaw`` (left positive) and ``pitch_down`` (radians).

    ``roll`` turns the image clockwise as seen by the camera, about its optical axis.
    """
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch_down), np.sin(pitch_down)
    cr, sr = np.cos(roll), np.sin(roll)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])  # positive angle tilts ego x towards -z
    r_optical = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])  # about the camera z axis
    return rz @ ry @ _FORWARD_CAMERA_AXES @ r_optical


def _scaled_intrinsics(intrinsics: np.ndarray, sx: float, sy: float) -> np.ndarray:
    k = np.array(intrinsics, dtype=np.float64)
    k[0, :2] *= sx
    k[1, 1] *= sy
    k[0, 2] = sx * (k[0, 2] + 0.5) - 0.5
    k[1, 2] = sy * (k[1, 2] + 0.5) - 0.5
    return k


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """nuPlan's intrinsics scaled by ``width`` / 1920 (square pixels, horizontal FOV 63.7°).

    At 16:9 this is exactly the real calibration resized; for another aspect the rows are cropped or padded
    symmetrically, keeping the principal point 20 px (at 1080 rows) below the image centre as in the real one.
    """
    scale = width / REAL_IMAGE_SIZE[0]
    (fx, cx, cy) = _REAL_FOCAL_PX, _REAL_PRINCIPAL_PX[0], _REAL_PRINCIPAL_PX[1]
    real = np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])
    k = _scaled_intrinsics(real, scale, scale)
    k[1, 2] += (height - REAL_IMAGE_SIZE[1] * scale) / 2.0
    return k


def default_rig(width: int = REAL_IMAGE_SIZE[0], height: int = REAL_IMAGE_SIZE[1]) -> dict[str, CameraSpec]:
    """The 8 NAVSIM cameras (``CAMERA_NAMES`` order) with a nuPlan-like mounting, images ``width`` x ``height``."""
    intrinsics = default_intrinsics(width, height)
    rig = {}
    for name in CAMERA_NAMES:
        yaw_deg, pitch_deg, x, y, z = _RIG_LAYOUT[name]
        rig[name] = CameraSpec(
            name=name,
            width=width,
            height=height,
            intrinsics=intrinsics,
            rotation=camera_rotation(np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)),
            translation=np.array([x, y, z]),
            distortion=np.zeros(5),
        )
    return rig


def rig_to_openscene(
    rig: Mapping[str, CameraSpec],
    data_paths: Mapping[str, str] | None = None,
    lidar2ego_translation: np.ndarray = LIDAR2EGO_TRANSLATION,
) -> dict[str, dict[str, Any]]:
    """A frame's ``cams`` dict for ``rig`` (image paths from ``data_paths``, empty where missing)."""
    paths = data_paths or {}
    return {name: spec.to_openscene(paths.get(name, ""), lidar2ego_translation) for name, spec in rig.items()}


def rig_from_openscene(
    cams: Mapping[str, Mapping[str, Any]],
    width: int = REAL_IMAGE_SIZE[0],
    height: int = REAL_IMAGE_SIZE[1],
    lidar2ego_translation: np.ndarray = LIDAR2EGO_TRANSLATION,
) -> dict[str, CameraSpec]:
    """Camera specs from a frame's ``cams`` dict (images of ``width`` x ``height``)."""
    return {
        name: CameraSpec.from_openscene(name, cam, width, height, lidar2ego_translation) for name, cam in cams.items()
    }
