"""Reactive background traffic: NAVSIM v2's IDM agents (``NavsimIDMTrafficAgents``), which two-stage scoring uses.

Read in ``navsim/traffic_agents_policies/navsim_IDM_traffic_agents.py``, ``navsim/planning/simulation/observation/
{navsim_idm_agents.py, navsim_idm/*.py}`` (``main``) and the nuPlan devkit v1.2 pieces they build on
(``observation/idm/{idm_agent.py, idm_agent_manager.py, idm_agents_builder.py, idm_policy.py, utils.py}``,
``simulation/path/{interpolated_path.py, utils.py}``, ``occupancy_map/strtree_occupancy_map.py``), configured as in
``navsim_IDM_traffic_agents.yaml``. What this reproduces, quirks included:

* Set-up (once per scene, from the t0 vehicles and the map; :func:`reactive_traffic_setup`): a vehicle gets an IDM
  agent when its centre lies in a lane (else, in an intersection: a lane connector) whose baseline passes within
  3 m; of several containing lanes the one whose nearest baseline heading differs least (unwrapped) is taken. The
  box is snapped onto the baseline and dropped if it overlaps the ego box or an agent placed before it. Its path is
  the lane's baseline as nuPlan's ``create_path_from_se2`` builds it: vertices whose successor is at the same
  progress are dropped, and so is the last vertex. Speed = |v| at t0, target = the lane's speed limit, else 10 m/s.
* Each 0.1 s step ``k`` (1..40) sees the ego at simulated step ``k - 1`` as a box CENTRED on the simulated rear
  axle (``build_ego_state_from_simulated_ego_states`` passes the rear axle as the footprint centre). Agents more
  than 100 m from that point are dropped for good. Every agent, in order, looks along its remaining path (buffered
  by half its width, flat caps) for the nearest other occupancy entry (distance between nearest points of its own
  entry and the other's, after every entry is simplified with tolerance 1e-5); the ego leads with its speed,
  another agent with its path speed, both projected by the relative heading. One explicit Euler step of the IDM
  (exponent 4, s0 1 m, T 1.5 s, a 1, b 2, speed clamped at 0), then the agent's entry becomes its projected
  footprint (box plus the path ahead for ``L/2 + 1.5 s * v``), which later agents of the same step see.
* No route planning (no traffic-light data reaches the agents), so an agent stops at its lane's end.
* Vehicles without an agent (or dropped) are kept at their t0 pose when parked off the lanes (|v| < 0.1 m/s,
  centre in no lane or intersection) or more than 3 m off their lane's baseline, unless they overlap an agent or
  a vehicle kept before them in that step; the others vanish.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.ops import nearest_points

from navsim_eval.errors import InvalidSceneError
from navsim_eval.geometry import box_corners, ego_corners_and_center, principal_value
from navsim_eval.maps.nuplan_map import NuPlanMap, SemanticMapLayer
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import OBJECT_TYPE_CODE, EgoState, ObjectType
from navsim_eval.sim.state import StateIndex
from navsim_eval.vehicle import PACIFICA

TARGET_VELOCITY = 10.0  # [m/s] without a lane speed limit
MIN_GAP = 1.0  # s0 [m]
HEADWAY = 1.5  # T [s]
ACCEL_MAX = 1.0  # [m/s^2]
DECEL_MAX = 2.0  # [m/s^2]
ACCEL_EXPONENT = 4
RADIUS = 100.0  # [m] agents farther from the ego are dropped
SNAP_THRESHOLD = 3.0  # [m] lateral distance to the baseline beyond which a vehicle gets no agent
STATIONARY_SPEED = 0.1  # [m/s] a parked vehicle
HEADING_ESTIMATION = 0.5  # [m] nuPlan's baseline heading look-ahead
SIMPLIFY_TOLERANCE = 1e-5
DT = 0.1
NUM_STEPS = 40
EGO_TOKEN = "ego"
VEHICLE_CODE = OBJECT_TYPE_CODE[ObjectType.VEHICLE]


# --------------------------------------------------------------------------------------------------- set-up


@dataclass
class IdmAgentSetup:
    """One t0 vehicle the IDM drives along its lane: its column in the current objects, its path, and its start."""

    column: int
    path: np.ndarray  # [M, 4] progress, x, y, heading (create_path_from_se2)
    box_pose: np.ndarray  # [3] the t0 box snapped onto the baseline
    progress: float
    velocity: float
    target_velocity: float


@dataclass
class ReactiveTraffic:
    """What the IDM agents need from the map, computed once per scene (the cache holds no map)."""

    agents: list[IdmAgentSetup]
    kept_if_free: np.ndarray  # [N] bool over the current objects: a vehicle kept at its t0 pose when it has no agent


def _polyline_pose(line: shapely.LineString, point: shapely.Point) -> tuple[float, np.ndarray]:
    """nuPlan's ``get_nearest_arc_length_from_position`` and ``get_nearest_pose_from_position``."""
    arc = float(line.project(point))
    first = line.interpolate(arc)
    second = line.interpolate(arc + HEADING_ESTIMATION)
    if first.equals_exact(second, 0.0):  # at the end of the baseline: look back instead
        second = line.interpolate(arc - HEADING_ESTIMATION)
        heading = math.atan2(first.y - second.y, first.x - second.x)
    else:
        heading = math.atan2(second.y - first.y, second.x - first.x)
    return arc, np.array([first.x, first.y, heading])


