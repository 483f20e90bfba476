"""Traffic in the synthetic world: routes through the lane graph, signals, right of way, IDM vehicles, pedestrians,
static objects and the imperfect human-like ego driver whose logged trajectories become the "human" plans.

Everything runs at 10 Hz. Vehicles follow their route's centerline with the Intelligent Driver Model, treating as
obstacles whatever is in their corridor ahead (same-direction vehicles, pedestrians, static objects, the ego), the
stop line of a red (or catchable yellow) signal, and the entry of a junction connector while a conflicting vehicle
with right of way is close (``Lane.yield_to``). Scenarios script the rest: hard braking (:class:`BrakeEvent`),
cut-ins (:class:`CutIn`), pedestrians stepping out when the ego comes close, the ego passing an obstacle in the next
lane (:class:`Avoidance`).

The ego looks at everything in its corridor, crossing traffic too, anticipates pedestrians stepping into it and
vehicles starting to cut in, and acts after a reaction time (its commands are applied ``reaction_s`` late). Driver
profiles make it imperfect as real drivers are: too cautious (slow, long gaps: low progress), too close (short
headways: time-to-collision), sloppy (weaving: lane keeping), late to react (harsh braking: comfort).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from navsim_eval.synthetic.network import TrafficLightGroup
from navsim_eval.vehicle import PACIFICA

DT = 0.1
GREEN_S, YELLOW_S, ALL_RED_S = 18.0, 3.0, 2.0
CYCLE_S = 2 * (GREEN_S + YELLOW_S + ALL_RED_S)
LOOKAHEAD_M = 60.0
LOOKAHEAD_STEP_M = 1.0
YELLOW_STOP_DECELERATION = 2.5  # m/s^2: stopping for a yellow light harder than this, a driver goes through
PEDESTRIAN_YIELD_DISTANCE_M = 40.0  # background pedestrians wait at the curb while the ego is this close and moving
MAX_BRAKE = 8.0  # m/s^2, the tyres' limit
PEDESTRIAN_ANTICIPATION_S = 2.5  # the ego brakes for a pedestrian about to step into its corridor


# ------------------------------------------------------------------------------------------------ routes


class RoutePath:
    """A route through the lane graph as one polyline with arc length, and where each lane starts and ends."""

    def __init__(self, network, lane_ids: list[str]):
        self.lane_ids = list(lane_ids)
        # A lane's first sample repeats the previous lane's last one (the joint), so later lanes drop it.
        pieces = [network.lanes[lane_id].centerline[(1 if i else 0) :] for i, lane_id in enumerate(self.lane_ids)]
        self.points = np.concatenate(pieces)
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points[:, :2], axis=0), axis=1))])
        self.heading = np.unwrap(self.points[:, 2])
        first_sample = np.cumsum([0] + [len(piece) for piece in pieces[:-1]])
        self.lane_start = np.concatenate([[0.0], self.s[first_sample[1:] - 1]])
        self.lane_end = np.append(self.lane_start[1:], self.s[-1])
        self.speed_limits = np.array([network.lanes[i].speed_limit for i in self.lane_ids])
        self.connector = np.array([network.lanes[i].is_connector for i in self.lane_ids])
        self.index = {lane_id: k for k, lane_id in enumerate(self.lane_ids)}  # first occurrence
        self.yield_to = [list(network.lanes[i].yield_to) for i in self.lane_ids]
        # Per conflict: whether its path joins this lane's (same exit lane) rather than crossing it.
        self.yield_joins = [
            [network.lanes[c].successors == network.lanes[i].successors for c in network.lanes[i].yield_to]
            for i in self.lane_ids
        ]

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def pose(self, s: np.ndarray | float) -> np.ndarray:
        """(x, y, heading) at arc length ``s`` (clamped to the path)."""
        s = np.clip(s, 0.0, self.s[-1])
        x = np.interp(s, self.s, self.points[:, 0])
        y = np.interp(s, self.s, self.points[:, 1])
        h = np.interp(s, self.s, self.heading)
        return np.stack([x, y, (h + np.pi) % (2 * np.pi) - np.pi], axis=-1)

    def lane_index_at(self, s: float) -> int:
        return int(min(np.searchsorted(self.lane_end, s, side="right"), len(self.lane_ids) - 1))

    def curvature(self, s: float, ds: float = 2.0) -> float:
        h = np.interp([s - ds, s + ds], self.s, self.heading)
        return float((h[1] - h[0]) / (2 * ds))

    def max_curvature(self, s: float, ahead: float, ds: float = 2.0) -> float:
        """The largest |curvature| between ``s`` and ``s + ahead``."""
        grid = np.arange(s, s + ahead + 1e-9, 2.0)
        h = np.interp(np.concatenate([grid - ds, grid + ds]), self.s, self.heading)
        return float(np.max(np.abs(h[len(grid) :] - h[: len(grid)])) / (2 * ds))


def random_route(
    network, rng: np.random.Generator, start_lane: str, min_length: float, straight_bias: float = 0.5
) -> list[str]:
    """A random walk through the lane graph from ``start_lane`` until ``min_length`` metres are covered."""
    route = [start_lane]
    length = network.lanes[start_lane].length
    while length < min_length:
        successors = network.lanes[route[-1]].successors
        if not successors:
            break
        straight = [s for s in successors if network.lanes[s].turn == "straight"]
        if straight and (len(straight) == len(successors) or rng.random() < straight_bias):
            choice = straight[int(rng.integers(len(straight)))]
        else:
            choice = successors[int(rng.integers(len(successors)))]
        route.append(choice)
        length += network.lanes[choice].length
    return route


# ------------------------------------------------------------------------------------------------ signals


class Signals:
    """Fixed-time signals: at every node the two phases ("ns" and "ew" approaches) alternate, nodes staggered."""

    def __init__(self, groups: list[TrafficLightGroup], rng: np.random.Generator):
        self.offsets = {group.node: float(rng.uniform(0.0, CYCLE_S)) for group in groups}
        self.connectors: dict[str, tuple[str, str]] = {}
        for group in groups:
            for connector_id in group.connector_ids:
                self.connectors[connector_id] = (group.node, group.approach)

    def _phase(self, connector_id: str, t: float) -> float:
        node, approach = self.connectors[connector_id]
        phase = (t + self.offsets[node]) % CYCLE_S
        return (phase + CYCLE_S / 2.0) % CYCLE_S if approach == "ew" else phase

    def state(self, connector_id: str, t: float) -> str | None:
        """'green', 'yellow' or 'red' for a signalised connector at time ``t``; None if it has no signal."""
        if connector_id not in self.connectors:
            return None
        phase = self._phase(connector_id, t)
        if phase < GREEN_S:
            return "green"
        if phase < GREEN_S + YELLOW_S:
            return "yellow"
        return "red"

    def turn_yellow_at(self, connector_id: str, t: float) -> None:
        """Shift the connector's node so that its light turns yellow at time ``t``."""
        node, _ = self.connectors[connector_id]
        self.offsets[node] = 0.0
        self.offsets[node] = (GREEN_S - self._phase(connector_id, t)) % CYCLE_S


