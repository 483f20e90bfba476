"""The route centerline: a polyline that ego progress is measured along (NAVSIM's PDMPath)."""

from __future__ import annotations

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError


class Centerline:
    """Discrete route centerline poses [M, 3] (x, y, heading) with arc-length projection and distance queries."""

    def __init__(self, poses: np.ndarray):
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) < 2:
            raise InvalidSceneError(f"centerline: expected poses [M>=2, 3], got shape {list(poses.shape)}")
        if not np.all(np.isfinite(poses)):
            raise InvalidSceneError("centerline: contains NaN or infinite values")
        self.poses = poses
        self.linestring = shapely.LineString(poses[:, :2])
        shapely.prepare(self.linestring)
        self.length = float(self.linestring.length)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Arc length of the closest point of the polyline for each point [..., 2] (shapely line_locate_point)."""
        points = np.asarray(points, dtype=np.float64)
        flat = shapely.points(points.reshape(-1, 2))
        return shapely.line_locate_point(self.linestring, flat).reshape(points.shape[:-1])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Euclidean distance from each point [..., 2] to the polyline."""
        points = np.asarray(points, dtype=np.float64)
        flat = shapely.points(points.reshape(-1, 2))
        return shapely.distance(self.linestring, flat).reshape(points.shape[:-1])