def _starting_segment(nuplan_map: NuPlanMap, pose: np.ndarray):
    """``get_starting_segment``: (segment, arc length, nearest baseline pose) or (None, None, None)."""
    if nuplan_map.is_in_layer(pose[:2], SemanticMapLayer.LANE):
        layer = SemanticMapLayer.LANE
    elif nuplan_map.is_in_layer(pose[:2], SemanticMapLayer.INTERSECTION):
        layer = SemanticMapLayer.LANE_CONNECTOR
    else:
        return None, None, None
    segments = nuplan_map.get_all_map_objects(pose[:2], layer)
    if not segments:
        return None, None, None
    point = shapely.Point(float(pose[0]), float(pose[1]))
    nearest = [_polyline_pose(segment.baseline_path.linestring, point) for segment in segments]
    differences = [candidate[1][2] - pose[2] for candidate in nearest]  # not wrapped, as in nuPlan
    best = int(np.argmin(np.abs(differences)))
    return segments[best], nearest[best][0], nearest[best][1]


def agent_path(discrete_path: np.ndarray) -> np.ndarray:
    """nuPlan's ``create_path_from_se2``: [M, 4] (progress, x, y, heading); a vertex whose successor lies at the
    same progress is dropped, and the zip over the N - 1 progress differences drops the last vertex too."""
    xy = discrete_path[:, :2]
    progress = np.cumsum(np.append(0.0, np.linalg.norm(np.diff(xy, axis=0), axis=1)))
    repeated = np.isclose(np.diff(progress), 0.0)
    keep = np.flatnonzero(~repeated)
    return np.column_stack([progress[keep], discrete_path[keep]])


def reactive_traffic_setup(ego: EgoState, current: Observation, nuplan_map: NuPlanMap) -> ReactiveTraffic:
    """The IDM agents of a scene (``build_idm_agents_on_map_rails``) and which vehicles stay at their t0 pose
    when they have no agent (``NavsimIDMAgents.get_observation``'s parked-vehicle rule, without its overlap test)."""
    ego_box = shapely.Polygon(ego_corners_and_center(ego.pose, PACIFICA)[:4])
    placed = [ego_box]  # the occupancy map for the overlap test
    agents: list[IdmAgentSetup] = []
    kept_if_free = np.zeros(len(current.tokens), dtype=bool)
    for column in np.flatnonzero(current.types == VEHICLE_CODE):
        box = current.boxes[0, column]
        velocity = current.velocity[0, column]
        segment, arc, on_path = _starting_segment(nuplan_map, box[:3])
        deviation = None if segment is None else float(np.hypot(on_path[0] - box[0], on_path[1] - box[1]))
        parked = float(np.hypot(*velocity)) < STATIONARY_SPEED and not (
            nuplan_map.is_in_layer(box[:2], SemanticMapLayer.LANE)
            or nuplan_map.is_in_layer(box[:2], SemanticMapLayer.INTERSECTION)
        )
        kept_if_free[column] = parked or (deviation is not None and deviation > SNAP_THRESHOLD)
        if segment is None or deviation > SNAP_THRESHOLD:
            continue
        snapped = shapely.Polygon(box_corners(on_path[0], on_path[1], on_path[2], box[3] / 2.0, box[4] / 2.0))
        if any(other.intersects(snapped) for other in placed):
            continue
        placed.append(snapped)
        path = agent_path(segment.baseline_path.discrete_path)
        if len(path) < 2:
            raise InvalidSceneError(
                f"reactive traffic: the baseline of {segment.id} gives the IDM agent of {current.tokens[column]} "
                "a path of fewer than 2 poses"
            )
        speed_limit = segment.speed_limit_mps
        agents.append(
            IdmAgentSetup(
                column=int(column),
                path=path,
                box_pose=on_path,
                progress=float(arc),
                velocity=float(np.hypot(velocity[0], velocity[1])),
                target_velocity=float(speed_limit) if speed_limit else TARGET_VELOCITY,
            )
        )
    return ReactiveTraffic(agents, kept_if_free)