# ------------------------------------------------------------------------------------------------ agents


@dataclass
class DriverProfile:
    """How one driver drives: IDM parameters, speed choice, gap acceptance, reaction time, lateral sloppiness."""

    speed_factor: float = 1.0  # desired speed / speed limit
    headway_s: float = 1.5
    min_gap_m: float = 2.0
    accel_max: float = 1.5
    decel_comfort: float = 2.0
    lateral_amplitude_m: float = 0.0  # weaving within the lane
    lateral_period_s: float = 8.0
    lateral_phase: float = 0.0
    gap_acceptance_s: float = 4.0  # the gap a driver with no right of way waits for
    reaction_s: float = 0.0  # the ego's commands are applied this late
    curve_accel: float = 2.0  # lateral acceleration the driver accepts in curves (m/s^2)
    kind: str = "normal"

    @classmethod
    def sample(cls, rng: np.random.Generator, kind: str | None = None) -> DriverProfile:
        """A human-like driver: mostly normal, sometimes too cautious, too close or sloppy."""
        kind = kind or str(rng.choice(["normal", "cautious", "close", "sloppy"], p=[0.55, 0.18, 0.12, 0.15]))
        profile = cls(
            speed_factor=float(rng.uniform(0.9, 1.05)),
            headway_s=float(rng.uniform(1.2, 1.8)),
            min_gap_m=float(rng.uniform(2.0, 3.0)),
            accel_max=float(rng.uniform(1.0, 1.8)),
            decel_comfort=float(rng.uniform(2.0, 3.2)),
            lateral_amplitude_m=float(rng.uniform(0.0, 0.2)),
            lateral_period_s=float(rng.uniform(6.0, 12.0)),
            lateral_phase=float(rng.uniform(0.0, 2 * np.pi)),
            gap_acceptance_s=float(rng.uniform(2.8, 4.0)),
            reaction_s=float(rng.uniform(0.3, 0.7)),
            curve_accel=float(rng.uniform(2.4, 3.4)),
            kind=kind,
        )
        if kind == "cautious":
            profile.speed_factor = float(rng.uniform(0.75, 0.88))
            profile.headway_s = float(rng.uniform(1.8, 2.4))
            profile.gap_acceptance_s = float(rng.uniform(4.0, 5.0))
            profile.curve_accel = float(rng.uniform(1.8, 2.4))
        elif kind == "close":
            profile.headway_s = float(rng.uniform(0.7, 1.0))
            profile.min_gap_m = float(rng.uniform(1.5, 2.0))
            profile.accel_max = float(rng.uniform(1.8, 2.3))
            profile.decel_comfort = float(rng.uniform(2.5, 3.5))
            profile.gap_acceptance_s = float(rng.uniform(2.3, 2.8))
        elif kind == "sloppy":
            # Weaving inside a 3.7 m lane (0.7 m of margin) that sometimes passes the 0.5 m lane-keeping limit.
            profile.lateral_amplitude_m = float(rng.uniform(0.3, 0.45))
            profile.reaction_s = float(rng.uniform(0.6, 0.9))
        return profile

    @classmethod
    def npc(cls, rng: np.random.Generator) -> DriverProfile:
        """Background traffic: a normal driver without reaction delay or weaving."""
        profile = cls.sample(rng, "normal")
        profile.lateral_amplitude_m, profile.reaction_s = 0.0, 0.0
        return profile

    def lateral_offset(self, t: float) -> float:
        return self.lateral_amplitude_m * math.sin(2 * math.pi * t / self.lateral_period_s + self.lateral_phase)


