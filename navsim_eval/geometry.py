"""SE(2) helpers shared by the simulator, the metrics and the data readers (vectorised over leading axes)."""

from __future__ import annotations

import numpy as np

from navsim_eval.vehicle import VehicleParameters


def principal_value(angle: np.ndarray | float, min_: float = -np.pi) -> np.ndarray | float:
    """Wrap angles into [min_, min_ + 2*pi), as nuPlan's ``principal_value`` does."""
    return (np.asarray(angle) - min_) % (2.0 * np.pi) + min_


def relative_to_absolute_poses(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Express poses given in the frame of ``origin`` (x, y, heading) in the origin's parent frame.

    ``poses`` has shape [..., 3]; the result has the same shape. Headings are wrapped to [-pi, pi).
    Computed as an SE(2) matrix product like nuPlan, so the heading comes out of arctan2 of the composed rotation.
    """
    poses = np.asarray(poses, dtype=np.float64)
    ox, oy, oh = float(origin[0]), float(origin[1]), float(origin[2])
    c, s = np.cos(oh), np.sin(oh)
    x = c * poses[..., 0] - s * poses[..., 1] + ox
    y = s * poses[..., 0] + c * poses[..., 1] + oy
    pc, ps = np.cos(poses[..., 2]), np.sin(poses[..., 2])
    heading = np.arctan2(s * pc + c * ps, c * pc - s * ps)
    return np.stack([x, y, heading], axis=-1)


def absolute_to_relative_poses(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relative_to_absolute_poses`: global poses [..., 3] into the frame of ``origin``."""
    poses = np.asarray(poses, dtype=np.float64)
    ox, oy, oh = float(origin[0]), float(origin[1]), float(origin[2])
    c, s = np.cos(oh), np.sin(oh)
    dx, dy = poses[..., 0] - ox, poses[..., 1] - oy
    x = c * dx + s * dy
    y = -s * dx + c * dy
    heading = principal_value(poses[..., 2] - oh)
    return np.stack([x, y, heading], axis=-1)


def box_corners(
    x: np.ndarray, y: np.ndarray, heading: np.ndarray, half_length: np.ndarray, half_width: np.ndarray
) -> np.ndarray:
    """Corners of oriented boxes centred at (x, y), in nuPlan order FRONT_LEFT, REAR_LEFT, REAR_RIGHT, FRONT_RIGHT.

    All inputs broadcast; the result has shape [..., 4, 2].
    """
    # Same float operations as nuPlan's ``translate_longitudinally_and_laterally`` (lateral via heading + pi/2,
    # lateral term first), so corners and polygon centroids match the official ones bit for bit.
    cos_h, sin_h = np.cos(heading), np.sin(heading)
    cos_l, sin_l = np.cos(heading + np.pi / 2.0), np.sin(heading + np.pi / 2.0)

    def corner(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return np.stack([x + (lat * cos_l + lon * cos_h), y + (lat * sin_l + lon * sin_h)], axis=-1)

    return np.stack(
        [
            corner(half_length, half_width),
            corner(-half_length, half_width),
            corner(-half_length, -half_width),
            corner(half_length, -half_width),
        ],
        axis=-2,
    )


def ego_corners_and_center(states_xyh: np.ndarray, vehicle: VehicleParameters) -> np.ndarray:
    """Ego box corners (FL, RL, RR, FR) and box centre for rear-axle poses [..., 3] -> [..., 5, 2]."""
    x, y, h = states_xyh[..., 0], states_xyh[..., 1], states_xyh[..., 2]
    cx = x + vehicle.rear_axle_to_center * np.cos(h)
    cy = y + vehicle.rear_axle_to_center * np.sin(h)
    corners = box_corners(cx, cy, h, vehicle.half_length, vehicle.half_width)
    center = np.stack([cx, cy], axis=-1)[..., None, :]
    return np.concatenate([corners, center], axis=-2)