# --------------------------------------------------------------------------------------------------- simulation


class _AgentPath:
    """nuPlan's ``InterpolatedPath`` over [M, 4] (progress, x, y, heading) and the trims the agents use.

    Interpolation is SciPy's ``interp1d`` (linear; the heading unwrapped first, wrapped back with nuPlan's
    ``principal_value``) written out for one point in Python floats: the same IEEE operations, far less overhead.
    """

    def __init__(self, points: np.ndarray):
        self.points = points
        self.start, self.end = float(points[0, 0]), float(points[-1, 0])
        self._progress = points[:, 0].tolist()
        self._values = np.column_stack([points[:, 1:3], np.unwrap(points[:, 3])]).tolist()

    def state(self, progress: float) -> tuple[float, float, float]:
        """(x, y, heading) at ``progress`` (within the path)."""
        nodes = self._progress
        hi = min(max(bisect.bisect_left(nodes, progress), 1), len(nodes) - 1)
        lo = hi - 1
        offset, span = progress - nodes[lo], nodes[hi] - nodes[lo]
        low, high = self._values[lo], self._values[hi]
        x, y, heading = ((b - a) / span * offset + a for a, b in zip(low, high, strict=True))
        return x, y, (heading - -math.pi) % (2 * math.pi) + -math.pi

    def states(self, progress: np.ndarray) -> np.ndarray:
        """[..., 3] (x, y, heading) at the progresses."""
        flat = [self.state(float(p)) for p in np.ravel(progress)]
        return np.array(flat).reshape((*np.shape(progress), 3))

    def remaining(self, progress: float) -> shapely.LineString:
        """``trim_path_up_to_progress`` as a line: the state at ``progress`` and every vertex beyond it."""
        later = np.flatnonzero(self.points[:, 0] > progress)
        if len(later) == 0:
            return shapely.LineString(self.points[-2:, 1:3])
        head = np.array(self.state(progress)[:2])
        return shapely.LineString(np.vstack([head[None], self.points[later[0] :, 1:3]]))

    def between(self, start: float, end: float) -> shapely.LineString:
        """``trim_path``: the states at ``start`` and ``end`` and the vertices strictly between them."""
        front = np.flatnonzero(self.points[:, 0] > start)
        if len(front) == 0:
            return shapely.LineString(self.points[-2:, 1:3])
        tail = np.flatnonzero(self.points[:, 0] < end)
        if len(tail) == 0:
            return shapely.LineString(self.points[:2, 1:3])
        ends = self.states(np.array([start, end]))
        inner = self.points[front[0] : tail[-1] + 1, 1:3]
        return shapely.LineString(np.vstack([ends[:1, :2], inner, ends[1:, :2]]))