@dataclass
class CutIn:
    """A lane change into the ego's lane that starts once the cutter's rear is ``trigger_gap_m`` or less ahead of
    the ego's front (``start_time`` fixes the time instead)."""

    trigger_gap_m: float
    duration_s: float
    initial_offset: float
    start_time: float | None = None
    brake_after: float = 0.0  # m/s^2 the cutter brakes with once it is in


@dataclass
class BrakeEvent:
    """From ``start_s`` on, brake at ``decel`` down to ``target_speed``, hold it ``hold_s``, then drive on."""

    start_s: float
    decel: float
    target_speed: float = 0.0
    hold_s: float = 2.0
    reached_s: float | None = None

    def command(self, t: float, v: float) -> float | None:
        """The commanded acceleration at time ``t``, or None when the event does not control the vehicle."""
        if t < self.start_s:
            return None
        if self.reached_s is None:
            if v > self.target_speed + 0.05:
                return -self.decel
            self.reached_s = t
        if t < self.reached_s + self.hold_s:
            return (self.target_speed - v) / DT if self.target_speed > 0 else -MAX_BRAKE
        return None


@dataclass
class LaneShift:
    """A sideways move (left positive): smoothstep from 0 to ``offset`` over route arc length [s0, s1], held, and
    back to 0 over [s2, s3]."""

    offset: float
    s0: float
    s1: float
    s2: float = math.inf
    s3: float = math.inf

    def at(self, s: np.ndarray | float) -> np.ndarray | float:
        up = np.clip((np.asarray(s) - self.s0) / max(self.s1 - self.s0, 1e-6), 0.0, 1.0)
        down = np.clip((np.asarray(s) - self.s2) / max(self.s3 - self.s2, 1e-6), 0.0, 1.0)
        smooth = lambda x: x * x * (3.0 - 2.0 * x)  # noqa: E731
        return self.offset * (smooth(up) - smooth(down))


@dataclass
class Avoidance:
    """The ego's plan to pass an obstacle on its lane (route arc length [start_s, end_s]) by moving ``side`` (+1 =
    left) into the lane ``check_lane`` once it is clear; until then it brakes for the obstacle as for anything."""

    start_s: float
    end_s: float
    side: int
    check_lane: str
    oncoming: bool = False
    shift_length_m: float = 25.0
    shift: LaneShift | None = None


