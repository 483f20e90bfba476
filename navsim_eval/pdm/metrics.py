"""The map- and route-based metrics: DAC, DDC, LK, TLC and raw ego progress (EP before normalisation)."""

from __future__ import annotations

import math

import numpy as np
import shapely

from navsim_eval.maps.centerline import Centerline
from navsim_eval.pdm.ego_area import EgoAreas

DDC_HORIZON_S = 1.0
DDC_COMPLIANCE_M = 2.0
DDC_VIOLATION_M = 6.0
LK_DEVIATION_LIMIT_M = 0.5
LK_HORIZON_S = 2.0


def drivable_area_compliance(areas: EgoAreas, num_steps: int) -> np.ndarray:
    """DAC [K]: 0 if any corner leaves the drivable area at any step, else 1."""
    return np.where(areas.non_drivable_area[:, :num_steps].any(axis=-1), 0.0, 1.0)


def driving_direction_compliance(centers: np.ndarray, areas: EgoAreas, version: str, dt: float = 0.1) -> np.ndarray:
    """DDC [K]: distance driven against traffic (centre outside every on-route lane) within any 1 s window.

    < 2 m gives 1, < 6 m gives 0.5, else 0. v2 does not count steps whose centre is inside an intersection.
    """
    moved = np.zeros(centers.shape[:2])
    moved[:, 1:] = np.linalg.norm(centers[:, 1:] - centers[:, :-1], axis=-1)
    against = areas.oncoming_traffic.copy()
    if version == "v2":
        against &= ~areas.center_in_intersection
    moved[~against] = 0.0
    horizon = int(DDC_HORIZON_S / dt)
    cumulative = np.concatenate([np.zeros((moved.shape[0], 1)), np.cumsum(moved, axis=-1)], axis=-1)
    steps = np.arange(moved.shape[1])
    window = cumulative[:, steps + 1] - cumulative[:, np.maximum(0, steps - horizon)]
    worst = window.max(axis=-1)
    return np.where(worst < DDC_COMPLIANCE_M, 1.0, np.where(worst < DDC_VIOLATION_M, 0.5, 0.0))


def lane_keeping(centers: np.ndarray, areas: EgoAreas, centerline: Centerline, dt: float = 0.1) -> np.ndarray:
    """LK [K]: 0 once the centre stays more than 0.5 m from the centerline for 2 s in a row.

    Steps whose centre is inside an intersection are skipped without resetting the count.
    """
    deviation = centerline.distance(centers)  # [K, T]
    limit = math.ceil(LK_HORIZON_S / dt)
    scores = np.ones(centers.shape[0])
    for k in range(centers.shape[0]):
        run = 0
        for t in range(centers.shape[1]):
            if areas.center_in_intersection[k, t]:
                continue
            run = run + 1 if deviation[k, t] > LK_DEVIATION_LIMIT_M else 0
            if run >= limit:
                scores[k] = 0.0
                break
    return scores


def traffic_light_compliance(ego_polygons: np.ndarray, red_light_polygons: list[list[shapely.Polygon]]) -> np.ndarray:
    """TLC [K]: 0 if the ego polygon [K, T] touches a red on-route lane connector at any step, else 1."""
    scores = np.ones(ego_polygons.shape[0])
    for t, polygons in enumerate(red_light_polygons[: ego_polygons.shape[1]]):
        for polygon in polygons:
            scores[shapely.intersects(ego_polygons[:, t], polygon)] = 0.0
    return scores


def raw_progress(centers: np.ndarray, centerline: Centerline) -> np.ndarray:
    """Metres gained along the centerline between the first and last step (box centre), clipped at 0."""
    along = centerline.project(centers[:, [0, -1]])
    return np.clip(along[:, 1] - along[:, 0], 0.0, None)
