"""PDM-Closed, the rule-based reference planner whose trajectory normalises ego progress (EP).

Follows ``autonomousvision/navsim`` (``v1.1`` and ``main`` are identical here), read in
``pdm_planner/{pdm_closed_planner.py, abstract_pdm_closed_planner.py, abstract_pdm_planner.py}``,
``proposal/{pdm_generator.py, pdm_proposal.py, batch_idm_policy.py}``, ``observation/{pdm_observation.py,
pdm_object_manager.py, pdm_occupancy_map.py}``, ``utils/{pdm_path.py, pdm_geometry_utils.py}`` and the configuration
in ``metric_caching/metric_cache_processor.py``:

* Paths: the route centerline and its parallel copies at lateral offsets ``[-1, +1]`` m (each vertex moved along
  ``heading + pi/2``; -1 = right, +1 = left), in that order. Proposal ``i`` = path ``i // 5`` x IDM policy ``i % 5``.
* Each path is a ``PDMPath``: linear interpolation of (x, y, unwrapped heading) over the vertices' cumulative arc
  length, queried at distances clipped to ``[1e-5, length]``, heading wrapped, NaN replaced by 0.
* Initial state per path: progress = projection of the ego rear axle onto the path, speed = body-frame ``vx``;
  pose 0 = the path interpolated at that progress (the official proposal starts ON the path, not at the logged ego
  pose; the simulator starts from the logged ego state anyway).
* 40 steps of 0.1 s per path, all five policies in one batch: (1) leading agent, refreshed on even steps and copied
  on odd ones; step 1 copies the never-written zeros of step 0, i.e. a lead "at progress 0 with speed 0", so the first
  step brakes hard whenever ego moves (an official quirk kept as is); (2) one IDM Euler step (``idm.py``);
  (3) pose = path interpolated at the new progress.
* Leading agent at step k (even): the forecast objects whose polygon at forecast time ``0.2 * (k // 2)`` intersects
  the path's driving corridor (the path vertices between the initial progress and ``+ 5 s * max target speed``,
  buffered by half the ego width with square caps), minus the objects overlapping ego at t0 ("collided"; a red-light
  polygon only counts as collided when ego is fully inside it). For each proposal, objects whose centroid projects
  ahead of the proposal's previous progress are candidates; the nearest by polygon distance to the ego box at the
  previous pose sets ``lead progress = previous progress + distance`` and, unless it is a red light, the lead speed
  ``|v| cos(heading_obj - heading_ego)`` (0 for static objects). Nothing ahead: lead progress = path length with a
  rear length of half the ego length. As in the official code ONE 3-vector is reused over the five proposals of a path,
  so a field not written for a proposal (speed behind a red light, rear length behind an object) keeps the previous
  proposal's value.
* Forecast (``PDMObservation.update``): the t0 objects except EGO and those whose centre is more than 100 m from the
  ego box centre, the 50 nearest static objects and the 50 / 25 / 10 nearest vehicles / pedestrians / bicycles
  (distance from the ego box centre); agents move at constant velocity ``|v|`` along their heading (flipped when the
  velocity points backwards), static objects and red lights stay; maps every 0.2 s. Red lights are the on-route
  lane connectors whose light is red at t0, with their lane-connector polygon, token ``red_light_<id>``.

Simplifications (honest list):

* The caller supplies the centerline (``Centerline``), the starting lane's speed limit and the red on-route lane
  connectors; the official planner derives them from the nuPlan map (route correction, Dijkstra centerline, lane
  speed limit of the starting lane). Red-light polygons come from ``drivable_map`` (tokens missing there are skipped;
  the official takes them from the route's lane objects, whatever their distance).
* Proposal selection (simulate with LQR + bicycle model, score with a default ``PDMScorer``, ``argmax``) is injected
  through ``select``; to match the official choice it must score against :func:`forecast_observation` with the t0 red
  lights held for all steps, the centerline, route and drivable map.
* Only the 41 poses of the proposal horizon are produced; the official planner unrolls the winner to 51 poses, but
  scoring samples t = 0 .. 4 s only.
* Ties: the official iterates STRtree query results (tree order); here candidates are in forecast-token order. This
  only matters for exactly equal distances (e.g. several objects touching the ego box), where the chosen lead speed
  may differ.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from scipy.interpolate import interp1d

from navsim_eval.errors import InvalidSceneError
from navsim_eval.geometry import box_corners, ego_corners_and_center
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.pdm.idm import PDM_CLOSED_IDM, BatchIDMPolicy
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import AGENT_TYPE_MASK, OBJECT_TYPE_CODE, EgoState, ObjectType
from navsim_eval.vehicle import PACIFICA, VehicleParameters

PROPOSAL_NUM_POSES = 40  # proposal horizon: 40 steps of 0.1 s (41 poses with t0)
TRAJECTORY_NUM_POSES = 50  # trajectory horizon, only used for the driving-corridor length
INTERVAL_S = 0.1
LATERAL_OFFSETS = (-1.0, 1.0)
LEADING_AGENT_UPDATE_RATE = 2  # steps
OBSERVATION_SAMPLE_RES = 2  # forecast maps every 2 steps (0.2 s)
MAP_RADIUS = 100.0  # [m] objects farther than this from the ego centre are ignored
MAX_DYNAMIC_OBJECTS = ((ObjectType.VEHICLE, 50), (ObjectType.PEDESTRIAN, 25), (ObjectType.BICYCLE, 10))
MAX_STATIC_OBJECTS = 50
RED_LIGHT_TOKEN = "red_light"
FORECAST_STEPS = 51  # the planner's forecast covers max(50, 40 + 10) steps after t0

_PROGRESS, _VELOCITY, _LENGTH_REAR = 0, 1, 2  # leading-agent vector layout (LeadingAgentIndex)


def _normalize_angle(angle: np.ndarray | float) -> np.ndarray:
    return np.arctan2(np.sin(angle), np.cos(angle))


class PDMPath:
    """A path of discrete poses: arc-length interpolation, projection and substrings (NAVSIM's ``PDMPath``)."""

    def __init__(self, poses: np.ndarray):
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) < 2 or not np.all(np.isfinite(poses)):
            raise InvalidSceneError(f"path: expected finite poses [M>=2, 3], got shape {list(poses.shape)}")
        self.poses = poses
        unwrapped = poses.copy()
        unwrapped[:, 2] = np.unwrap(unwrapped[:, 2])
        self.progress = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1))])
        self.linestring = shapely.LineString(poses[:, :2])
        shapely.prepare(self.linestring)
        self._interpolator = interp1d(self.progress, unwrapped, axis=0)

    @property
    def length(self) -> float:
        return float(self.progress[-1])

    def offset(self, lateral_offset: float) -> PDMPath:
        """The parallel path ``lateral_offset`` metres to the left (``parallel_discrete_path``)."""
        normal = self.poses[:, 2] + np.pi / 2.0
        shifted = self.poses.copy()
        shifted[:, 0] += np.cos(normal) * lateral_offset
        shifted[:, 1] += np.sin(normal) * lateral_offset
        return PDMPath(shifted)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Arc length of the closest polyline point for points [..., 2]."""
        points = np.asarray(points, dtype=np.float64)
        return shapely.line_locate_point(self.linestring, shapely.points(points.reshape(-1, 2))).reshape(
            points.shape[:-1]
        )

    def interpolate(self, distances: np.ndarray) -> np.ndarray:
        """Poses [..., 3] at arc lengths clipped to [1e-5, length]; heading wrapped, NaN set to 0."""
        clipped = np.clip(np.asarray(distances, dtype=np.float64), 1e-5, self.length)
        states = np.asarray(self._interpolator(clipped), dtype=np.float64)
        states[..., 2] = _normalize_angle(states[..., 2])
        states[np.isnan(states)] = 0.0
        return states

    def substring(self, start: float, end: float) -> shapely.LineString:
        """The path vertices with progress in [start, end] (shapely substring when fewer than two)."""
        start = float(np.clip(start, 0.0, self.length))
        end = float(np.clip(end, 0.0, self.length))
        inside = (start <= self.progress) & (self.progress <= end)
        if inside.sum() > 1:
            return shapely.LineString(self.poses[inside, :2])
        return shapely.ops.substring(self.linestring, start, end)


@dataclass
class PDMClosedForecast:
    """Constant-velocity forecast of the t0 objects plus static red lights (the planner's ``PDMObservation``)."""

    tokens: list[str]  # static objects, vehicles, pedestrians, bicycles (each nearest first), then red lights
    object_index: np.ndarray  # [K] column in the input observation, -1 for red lights
    polygons: list[np.ndarray]  # per forecast sample (every 0.2 s, 26 of them): [K] shapely polygons
    centers: np.ndarray  # [S, K, 2] box centres per sample (NaN for red lights)
    is_red_light: np.ndarray  # [K]
    lead_speed: np.ndarray  # [K] |v| for agents, 0 for static objects and red lights
    heading: np.ndarray  # [K] t0 heading
    collided: np.ndarray  # [K] overlapping the ego at t0: ignored as leading agents

    def polygons_at_step(self, step: int) -> np.ndarray:
        return self.polygons[step // OBSERVATION_SAMPLE_RES]


def _ego_polygons(poses: np.ndarray, vehicle: VehicleParameters) -> np.ndarray:
    corners = ego_corners_and_center(np.asarray(poses, dtype=np.float64), vehicle)[..., :4, :]
    return shapely.polygons(corners)


def build_forecast(
    ego: EgoState,
    observation: Observation,
    drivable_map: DrivableMap | None,
    red_light_tokens: Sequence[str],
    vehicle: VehicleParameters = PACIFICA,
) -> PDMClosedForecast:
    """The planner's forecast from the objects present at ``observation`` step 0 and the red lane connectors.

    Red-light tokens without a polygon in ``drivable_map`` are skipped.
    """
    ego_center = ego_corners_and_center(ego.pose, vehicle)[4]
    present = np.flatnonzero(observation.present[0])
    types = observation.types[present]
    boxes = observation.boxes[0, present]
    distance = np.linalg.norm(boxes[:, :2] - ego_center, axis=1)
    valid = (types != OBJECT_TYPE_CODE[ObjectType.EGO]) & ~(distance > MAP_RADIUS)

    def nearest(mask: np.ndarray, limit: int) -> np.ndarray:
        candidates = np.flatnonzero(mask & valid)
        return candidates[np.argsort(distance[candidates])][:limit]

    is_agent = AGENT_TYPE_MASK[types]
    selected = [nearest(~is_agent, MAX_STATIC_OBJECTS)]
    selected += [nearest(types == OBJECT_TYPE_CODE[t], limit) for t, limit in MAX_DYNAMIC_OBJECTS]
    local = np.concatenate(selected).astype(np.int64)

    sel_boxes = boxes[local]
    sel_velocity = observation.velocity[0, present[local]]
    sel_agent = is_agent[local]
    speed = np.where(sel_agent, np.linalg.norm(sel_velocity, axis=1), 0.0)
    heading = sel_boxes[:, 2]
    velocity_angle = np.arctan2(sel_velocity[:, 1], sel_velocity[:, 0])
    forward = np.abs(_normalize_angle(heading - velocity_angle)) < np.pi / 2.0
    track_heading = np.where(forward, heading, _normalize_angle(heading + np.pi))
    dxy = np.where(sel_agent[:, None], speed[:, None] * np.stack([np.cos(track_heading), np.sin(track_heading)], -1), 0)
    corners = box_corners(
        sel_boxes[:, 0], sel_boxes[:, 1], heading, sel_boxes[:, 3] / 2.0, sel_boxes[:, 4] / 2.0
    )  # [N, 4, 2]

    lights = [str(t) for t in red_light_tokens]
    if drivable_map is None and lights:
        raise InvalidSceneError("PDM-Closed forecast: red lights given but no drivable map to look their polygons up")
    lights = [t for t in lights if drivable_map is not None and drivable_map.token_mask([t]).any()]
    light_polygons = np.array([drivable_map.polygon(t) for t in lights], dtype=object)

    num_samples = FORECAST_STEPS // OBSERVATION_SAMPLE_RES + 1
    polygons, centers = [], []
    for sample in range(0, num_samples * OBSERVATION_SAMPLE_RES, OBSERVATION_SAMPLE_RES):
        delta_t = float(sample) * INTERVAL_S
        moved = corners + delta_t * dxy[:, None, :]
        object_polygons = shapely.polygons(moved) if len(local) else np.zeros(0, dtype=object)
        polygons.append(np.concatenate([object_polygons, light_polygons]))
        moved_centers = sel_boxes[:, :2] + delta_t * dxy
        centers.append(np.concatenate([moved_centers, np.full((len(lights), 2), np.nan)]))

    tokens = [observation.tokens[present[i]] for i in local] + [f"{RED_LIGHT_TOKEN}_{t}" for t in lights]
    is_red_light = np.concatenate([np.zeros(len(local), dtype=bool), np.ones(len(lights), dtype=bool)])
    ego_polygon = _ego_polygons(ego.pose, vehicle)
    collided = shapely.intersects(polygons[0], ego_polygon) if len(tokens) else np.zeros(0, dtype=bool)
    if len(lights):
        collided[is_red_light] &= shapely.within(ego_polygon, light_polygons)
    return PDMClosedForecast(
        tokens=tokens,
        object_index=np.concatenate([present[local], -np.ones(len(lights), dtype=np.int64)]),
        polygons=polygons,
        centers=np.stack(centers),
        is_red_light=is_red_light,
        lead_speed=np.concatenate([speed, np.zeros(len(lights))]),
        heading=np.concatenate([heading, np.zeros(len(lights))]),
        collided=np.asarray(collided, dtype=bool),
    )


def forecast_observation(
    ego: EgoState,
    observation: Observation,
    num_steps: int = FORECAST_STEPS,
    vehicle: VehicleParameters = PACIFICA,
    drop_collided: bool = False,
) -> Observation:
    """The planner's object forecast as an :class:`Observation` (what a PDM-Closed ``select`` must score against).

    Step ``t`` holds the boxes at ``0.2 * (t // 2)`` s (the forecast's 0.2 s resolution), headings and velocities
    of t0 (``unique_objects``); red lights are not objects here: pass the t0 red lane connectors for every step.
    ``drop_collided`` leaves out the objects overlapping the ego at t0 (the observation's ``collided_track_ids``,
    which the official scorer skips in NC and TTC from the first step on).
    """
    forecast = build_forecast(ego, observation, None, [], vehicle)
    keep = ~forecast.collided if drop_collided else np.ones(len(forecast.tokens), dtype=bool)
    columns = forecast.object_index[keep]
    steps = np.arange(num_steps) // OBSERVATION_SAMPLE_RES
    if steps.max(initial=0) >= len(forecast.polygons):
        raise InvalidSceneError(f"forecast_observation: at most {FORECAST_STEPS + 1} steps, got {num_steps}")
    boxes = np.repeat(observation.boxes[0, columns][None], num_steps, axis=0)
    boxes[:, :, :2] = forecast.centers[steps][:, keep]
    velocity = np.repeat(observation.velocity[0, columns][None], num_steps, axis=0)
    present = np.ones((num_steps, len(columns)), dtype=bool)
    tokens = [token for token, kept in zip(forecast.tokens, keep, strict=True) if kept]
    return Observation(tokens, observation.types[columns], present, boxes, velocity)


def _leading_agents(
    path: PDMPath,
    forecast: PDMClosedForecast,
    corridor: shapely.Polygon,
    step: int,
    previous_progress: np.ndarray,
    previous_poses: np.ndarray,
    vehicle: VehicleParameters,
) -> np.ndarray:
    """[P, 3] (lead progress, lead speed, lead rear length) for the P proposals sharing ``path``."""
    polygons = forecast.polygons_at_step(step)
    result = np.zeros((len(previous_progress), 3))
    if len(polygons):
        hits = np.flatnonzero(shapely.intersects(polygons, corridor) & ~forecast.collided)
    else:
        hits = np.zeros(0, dtype=np.int64)
    object_progress = path.project(shapely.get_coordinates(shapely.centroid(polygons[hits]))) if len(hits) else None
    row = np.zeros(3)  # deliberately shared across proposals, as in the official generator
    for i, progress in enumerate(previous_progress):
        ahead = hits[object_progress > progress] if object_progress is not None else hits
        if len(ahead):
            ego_polygon = _ego_polygons(previous_poses[i], vehicle)
            distances = shapely.distance(ego_polygon, polygons[ahead])
            nearest = int(np.argmin(distances))
            obj = ahead[nearest]
            row[_PROGRESS] = progress + distances[nearest]
            if not forecast.is_red_light[obj]:
                relative = _normalize_angle(forecast.heading[obj] - previous_poses[i, 2])
                row[_VELOCITY] = forecast.lead_speed[obj] * np.cos(relative)
        else:
            row[_PROGRESS] = path.linestring.length
            row[_LENGTH_REAR] = vehicle.length / 2.0
        result[i] = row
    return result


def pdm_closed_proposals(
    ego: EgoState,
    centerline: Centerline,
    observation: Observation,
    drivable_map: DrivableMap,
    red_light_tokens: Sequence[str],
    speed_limit_mps: float | None = None,
    idm: BatchIDMPolicy = PDM_CLOSED_IDM,
    lateral_offsets: Sequence[float] = LATERAL_OFFSETS,
    vehicle: VehicleParameters = PACIFICA,
) -> np.ndarray:
    """The 15 PDM-Closed proposals as global rear-axle poses [3 paths * 5 policies, 41, 3] at t0 + 0.1 s * k.

    Only step 0 of ``observation`` is used: pass the current frame's objects (e.g.
    ``observation_from_frames([current_frame], 1)``), not a metric-cache observation whose step 0 also holds the
    single-appearance tracks of later frames. ``red_light_tokens``: on-route lane connectors that are red at t0.
    """
    center_path = PDMPath(centerline.poses)
    paths = [center_path] + [center_path.offset(offset) for offset in lateral_offsets]
    targets = idm.target_velocities(speed_limit_mps)
    num_policies = len(targets)
    forecast = build_forecast(ego, observation, drivable_map, red_light_tokens, vehicle)
    corridor_length = abs(float(np.max(targets))) * TRAJECTORY_NUM_POSES * INTERVAL_S

    proposals = np.zeros((len(paths) * num_policies, PROPOSAL_NUM_POSES + 1, 3))
    for path_index, path in enumerate(paths):
        progress = np.full(num_policies, float(path.project(ego.pose[:2])))
        velocity = np.full(num_policies, float(ego.vx))
        poses = np.repeat(path.interpolate(progress[:1]), num_policies, axis=0)
        corridor = path.substring(progress[0], progress[0] + corridor_length).buffer(
            vehicle.half_width, cap_style="square"
        )
        batch = slice(path_index * num_policies, (path_index + 1) * num_policies)
        proposals[batch, 0] = poses
        lead = np.zeros((num_policies, 3))  # the never-written t0 entry, copied at step 1
        for step in range(1, PROPOSAL_NUM_POSES + 1):
            if step % LEADING_AGENT_UPDATE_RATE == 0:
                lead = _leading_agents(path, forecast, corridor, step, progress, poses, vehicle)
            progress, velocity = idm.propagate(
                progress, velocity, lead[:, _PROGRESS], lead[:, _VELOCITY], lead[:, _LENGTH_REAR], targets, INTERVAL_S
            )
            poses = path.interpolate(progress)
            proposals[batch, step] = poses
    return proposals


def plan_pdm_closed(
    ego: EgoState,
    centerline: Centerline,
    observation: Observation,
    drivable_map: DrivableMap,
    red_light_tokens: Sequence[str],
    speed_limit_mps: float | None,
    select: Callable[[np.ndarray], int],
) -> np.ndarray:
    """PDM-Closed reference: the proposal [41, 3] that ``select(proposals [15, 41, 3])`` picks."""
    proposals = pdm_closed_proposals(ego, centerline, observation, drivable_map, red_light_tokens, speed_limit_mps)
    return pick_proposal(proposals, select)


def pick_proposal(proposals: np.ndarray, select: Callable[[np.ndarray], int]) -> np.ndarray:
    """The proposal [41, 3] that ``select(proposals [P, 41, 3]) -> index`` picks (given a copy), index checked."""
    choice = select(proposals.copy())
    try:
        index = operator.index(choice)
    except TypeError:
        raise InvalidSceneError(f"PDM-Closed select returned {choice!r}, expected an integer index") from None
    if not 0 <= index < len(proposals):
        raise InvalidSceneError(f"PDM-Closed select returned index {index}, expected 0..{len(proposals) - 1}")
    return proposals[index]
