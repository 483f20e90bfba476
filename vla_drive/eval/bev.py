"""Bird's-eye-view plots of scored scenes: map, agents, the predicted and the human trajectory, what failed.

Everything comes from the scene's metric cache (drivable polygons, objects, ego at t0, logged human future) and
its score table (the simulated ego states and the metric values), so a plot needs no dataset access. The view is
the ego frame at t0 with the heading pointing up (ego at the origin, left on the left), zoomed to the trajectories
and what is around them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from navsim_eval.geometry import absolute_to_relative_poses
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import ScoreTable
from navsim_eval.vehicle import PACIFICA

MULTIPLIERS = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
)
WRONG_WAY = "driving_direction_compliance"
MARGIN_M = 12.0  # around the trajectories
MIN_HALF_WIDTH_M = 15.0  # the narrowest view still shows the neighbouring lanes
COLORS = {"human": "tab:green", "predicted": "tab:blue", "simulated": "tab:purple", "agent": "tab:orange"}


def failing_metrics(table: ScoreTable, candidate: int = 0) -> list[str]:
    """The sub-metrics of a candidate below 1 (the ones that cost score, or, like driving-direction compliance in
    PDMS v1.1, that are reported without counting), worst first."""
    if not table.valid[candidate]:
        return [f"invalid: {table.reasons[candidate]}"]
    values = {
        name: float(values[candidate])
        for name, values in table.columns.items()
        if name != "score" and np.isfinite(values[candidate]) and values[candidate] < 1.0
    }
    return [f"{name} {value:.2f}" for name, value in sorted(values.items(), key=lambda item: item[1])]


def drove_the_wrong_way(table: ScoreTable, candidate: int = 0) -> bool:
    """Driving-direction compliance below 1 (PDMS v1.1 reports it but does not aggregate it)."""
    values = table.columns.get(WRONG_WAY)
    return bool(
        table.valid[candidate] and values is not None and np.isfinite(values[candidate]) and values[candidate] < 1
    )


def plot_scene(
    cache: MetricCache,
    table: ScoreTable,
    predicted: np.ndarray,
    path: str | os.PathLike[str],
    candidate: int = 0,
) -> Path:
    """Write the BEV PNG of one scene (see :func:`scene_figure`)."""
    import matplotlib.pyplot as plt

    figure = scene_figure(cache, table, predicted, candidate)
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=90, bbox_inches="tight")
        return path
    finally:
        plt.close(figure)


def to_view(xy_ego: np.ndarray) -> np.ndarray:
    """Ego-frame points [..., 2] (x forward, y left) as plot coordinates (heading up: plot x = -y, plot y = x)."""
    xy_ego = np.asarray(xy_ego, dtype=np.float64)
    return np.stack([-xy_ego[..., 1], xy_ego[..., 0]], axis=-1)


def scene_figure(cache: MetricCache, table: ScoreTable, predicted: np.ndarray, candidate: int = 0):
    """The figure of one scene in the ego frame at t0, heading up: drivable area, agents at t0 (boxes) with their
    future centres, the human, predicted and simulated ego paths, the score and the failing metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.patches import Polygon as PolygonPatch

    origin = np.array([cache.ego.x, cache.ego.y, cache.ego.heading])
    paths = {"predicted": np.vstack([[0.0, 0.0], np.asarray(predicted, dtype=np.float64)[:, :2]])}
    if cache.human_trajectory is not None:
        paths["human"] = np.vstack([[0.0, 0.0], cache.human_trajectory[:, :2]])
    states = table.simulated_states[candidate] if table.simulated_states is not None else None
    if states is not None and np.isfinite(states[:, :3]).all():
        paths["simulated"] = absolute_to_relative_poses(origin, states[:, :3])[:, :2]
    left, right, bottom, top = _view_box(np.vstack(list(paths.values())))
    reach = float(np.hypot(max(abs(left), abs(right)), max(abs(bottom), abs(top)))) + MARGIN_M

    figure, axis = plt.subplots(figsize=(6, 6 * (top - bottom) / (right - left)) if right > left else (6, 6))
    rings = [
        to_view(absolute_to_relative_poses(origin, _with_heading(np.asarray(polygon.exterior.coords)[:, :2]))[:, :2])
        for polygon in cache.drivable_map.polygons
        if polygon.distance(_point(origin)) <= reach
    ]  # one collection: a patch per polygon (hundreds of vertices each) cost ~25 ms apiece in limit updates
    axis.add_collection(PolyCollection(rings, facecolor="0.9", edgecolor="0.75", linewidths=0.5), autolim=False)
    observation = cache.observation
    for n in range(len(observation.tokens)):
        if not observation.present[0, n]:
            continue
        x, y, yaw, length, width = observation.boxes[0, n]
        local = absolute_to_relative_poses(origin, np.array([x, y, yaw]))
        if np.hypot(local[0], local[1]) > reach:
            continue
        corners = _box_corners(local[0], local[1], local[2], length, width)
        axis.add_patch(
            PolygonPatch(to_view(corners), closed=True, facecolor=COLORS["agent"], edgecolor="k", lw=0.5, alpha=0.8)
        )
        future = observation.boxes[:, n, :3][observation.present[:, n]]
        future = to_view(absolute_to_relative_poses(origin, future)[:, :2])
        axis.plot(future[:, 0], future[:, 1], color=COLORS["agent"], linewidth=0.8, alpha=0.6)
    ego_box = _box_corners(PACIFICA.rear_axle_to_center, 0.0, 0.0, PACIFICA.length, PACIFICA.width)
    axis.add_patch(PolygonPatch(to_view(ego_box), closed=True, facecolor="tab:blue", edgecolor="k", lw=0.8))
    styles = {
        "human": dict(marker="o", markersize=3, linewidth=1.5),
        "predicted": dict(marker="o", markersize=3, linewidth=1.5),
        "simulated": dict(linestyle="--", linewidth=2.0),
    }
    for name, xy in paths.items():
        view = to_view(xy)
        axis.plot(view[:, 0], view[:, 1], color=COLORS[name], label=f"{name} ego", **styles[name])
    axis.set_xlim(left, right)
    axis.set_ylim(bottom, top)
    axis.set_aspect("equal")
    axis.set_xlabel("left  <-  lateral [m]  ->  right")
    axis.set_ylabel("forward [m] (heading up)")
    score = float(table.columns["score"][candidate]) if table.valid[candidate] else 0.0
    failing = ", ".join(failing_metrics(table, candidate)) or "nothing failed"
    wrong_way = "  WRONG WAY" if drove_the_wrong_way(table, candidate) else ""
    axis.set_title(f"{table.token}  score {score:.3f}{wrong_way}\n{failing}", fontsize=9)
    handles, _ = axis.get_legend_handles_labels()
    handles += [
        Patch(facecolor=COLORS["agent"], edgecolor="k", label="agent at t0"),
        Line2D([], [], color=COLORS["agent"], alpha=0.6, label="agent future"),
        Patch(facecolor="0.9", edgecolor="0.75", label="drivable area"),
    ]
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0)
    return figure


def _view_box(xy_ego: np.ndarray) -> tuple[float, float, float, float]:
    """Plot limits (left, right, bottom, top) holding every ego-frame point with a margin, square-ish."""
    view = to_view(xy_ego)
    half_width = max(MIN_HALF_WIDTH_M, float(np.abs(view[:, 0]).max()) + MARGIN_M)
    bottom = min(-MARGIN_M, float(view[:, 1].min()) - MARGIN_M)
    top = max(2 * MIN_HALF_WIDTH_M + bottom, float(view[:, 1].max()) + MARGIN_M)
    return -half_width, half_width, bottom, top


def _with_heading(xy: np.ndarray) -> np.ndarray:
    return np.hstack([xy, np.zeros((len(xy), 1))])


def _point(pose: np.ndarray):
    import shapely

    return shapely.Point(float(pose[0]), float(pose[1]))


def _box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return half @ rotation.T + [x, y]