class _Agent:
    """An IDM agent's longitudinal state on its path, with its box and footprints."""

    def __init__(self, setup: IdmAgentSetup, length: float, width: float):
        self.path = _AgentPath(setup.path)
        self.progress, self.velocity = setup.progress, setup.velocity
        self.target = setup.target_velocity
        self.length, self.width = length, width
        self._pose_at: tuple[float, np.ndarray] | None = None

    def clamp(self, progress: float) -> float:
        return max(self.path.start, min(progress, self.path.end))

    def pose(self) -> np.ndarray:
        """(x, y, heading) at the bounded progress."""
        progress = self.clamp(self.progress)
        if self._pose_at is None or self._pose_at[0] != progress:
            self._pose_at = (progress, np.array(self.path.state(progress)))
        return self._pose_at[1]

    def polygon(self) -> shapely.Polygon:
        x, y, heading = self.pose()
        return _box(x, y, heading, self.length / 2.0, self.width / 2.0)

    def projected_footprint(self) -> shapely.Geometry:
        start = self.clamp(self.progress - self.length / 2.0)
        end = self.clamp(self.progress + self.length / 2.0 + self.velocity * HEADWAY)
        ahead = shapely.buffer(self.path.between(start, end), self.width / 2.0, cap_style="flat")
        return shapely.unary_union([ahead, self.polygon()])

    def propagate(self, lead_distance: float, lead_velocity: float, length_rear: float) -> None:
        """One explicit Euler step of nuPlan's ``IDMPolicy`` (progress measured from the agent, i.e. 0)."""
        v = self.velocity
        s_star = MIN_GAP + v * HEADWAY + (v * (v - lead_velocity)) / (2 * math.sqrt(ACCEL_MAX * DECEL_MAX))
        s_alpha = max(lead_distance - 0 - length_rear, MIN_GAP)
        v_dot = ACCEL_MAX * (1 - (v / self.target) ** ACCEL_EXPONENT - (s_star / s_alpha) ** 2)
        self.progress += 0 + DT * v
        self.velocity = max(v + DT * min(max(-DECEL_MAX, v_dot), ACCEL_MAX), 0)


def _box(x: float, y: float, heading: float, half_length: float, half_width: float) -> shapely.Polygon:
    """One box polygon with :func:`geometry.box_corners`' float operations (without its array overhead)."""
    cos_h, sin_h = np.cos(heading), np.sin(heading)
    cos_l, sin_l = np.cos(heading + np.pi / 2.0), np.sin(heading + np.pi / 2.0)
    signs = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))
    corners = []
    for lon_sign, lat_sign in signs:
        lon, lat = lon_sign * half_length, lat_sign * half_width
        corners.append((x + (lat * cos_l + lon * cos_h), y + (lat * sin_l + lon * sin_h)))
    return shapely.Polygon(corners)


def _ego_box_on_rear_axle(state: np.ndarray) -> shapely.Polygon:
    """The ego box the agents see: centred on the simulated rear axle (an official quirk)."""
    x, y, heading = state[StateIndex.X], state[StateIndex.Y], state[StateIndex.HEADING]
    return _box(x, y, heading, PACIFICA.half_length, PACIFICA.half_width)


def _lead(
    token: str, agent: _Agent, occupancy: dict[str, shapely.Geometry], agents: dict[str, _Agent], ego: np.ndarray
) -> tuple[float, float, float]:
    """(distance, projected speed, rear length) of the agent's leader (``NavsimIDMAgentManager.propagate_agents``)."""
    ids = list(occupancy)
    simplified = shapely.simplify(np.array(list(occupancy.values()), dtype=object), SIMPLIFY_TOLERANCE)
    occupancy.update(zip(ids, simplified, strict=True))
    corridor = shapely.buffer(agent.path.remaining(agent.clamp(agent.progress)), agent.width / 2.0, cap_style="flat")
    tree = shapely.STRtree(simplified)
    hits = [int(i) for i in tree.query(corridor) if simplified[i].intersects(corridor)]
    if token not in {ids[i] for i in hits}:
        raise InvalidSceneError(f"reactive traffic: agent {token}'s path does not cross its own footprint")
    if len(hits) <= 1:
        return agent.path.end - agent.progress, 0.0, agent.length / 2.0  # free road: the end of the path
    own = occupancy[token]
    others = [i for i in hits if ids[i] not in token]  # a substring test, as the official ``not in ignore_id``
    others_tree = shapely.STRtree([simplified[i] for i in others])
    nearest = others[int(others_tree.nearest(own))]
    near_own, near_other = nearest_points(own, simplified[nearest])
    distance = near_own.distance(near_other)
    nearest_id = ids[nearest]
    heading = agent.pose()[2]
    if EGO_TOKEN in nearest_id:
        speed = float(np.hypot(ego[StateIndex.VELOCITY_X], ego[StateIndex.VELOCITY_Y]))
        relative = ego[StateIndex.HEADING] - heading
    elif "stop_line" in nearest_id:
        speed, relative = 0.0, 0.0
    elif nearest_id in agents:
        speed, relative = agents[nearest_id].velocity, agents[nearest_id].pose()[2] - heading
    else:
        speed, relative = 0.0, 0.0
    return distance, speed * np.cos(principal_value(relative)), 0.0