@dataclass
class Vehicle:
    """A vehicle following a route; ``s`` is the arc length of its reference point (ego: rear axle; others: box
    centre) on the route, ``offset`` its signed lateral offset from the centerline (left positive)."""

    token: str
    path: RoutePath
    s: float
    v: float
    profile: DriverProfile
    length: float = 4.8
    width: float = 2.0
    height: float = 1.6
    is_ego: bool = False
    parked: bool = False
    a: float = 0.0
    offset: float = 0.0
    cut_in: CutIn | None = None
    heading_offset: float = 0.0
    committed: set[str] = field(default_factory=set)  # junction connectors it decided to drive onto
    brakes: list[BrakeEvent] = field(default_factory=list)
    avoidance: Avoidance | None = None
    pending: deque = field(default_factory=deque)  # commands waiting out the reaction time

    @property
    def center_shift(self) -> float:
        """Distance from the reference point to the box centre along the heading."""
        return PACIFICA.rear_axle_to_center if self.is_ego else 0.0

    @property
    def front_s(self) -> float:
        return self.s + self.center_shift + 0.5 * self.length

    def pose(self) -> np.ndarray:
        """Reference-point pose (x, y, heading) including the lateral offset."""
        x, y, h = self.path.pose(self.s)
        return np.array([x - self.offset * math.sin(h), y + self.offset * math.cos(h), h + self.heading_offset])

    def box_center(self) -> np.ndarray:
        x, y, h = self.pose()
        return np.array([x + self.center_shift * math.cos(h), y + self.center_shift * math.sin(h), h])

    def planned_offset(self, s: np.ndarray) -> np.ndarray:
        """The lateral offset the vehicle means to have at route arc lengths ``s`` (for its corridor)."""
        if self.avoidance is not None and self.avoidance.shift is not None:
            return np.asarray(self.avoidance.shift.at(s))
        return np.zeros_like(s)


