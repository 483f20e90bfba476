"""Bird's-eye-view plots of scored scenes: map, agents, the predicted and the human trajectory, what failed.

Everything comes from the scene's metric cache (drivable polygons, objects, ego at t0, logged human future) and
its score table (the simulated ego states and the metric values), so a plot needs no dataset access.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from navsim_eval.geometry import relative_to_absolute_poses
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import ScoreTable
from navsim_eval.vehicle import PACIFICA

MULTIPLIERS = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
)
VIEW_RADIUS_M = 45.0


def failing_metrics(table: ScoreTable, candidate: int = 0) -> list[str]:
    """The sub-metrics of a candidate below 1 (the ones that cost score), worst first."""
    if not table.valid[candidate]:
        return [f"invalid: {table.reasons[candidate]}"]
    values = {
        name: float(values[candidate])
        for name, values in table.columns.items()
        if name != "score" and np.isfinite(values[candidate]) and values[candidate] < 1.0
    }
    return [f"{name} {value:.2f}" for name, value in sorted(values.items(), key=lambda item: item[1])]


def plot_scene(
    cache: MetricCache,
    table: ScoreTable,
    predicted: np.ndarray,
    path: str | os.PathLike[str],
    candidate: int = 0,
) -> Path:
    """Write a BEV PNG of one scene centred on the ego at t0 (metres from the ego, global orientation): drivable
    area, agents at t0 (boxes) with their future centres, the human (green) and predicted (blue) trajectories, the
    simulated ego (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 7))
    try:
        return _draw(axis, figure, cache, table, predicted, Path(path), candidate)
    finally:
        plt.close(figure)


def _draw(axis, figure, cache: MetricCache, table: ScoreTable, predicted, path: Path, candidate: int) -> Path:
    from matplotlib.patches import Polygon as PolygonPatch

    origin = np.array([cache.ego.x, cache.ego.y, cache.ego.heading])
    shift = origin[:2]
    for polygon in cache.drivable_map.polygons:
        if polygon.distance(_point(origin)) > VIEW_RADIUS_M * 1.5:
            continue
        axis.add_patch(
            PolygonPatch(
                np.asarray(polygon.exterior.coords)[:, :2] - shift,
                closed=True,
                facecolor="0.88",
                edgecolor="0.7",
                linewidth=0.5,
            )
        )
    observation = cache.observation
    for n in range(len(observation.tokens)):
        if not observation.present[0, n]:
            continue
        x, y, yaw, length, width = observation.boxes[0, n]
        if np.hypot(x - origin[0], y - origin[1]) > VIEW_RADIUS_M * 1.5:
            continue
        axis.add_patch(
            PolygonPatch(
                _box_corners(x, y, yaw, length, width) - shift,
                closed=True,
                facecolor="tab:orange",
                edgecolor="k",
                linewidth=0.5,
                alpha=0.8,
            )
        )
        future = observation.boxes[:, n, :2][observation.present[:, n]] - shift
        axis.plot(future[:, 0], future[:, 1], color="tab:orange", linewidth=0.6, alpha=0.6)
    centre = origin[:2] + PACIFICA.rear_axle_to_center * np.array([np.cos(origin[2]), np.sin(origin[2])])
    ego_box = _box_corners(*centre, origin[2], PACIFICA.length, PACIFICA.width)
    axis.add_patch(PolygonPatch(ego_box - shift, closed=True, facecolor="tab:blue", edgecolor="k"))
    if cache.human_trajectory is not None:
        human = relative_to_absolute_poses(origin, np.asarray(cache.human_trajectory, dtype=np.float64))
        axis.plot(*_with_origin(origin, human, shift), color="tab:green", marker="o", markersize=3, label="human")
    prediction = relative_to_absolute_poses(origin, np.asarray(predicted, dtype=np.float64))
    axis.plot(*_with_origin(origin, prediction, shift), color="tab:blue", marker="o", markersize=3, label="predicted")
    if table.simulated_states is not None and np.isfinite(table.simulated_states[candidate]).all():
        states = table.simulated_states[candidate][:, :2] - shift
        axis.plot(states[:, 0], states[:, 1], color="tab:blue", linestyle=":", linewidth=1, label="simulated")
    axis.set_xlim(-VIEW_RADIUS_M, VIEW_RADIUS_M)
    axis.set_ylim(-VIEW_RADIUS_M, VIEW_RADIUS_M)
    axis.set_xlabel("x from the ego [m]")
    axis.set_ylabel("y from the ego [m]")
    axis.set_aspect("equal")
    score = float(table.columns["score"][candidate]) if table.valid[candidate] else 0.0
    failing = ", ".join(failing_metrics(table, candidate)) or "nothing failed"
    axis.set_title(f"{table.token}  score {score:.3f}\n{failing}", fontsize=9)
    axis.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    return path


def _point(pose: np.ndarray):
    import shapely

    return shapely.Point(float(pose[0]), float(pose[1]))


def _with_origin(origin: np.ndarray, poses: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.vstack([origin[None, :2], poses[:, :2]]) - shift
    return xy[:, 0], xy[:, 1]


def _box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return half @ rotation.T + [x, y]