def reactive_observation(
    ego_states: np.ndarray, current: Observation, later: Observation, traffic: ReactiveTraffic
) -> Observation:
    """The 41-step observation the scorer sees while the ego drives ``ego_states`` [41, 11] (reactive v2 traffic).

    Step 0 holds ``current`` (the t0 objects as logged); step k holds the IDM vehicles and the kept vehicles after
    k steps, plus the non-vehicle objects of ``later`` (the cache's interpolated observation) at step k.
    """
    num_steps = NUM_STEPS + 1
    vehicle_columns = np.flatnonzero(current.types == VEHICLE_CODE)
    later_static = [j for j in range(len(later.tokens)) if later.types[j] != VEHICLE_CODE]
    current_index = {token: i for i, token in enumerate(current.tokens)}
    extra = [j for j in later_static if later.tokens[j] not in current_index]
    tokens = list(current.tokens) + [later.tokens[j] for j in extra]
    extra_column = {j: len(current.tokens) + k for k, j in enumerate(extra)}
    column_of_later = {j: current_index.get(later.tokens[j], extra_column.get(j)) for j in later_static}
    types = np.concatenate([current.types, later.types[extra]]).astype(np.int8)
    present = np.zeros((num_steps, len(tokens)), dtype=bool)
    boxes = np.full((num_steps, len(tokens), 5), np.nan)
    velocity = np.full((num_steps, len(tokens), 2), np.nan)
    n_current = len(current.tokens)
    present[0, :n_current] = current.present[0]
    boxes[0, :n_current] = current.boxes[0]
    velocity[0, :n_current] = current.velocity[0]
    for j, column in column_of_later.items():
        steps = np.flatnonzero(later.present[1:num_steps, j]) + 1
        present[steps, column] = True
        boxes[steps, column] = later.boxes[steps, j]
        velocity[steps, column] = later.velocity[steps, j]

    agents = {
        current.tokens[s.column]: _Agent(s, float(current.boxes[0, s.column, 3]), float(current.boxes[0, s.column, 4]))
        for s in traffic.agents
    }
    occupancy: dict[str, shapely.Geometry] = {}
    for setup in traffic.agents:
        box = current.boxes[0, setup.column]
        pose = setup.box_pose
        occupancy[current.tokens[setup.column]] = _box(pose[0], pose[1], pose[2], box[3] / 2.0, box[4] / 2.0)
    for step in range(1, num_steps):
        ego = ego_states[step - 1]
        occupancy[EGO_TOKEN] = _ego_box_on_rear_axle(ego)
        for token in [t for t, a in agents.items() if math.dist(ego[:2], a.pose()[:2]) > RADIUS]:
            del agents[token]
            del occupancy[token]
        for token, agent in agents.items():
            agent.propagate(*_lead(token, agent, occupancy, agents, ego))
            occupancy[token] = agent.projected_footprint()
        _write_vehicles(step, agents, current, vehicle_columns, traffic.kept_if_free, present, boxes, velocity)
    return Observation(tokens, types, present, boxes, velocity)


def _write_vehicles(
    step: int,
    agents: dict[str, _Agent],
    current: Observation,
    vehicle_columns: np.ndarray,
    kept_if_free: np.ndarray,
    present: np.ndarray,
    boxes: np.ndarray,
    velocity: np.ndarray,
) -> None:
    """The vehicles of one step: every agent at its pose, then the kept vehicles that overlap none before them."""
    index = {token: i for i, token in enumerate(current.tokens)}
    placed = []
    for token, agent in agents.items():
        column = index[token]
        x, y, heading = agent.pose()
        present[step, column] = True
        boxes[step, column] = (x, y, heading, agent.length, agent.width)
        velocity[step, column] = (agent.velocity * np.cos(heading), agent.velocity * np.sin(heading))
        placed.append(agent.polygon())
    for column in vehicle_columns:
        if current.tokens[column] in agents or not kept_if_free[column]:
            continue
        box = current.boxes[0, column]
        polygon = _box(box[0], box[1], box[2], box[3] / 2.0, box[4] / 2.0)
        if any(polygon.intersects(other) for other in placed):
            continue
        placed.append(polygon)
        present[step, column] = True
        boxes[step, column] = box
        velocity[step, column] = current.velocity[0, column]