@dataclass
class Pedestrian:
    """Someone crossing a road: waits at ``start`` until ``start_time`` and walks along ``direction``.

    With ``trigger_tta`` the start time is set when the ego's front is that many seconds (at its current speed)
    from ``trigger_s`` on its route; ``hidden_m`` metres of the walk are hidden from the ego (behind a parked car)."""

    token: str
    start: np.ndarray
    direction: np.ndarray
    speed: float
    start_time: float
    distance: float
    kind: str = "pedestrian"
    size: tuple[float, float, float] = (0.6, 0.6, 1.75)
    trigger_tta: float | None = None
    trigger_s: float = 0.0
    hidden_m: float = 0.0
    stop_after_m: float | None = None  # stands still after walking this far (hesitates in the lane)
    bold: bool = False  # steps out even when the ego is close (scenario pedestrians)

    def walked(self, t: float) -> float:
        walked = min(max(0.0, (t - self.start_time) * self.speed), self.distance)
        return walked if self.stop_after_m is None else min(walked, self.stop_after_m)

    def state(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at time t (standing before the start, gone after the crossing)."""
        walked = self.walked(t)
        limit = self.distance if self.stop_after_m is None else min(self.distance, self.stop_after_m)
        moving = 0.0 < (t - self.start_time) * self.speed < limit
        return self.start + walked * self.direction, (self.speed * self.direction if moving else np.zeros(2))

    def active(self, t: float) -> bool:
        return (t - self.start_time) * self.speed < self.distance + 2.0


@dataclass
class StaticObject:
    token: str
    kind: str  # traffic_cone, barrier, generic_object, czone_sign or a parked "vehicle"
    pose: np.ndarray  # centre x, y, yaw
    size: tuple[float, float, float]


@dataclass
class TrafficState:
    """All movers and static objects of one log."""

    vehicles: list[Vehicle]
    pedestrians: list[Pedestrian]
    statics: list[StaticObject]
    signals: Signals
    t: float = 0.0
    ego_index: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def ego(self) -> Vehicle:
        return self.vehicles[self.ego_index]


# ------------------------------------------------------------------------------------------------ dynamics


def idm_acceleration(v: float, v0: float, gap: float, v_lead: float, profile: DriverProfile) -> float:
    """Intelligent Driver Model with exponent 4; gap = inf for a free road."""
    v0 = max(v0, 0.1)
    free = 1.0 - (v / v0) ** 4
    if not math.isfinite(gap):
        return profile.accel_max * free
    s_star = profile.min_gap_m + max(
        0.0, v * profile.headway_s + v * (v - v_lead) / (2.0 * math.sqrt(profile.accel_max * profile.decel_comfort))
    )
    return profile.accel_max * (free - (s_star / max(gap, 0.1)) ** 2)


@dataclass
class _Obstacles:
    """Everything a driver may have to stop for this step, as arrays: centre, half-extent radius, velocity,
    heading, and which entries are vehicles (index into ``state.vehicles``), the ego, visible to the ego."""

    center: np.ndarray  # [N, 2]
    radius: np.ndarray
    velocity: np.ndarray  # [N, 2]
    heading: np.ndarray
    vehicle_index: np.ndarray  # -1 for non-vehicles
    is_ego: np.ndarray
    visible_to_ego: np.ndarray
    is_pedestrian: np.ndarray
    cutting_in: np.ndarray


def _obstacles(state: TrafficState) -> _Obstacles:
    centers, radii, velocities, headings, index, ego, visible, walker, cutting = [], [], [], [], [], [], [], [], []
    for k, vehicle in enumerate(state.vehicles):
        x, y, h = vehicle.box_center()
        centers.append((x, y))
        radii.append(0.5 * math.hypot(vehicle.length, vehicle.width))
        velocities.append((vehicle.v * math.cos(h), vehicle.v * math.sin(h)))
        headings.append(h)
        index.append(k)
        ego.append(vehicle.is_ego)
        visible.append(True)
        walker.append(False)
        lane = vehicle.path.lane_index_at(vehicle.s)
        merging = bool(vehicle.path.yield_to[lane]) and vehicle.path.connector[lane]  # joining from a yield
        cutting.append(merging or (vehicle.cut_in is not None and vehicle.cut_in.start_time is not None))
    for person in state.pedestrians:
        if person.active(state.t):
            position, velocity = person.state(state.t)
            centers.append(tuple(position))
            radii.append(0.5)
            velocities.append(tuple(velocity))
            headings.append(math.atan2(person.direction[1], person.direction[0]))
            index.append(-1)
            ego.append(False)
            visible.append(person.walked(state.t) >= person.hidden_m)
            walker.append(True)
            cutting.append(False)
    for static in state.statics:
        centers.append(tuple(static.pose[:2]))
        radii.append(0.5 * math.hypot(static.size[0], static.size[1]))
        velocities.append((0.0, 0.0))
        headings.append(float(static.pose[2]))
        index.append(-1)
        ego.append(False)
        visible.append(True)
        walker.append(False)
        cutting.append(False)
    return _Obstacles(
        np.array(centers, dtype=float).reshape(-1, 2),
        np.array(radii, dtype=float),
        np.array(velocities, dtype=float).reshape(-1, 2),
        np.array(headings, dtype=float),
        np.array(index, dtype=int),
        np.array(ego, dtype=bool),
        np.array(visible, dtype=bool),
        np.array(walker, dtype=bool),
        np.array(cutting, dtype=bool),
    )


_AHEAD = np.arange(0.0, LOOKAHEAD_M, LOOKAHEAD_STEP_M)


def _gap_ahead(vehicle: Vehicle, obstacles: _Obstacles, index: int) -> tuple[float, float]:
    """Distance to the nearest obstacle in the corridor ahead and its speed along the path (inf, 0 if none)."""
    if len(obstacles.radius) <= 1:
        return math.inf, 0.0
    s = vehicle.s + vehicle.center_shift + _AHEAD
    samples = vehicle.path.pose(s)
    offsets = vehicle.planned_offset(s - vehicle.center_shift)  # plans are in reference-point arc length
    if np.any(offsets):
        samples = samples.copy()
        samples[:, 0] -= offsets * np.sin(samples[:, 2])
        samples[:, 1] += offsets * np.cos(samples[:, 2])
    origin = samples[0, :2]
    delta = obstacles.center - origin
    near = np.einsum("ij,ij->i", delta, delta) <= (LOOKAHEAD_M + 10.0) ** 2
    near[index] = False
    if vehicle.is_ego:
        near &= obstacles.visible_to_ego
    candidates = np.flatnonzero(near)
    if candidates.size == 0:
        return math.inf, 0.0
    centers = obstacles.center[candidates]
    distances = np.hypot(samples[:, None, 0] - centers[None, :, 0], samples[:, None, 1] - centers[None, :, 1])
    if vehicle.is_ego:  # a pedestrian about to step into the corridor counts as in it (anywhere on its way there)
        walkers = obstacles.is_pedestrian[candidates] & (np.abs(obstacles.velocity[candidates]).sum(axis=1) > 0)
        for fraction in (0.35, 0.7, 1.0):
            ahead = centers + (walkers * fraction * PEDESTRIAN_ANTICIPATION_S)[:, None] * obstacles.velocity[candidates]
            moved = np.hypot(samples[:, None, 0] - ahead[None, :, 0], samples[:, None, 1] - ahead[None, :, 1])
            distances = np.where(walkers[None, :], np.minimum(distances, moved), distances)
    nearest = np.argmin(distances, axis=0)
    closest = distances[nearest, np.arange(candidates.size)]
    own_heading = vehicle.pose()[2]
    relative = np.abs((obstacles.heading[candidates] - own_heading + np.pi) % (2 * np.pi) - np.pi)
    is_vehicle = obstacles.vehicle_index[candidates] >= 0
    width = 0.5 * vehicle.width + np.minimum(obstacles.radius[candidates], 1.2) + 0.3
    if vehicle.is_ego:  # a car that has started to cut in is treated as in the lane already
        width = np.where(obstacles.cutting_in[candidates], width + 2.0, width)
    keep = (closest <= width) & ~((nearest == 0) & (closest > 3.0))
    crossing = is_vehicle & (relative > np.pi / 3)
    if vehicle.is_ego:
        keep &= ~(crossing & (_AHEAD[nearest] > 25.0))  # the ego yields to crossing traffic only when close
    else:
        keep &= ~(crossing & ~obstacles.is_ego[candidates])  # NPCs leave crossing traffic to signals and yielding
    if not keep.any():
        return math.inf, 0.0
    chosen = np.flatnonzero(keep)
    gaps = _AHEAD[nearest[chosen]] - 0.5 * vehicle.length - obstacles.radius[candidates[chosen]]
    best = int(np.argmin(gaps))
    k = nearest[chosen[best]]
    heading = samples[k, 2]
    speed = float(obstacles.velocity[candidates[chosen[best]]] @ np.array([math.cos(heading), math.sin(heading)]))
    return float(gaps[best]), max(speed, 0.0)


def _stop_line_gap(vehicle: Vehicle, signals: Signals, t: float) -> float:
    """Distance from the front bumper to the next signal the vehicle must stop for (inf if none).

    On yellow a driver stops if that needs at most a firm but normal deceleration, and otherwise commits to
    going through; a committed driver does not change its mind when the light turns red.
    """
    path = vehicle.path
    front = vehicle.front_s
    current = path.lane_index_at(vehicle.s)
    for index in range(current, len(path.lane_ids)):
        start = path.lane_start[index]
        if start - front > LOOKAHEAD_M:
            break
        connector = path.lane_ids[index]
        state = signals.state(connector, t)
        if state is None or start < front - 0.5 or connector in vehicle.committed:
            continue
        gap = start - front - 1.0
        if state == "green":
            continue
        needed = vehicle.v**2 / (2.0 * max(gap, 0.1))
        if state == "yellow" and needed > YELLOW_STOP_DECELERATION:
            vehicle.committed.add(connector)
            continue
        return gap
    return math.inf


def _arrival(other: Vehicle, connector: str, signals: Signals, t: float) -> float | None:
    """Seconds until ``other`` reaches the start of ``connector`` (negative while on it: the seconds since it
    entered); None if it never will (not on its route, already past it, or held at a red light)."""
    k = other.path.index.get(connector)
    if k is None:
        return None
    start, end = other.path.lane_start[k], other.path.lane_end[k]
    front, rear = other.front_s, other.s + other.center_shift - 0.5 * other.length
    if rear > end:
        return None
    if front >= start:
        return -(front - start) / max(other.v, 1.0)
    distance = start - front
    if signals.state(connector, t) == "red" and distance > 1.0:
        return None
    if other.v < 0.5:
        return 0.5 if distance < 4.0 else None  # stopped at the entry: about to go
    return distance / other.v


def _conflict(vehicle: Vehicle, own_wait: float, conflict: str, joins: bool, state: TrafficState) -> bool:
    """Whether a vehicle with right of way on ``conflict`` comes while ``vehicle`` would go (``own_wait`` seconds
    from now): it arrives before ``vehicle`` has gone by the driver's accepted gap, or, when both paths join, is
    about alongside (a car clearly ahead is followed, one clearly behind lets it in)."""
    gap = vehicle.profile.gap_acceptance_s
    for other in state.vehicles:
        if other is vehicle:
            continue
        arrival = _arrival(other, conflict, state.signals, state.t)
        if arrival is None:
            continue
        if joins:  # zipper: let a car that would be alongside go first, slot in before one that comes later
            if own_wait - 1.2 < arrival < own_wait + 0.8:
                return True
        elif arrival < own_wait + gap:
            return True
    return False


def _yield_gap(vehicle: Vehicle, state: TrafficState) -> float:
    """Distance to the entry of the next junction connector where a vehicle with right of way is coming (inf if
    none). Once a driver is within 2 m of an entry that is clear, it commits."""
    path = vehicle.path
    front = vehicle.front_s
    current = path.lane_index_at(vehicle.s)
    for index in range(current, len(path.lane_ids)):
        start = path.lane_start[index]
        if start - front > LOOKAHEAD_M:
            break
        connector = path.lane_ids[index]
        conflicts = path.yield_to[index]
        if not conflicts or start < front - 0.5 or connector in vehicle.committed:
            continue
        gap = start - front - 1.0
        own_wait = max(gap, 0.0) / max(vehicle.v, 2.0)
        if any(
            _conflict(vehicle, own_wait, c, joins, state)
            for c, joins in zip(conflicts, path.yield_joins[index], strict=True)
        ):
            return gap
        if gap < 2.0:
            vehicle.committed.add(connector)
    return math.inf


def _desired_speed(vehicle: Vehicle) -> float:
    """The speed limit ahead within braking distance, scaled by the driver's taste, and slower in curves."""
    path = vehicle.path
    horizon = vehicle.s + vehicle.v**2 / (2.0 * vehicle.profile.decel_comfort) + 10.0
    first = path.lane_index_at(vehicle.s)
    last = path.lane_index_at(horizon)
    limit = float(np.min(path.speed_limits[first : last + 1]))
    limit *= vehicle.profile.speed_factor
    # Slow enough for the sharpest bend within braking distance (and at least the next 20 m).
    reach = max(20.0, vehicle.v**2 / (2.0 * vehicle.profile.decel_comfort) + 5.0)
    curvature = path.max_curvature(vehicle.s, reach)
    if curvature > 1e-3:
        limit = min(limit, math.sqrt(vehicle.profile.curve_accel / curvature))
    return limit


def _hold_waiting_pedestrians(state: TrafficState) -> None:
    """Background pedestrians wait at the curb while the ego approaches; scenario pedestrians step out when the ego
    comes within their trigger distance."""
    ego = state.ego
    ego_xy = ego.box_center()[:2]
    heading = ego.pose()[2]
    for person in state.pedestrians:
        if person.trigger_tta is not None:
            if person.start_time == math.inf and person.trigger_s - ego.front_s <= person.trigger_tta * max(ego.v, 1.0):
                person.start_time = state.t
            continue
        if person.bold or not 0.0 <= state.t - person.start_time < DT:
            continue
        offset = person.start - ego_xy
        ahead = offset @ np.array([math.cos(heading), math.sin(heading)])
        if 0.0 < ahead < PEDESTRIAN_YIELD_DISTANCE_M and ego.v > 2.0:
            person.start_time = state.t + DT


def _command(vehicle: Vehicle, obstacles: _Obstacles, index: int, state: TrafficState) -> float:
    """The acceleration the driver asks for now."""
    for event in vehicle.brakes:
        forced = event.command(state.t, vehicle.v)
        if forced is not None:
            return forced
    gap, lead_speed = _gap_ahead(vehicle, obstacles, index)
    for stop in (_stop_line_gap(vehicle, state.signals, state.t), _yield_gap(vehicle, state)):
        if stop < gap:
            gap, lead_speed = stop, 0.0
    accel = idm_acceleration(vehicle.v, _desired_speed(vehicle), gap, lead_speed, vehicle.profile)
    if vehicle.cut_in is not None and vehicle.cut_in.start_time is not None and vehicle.cut_in.brake_after > 0:
        if state.t - vehicle.cut_in.start_time > vehicle.cut_in.duration_s:
            accel = min(accel, -vehicle.cut_in.brake_after) if vehicle.v > 1.0 else accel
    return accel


def step(state: TrafficState) -> None:
    """Advance every mover by one 0.1 s step."""
    _hold_waiting_pedestrians(state)
    obstacles = _obstacles(state)
    ego = state.ego
    if ego.avoidance is not None:
        _plan_avoidance(ego, state)
    for index, vehicle in enumerate(state.vehicles):
        if vehicle.parked:
            continue
        wanted = float(np.clip(_command(vehicle, obstacles, index, state), -MAX_BRAKE, vehicle.profile.accel_max))
        accel = wanted
        delay = round(vehicle.profile.reaction_s / DT) if vehicle.is_ego else 0
        if delay:
            vehicle.pending.append(wanted)
            accel = vehicle.pending.popleft() if len(vehicle.pending) > delay else vehicle.a
            # Late, but never later than the last moment: a real driver slams the brakes when a crash is imminent.
            accel = min(accel, wanted) if wanted < -5.0 else accel
        v = max(0.0, vehicle.v + accel * DT)
        vehicle.a = (v - vehicle.v) / DT
        vehicle.s = min(vehicle.s + 0.5 * (vehicle.v + v) * DT, vehicle.path.length)
        vehicle.v = v if vehicle.s < vehicle.path.length else 0.0
        offset = 0.0
        if vehicle.is_ego:  # weaving fades out in curves, where drivers hold their line
            damping = max(0.0, 1.0 - 40.0 * abs(vehicle.path.curvature(vehicle.s)))
            offset = damping * vehicle.profile.lateral_offset(state.t + DT)
            offset += float(vehicle.planned_offset(np.array([vehicle.s]))[0])
        if vehicle.cut_in is not None:
            offset += _cut_in_offset(vehicle, vehicle.cut_in, state)
        # Heading follows the lateral motion, as it would for a real car drifting within its lane.
        d_offset = offset - vehicle.offset
        travelled = max(vehicle.v * DT, 1e-3)
        vehicle.heading_offset = math.atan2(d_offset, travelled) if vehicle.v > 0.5 else vehicle.heading_offset
        vehicle.offset = offset
    state.t += DT


def _cut_in_offset(vehicle: Vehicle, cut_in: CutIn, state: TrafficState) -> float:
    """Lateral offset of a cutter: in its own lane until its trigger, then a smooth move into the ego's lane."""
    ego = state.ego
    if cut_in.start_time is None:
        gap = (vehicle.s - 0.5 * vehicle.length) - ego.front_s
        if gap > cut_in.trigger_gap_m or gap < 0.0:
            return cut_in.initial_offset
        cut_in.start_time = state.t
    progress = float(np.clip((state.t + DT - cut_in.start_time) / cut_in.duration_s, 0.0, 1.0))
    return cut_in.initial_offset * (1.0 - (3 * progress**2 - 2 * progress**3))


def _plan_avoidance(ego: Vehicle, state: TrafficState) -> None:
    """Start the ego's move around an obstacle when the lane it needs is clear: nobody within a safe gap behind
    in that lane (or, for the oncoming lane, nobody coming within the time the pass takes)."""
    plan = ego.avoidance
    if plan.shift is not None:
        return
    distance = plan.start_s - ego.front_s
    if distance > max(plan.shift_length_m + 10.0, ego.v * 3.0) or distance < -2.0:
        return
    clear_s = (plan.end_s - ego.s + plan.shift_length_m) / max(ego.v, 3.0) + 2.0
    heading = ego.pose()[2]
    for other in state.vehicles:
        if other is ego or plan.check_lane not in other.path.index:
            continue
        if (
            plan.oncoming
            and (other.box_center()[:2] - ego.box_center()[:2]) @ (math.cos(heading), math.sin(heading)) < -5
        ):
            continue  # already past
        k = other.path.index[plan.check_lane]
        on_lane = other.path.lane_start[k] - 30.0 <= other.s <= other.path.lane_end[k] + 5.0
        if not on_lane:
            continue
        gap = float(np.hypot(*(other.box_center()[:2] - ego.box_center()[:2])))
        if plan.oncoming:
            if gap < 15.0 + (other.v + ego.v) * clear_s:
                return
        elif gap < 12.0 + 2.0 * max(other.v - ego.v, 0.0) + other.v * 1.0:
            return
    start = ego.s + 0.5
    # Fully across before the front reaches the obstacle: steeply when starting from close behind it.
    room = plan.start_s - (ego.front_s - ego.s) - 0.5 - start
    length = float(np.clip(room, 6.0, max(plan.shift_length_m * min(1.0, max(ego.v, 4.0) / 10.0), 12.0)))
    back = plan.end_s + ego.length - (ego.front_s - ego.s) + 2.0  # the rear clears the obstacle first
    plan.shift = LaneShift(plan.side * 3.7, start, start + length, back, back + max(length, 12.0))
