"""Traffic in the synthetic world: routes through the lane graph, signals, IDM vehicles, pedestrians, static objects
and the imperfect human-like ego driver whose logged trajectories become the "human" plans.

Everything runs at 10 Hz. Vehicles follow their route's centerline with the Intelligent Driver Model, treating as
obstacles whatever is in their corridor ahead: same-direction vehicles, pedestrians, static objects, the ego, and the
stop line of a red (or catchable yellow) signal. The ego looks at everything in its corridor, crossing traffic too.
Driver profiles make the ego imperfect in the ways real drivers are: too cautious (slow, low progress), too close
(short headways, time-to-collision violations), sloppy lines (lateral weaving, lane keeping) and harsh braking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from navsim_eval.synthetic.network import LANE_WIDTH, RoadNetwork, TrafficLightGroup
from navsim_eval.vehicle import PACIFICA

DT = 0.1
GREEN_S, YELLOW_S, ALL_RED_S = 18.0, 3.0, 2.0
CYCLE_S = 2 * (GREEN_S + YELLOW_S + ALL_RED_S)
LOOKAHEAD_M = 60.0
LOOKAHEAD_STEP_M = 1.0
YELLOW_STOP_DECELERATION = 2.5  # m/s^2: stopping for a yellow light harder than this, a driver goes through
PEDESTRIAN_YIELD_DISTANCE_M = 40.0  # pedestrians wait at the curb while the ego is this close and moving


# ------------------------------------------------------------------------------------------------ routes


class RoutePath:
    """A route through the lane graph as one polyline with arc length, and where each lane starts and ends."""

    def __init__(self, network: RoadNetwork, lane_ids: list[str]):
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
        return int(np.clip(np.searchsorted(self.lane_end, s, side="right"), 0, len(self.lane_ids) - 1))

    def curvature(self, s: float, ds: float = 2.0) -> float:
        h = np.interp([s - ds, s + ds], self.s, self.heading)
        return float((h[1] - h[0]) / (2 * ds))


def random_route(
    network: RoadNetwork, rng: np.random.Generator, start_lane: str, min_length: float, straight_bias: float = 0.5
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
    """Fixed-time signals: at every node the north-south and east-west approaches alternate, nodes staggered."""

    def __init__(self, groups: list[TrafficLightGroup], rng: np.random.Generator):
        self.offsets = {group.node: float(rng.uniform(0.0, CYCLE_S)) for group in groups}
        self.connectors: dict[str, tuple[tuple[int, int], str]] = {}
        for group in groups:
            for connector_id in group.connector_ids:
                self.connectors[connector_id] = (group.node, group.approach)

    def state(self, connector_id: str, t: float) -> str | None:
        """'green', 'yellow' or 'red' for a signalised connector at time ``t``; None if it has no signal."""
        if connector_id not in self.connectors:
            return None
        node, approach = self.connectors[connector_id]
        phase = (t + self.offsets[node]) % CYCLE_S
        if approach == "ew":
            phase = (phase + CYCLE_S / 2.0) % CYCLE_S
        if phase < GREEN_S:
            return "green"
        if phase < GREEN_S + YELLOW_S:
            return "yellow"
        return "red"


# ------------------------------------------------------------------------------------------------ agents


@dataclass
class DriverProfile:
    """How one driver drives: IDM parameters, speed choice and lateral sloppiness."""

    speed_factor: float = 1.0  # desired speed / speed limit
    headway_s: float = 1.5
    min_gap_m: float = 2.0
    accel_max: float = 1.5
    decel_comfort: float = 2.0
    lateral_amplitude_m: float = 0.0  # weaving within the lane
    lateral_period_s: float = 8.0
    lateral_phase: float = 0.0
    kind: str = "normal"

    @classmethod
    def sample(cls, rng: np.random.Generator, kind: str | None = None) -> DriverProfile:
        """A human-like driver: mostly normal, sometimes too cautious, too close or sloppy."""
        kind = kind or str(rng.choice(["normal", "cautious", "close", "sloppy"], p=[0.45, 0.2, 0.15, 0.2]))
        profile = cls(
            speed_factor=float(rng.uniform(0.85, 1.05)),
            headway_s=float(rng.uniform(1.2, 1.8)),
            min_gap_m=float(rng.uniform(2.0, 3.0)),
            accel_max=float(rng.uniform(1.0, 1.8)),
            decel_comfort=float(rng.uniform(1.5, 2.5)),
            lateral_amplitude_m=float(rng.uniform(0.0, 0.2)),
            lateral_period_s=float(rng.uniform(6.0, 12.0)),
            lateral_phase=float(rng.uniform(0.0, 2 * np.pi)),
            kind=kind,
        )
        if kind == "cautious":
            profile.speed_factor = float(rng.uniform(0.55, 0.75))
            profile.headway_s = float(rng.uniform(2.0, 2.8))
        elif kind == "close":
            profile.headway_s = float(rng.uniform(0.5, 0.9))
            profile.min_gap_m = float(rng.uniform(0.8, 1.5))
            profile.accel_max = float(rng.uniform(1.8, 2.5))
            profile.decel_comfort = float(rng.uniform(2.5, 3.5))
        elif kind == "sloppy":
            # Weaving inside a 3.7 m lane (0.7 m of margin) that sometimes passes the 0.5 m lane-keeping limit.
            profile.lateral_amplitude_m = float(rng.uniform(0.3, 0.45))
        return profile

    def lateral_offset(self, t: float) -> float:
        return self.lateral_amplitude_m * math.sin(2 * math.pi * t / self.lateral_period_s + self.lateral_phase)


@dataclass
class CutIn:
    """A lane change into the ego's lane: starts once the cutter is ``trigger_gap_m`` ahead of the ego's front."""

    trigger_gap_m: float
    duration_s: float
    initial_offset: float
    start_time: float | None = None


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
    committed: set[str] = field(default_factory=set)  # signalised connectors it decided to drive through

    @property
    def center_shift(self) -> float:
        """Distance from the reference point to the box centre along the heading."""
        return PACIFICA.rear_axle_to_center if self.is_ego else 0.0

    def pose(self) -> np.ndarray:
        """Reference-point pose (x, y, heading) including the lateral offset."""
        x, y, h = self.path.pose(self.s)
        return np.array([x - self.offset * math.sin(h), y + self.offset * math.cos(h), h + self.heading_offset])

    def box_center(self) -> np.ndarray:
        x, y, h = self.pose()
        return np.array([x + self.center_shift * math.cos(h), y + self.center_shift * math.sin(h), h])


@dataclass
class Pedestrian:
    """Someone crossing a road: waits at ``start`` until ``start_time`` and walks along ``direction``."""

    token: str
    start: np.ndarray
    direction: np.ndarray
    speed: float
    start_time: float
    distance: float
    kind: str = "pedestrian"
    size: tuple[float, float, float] = (0.6, 0.6, 1.75)

    def state(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at time t (standing before the start, gone after the crossing)."""
        walked = min(max(0.0, (t - self.start_time) * self.speed), self.distance)
        moving = 0.0 < (t - self.start_time) * self.speed < self.distance
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
class Obstacle:
    """Something a driver may have to stop for this step: centre, half-extent radius, global velocity."""

    center: np.ndarray
    radius: float
    velocity: np.ndarray
    heading: float
    is_ego: bool = False


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


def _obstacles(state: TrafficState) -> list[Obstacle]:
    obstacles = []
    for vehicle in state.vehicles:
        x, y, h = vehicle.box_center()
        velocity = vehicle.v * np.array([math.cos(h), math.sin(h)])
        radius = 0.5 * math.hypot(vehicle.length, vehicle.width)
        obstacles.append(Obstacle(np.array([x, y]), radius, velocity, h, vehicle.is_ego))
    for pedestrian in state.pedestrians:
        if pedestrian.active(state.t):
            position, velocity = pedestrian.state(state.t)
            obstacles.append(
                Obstacle(position, 0.5, velocity, math.atan2(pedestrian.direction[1], pedestrian.direction[0]))
            )
    for static in state.statics:
        obstacles.append(
            Obstacle(static.pose[:2], 0.5 * math.hypot(static.size[0], static.size[1]), np.zeros(2), static.pose[2])
        )
    return obstacles


def _gap_ahead(vehicle: Vehicle, obstacles: list[Obstacle], index: int, state: TrafficState) -> tuple[float, float]:
    """Distance to the nearest obstacle in the corridor ahead and its speed along the path (inf, 0 if none)."""
    ahead = np.arange(0.0, LOOKAHEAD_M, LOOKAHEAD_STEP_M)
    samples = vehicle.path.pose(vehicle.s + vehicle.center_shift + ahead)
    own_heading = vehicle.pose()[2]
    best_gap, best_speed = math.inf, 0.0
    for j, obstacle in enumerate(obstacles):
        if j == index:
            continue
        delta = obstacle.center - samples[0, :2]
        if delta @ delta > (LOOKAHEAD_M + 10.0) ** 2:
            continue
        relative_heading = abs((obstacle.heading - own_heading + np.pi) % (2 * np.pi) - np.pi)
        is_vehicle = j < len(state.vehicles)
        if is_vehicle and not vehicle.is_ego and not obstacle.is_ego and relative_heading > np.pi / 3:
            continue  # NPCs leave crossing and oncoming traffic to the signals
        distances = np.hypot(samples[:, 0] - obstacle.center[0], samples[:, 1] - obstacle.center[1])
        k = int(np.argmin(distances))
        if distances[k] > 0.5 * vehicle.width + min(obstacle.radius, 1.2) + 0.3 or (k == 0 and distances[0] > 3.0):
            continue
        if vehicle.is_ego and is_vehicle and relative_heading > np.pi / 3 and ahead[k] > 25.0:
            continue  # the ego yields to crossing traffic only when it is close
        gap = ahead[k] - 0.5 * vehicle.length - obstacle.radius
        if gap < best_gap:
            heading = samples[k, 2]
            best_gap = gap
            best_speed = float(obstacle.velocity @ np.array([math.cos(heading), math.sin(heading)]))
    return best_gap, max(best_speed, 0.0)


def _stop_line_gap(vehicle: Vehicle, signals: Signals, t: float) -> float:
    """Distance from the front bumper to the next signal the vehicle must stop for (inf if none).

    On yellow a driver stops if that needs at most a firm but normal deceleration, and otherwise commits to
    going through; a committed driver does not change its mind when the light turns red.
    """
    path = vehicle.path
    front = vehicle.s + vehicle.center_shift + 0.5 * vehicle.length
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


def _desired_speed(vehicle: Vehicle) -> float:
    """The speed limit ahead within braking distance, scaled by the driver's taste, and slower in curves."""
    path = vehicle.path
    horizon = vehicle.s + vehicle.v**2 / (2.0 * vehicle.profile.decel_comfort) + 10.0
    first = path.lane_index_at(vehicle.s)
    last = path.lane_index_at(horizon)
    limit = float(np.min(path.speed_limits[first : last + 1]))
    curvature = max(abs(path.curvature(vehicle.s + d)) for d in (0.0, 10.0, 20.0))
    if curvature > 1e-3:
        limit = min(limit, math.sqrt(2.0 / curvature))  # about 2 m/s^2 of lateral acceleration
    return vehicle.profile.speed_factor * limit


def _hold_waiting_pedestrians(state: TrafficState) -> None:
    """A pedestrian about to step onto the road waits while the ego approaches (nobody walks in front of a car)."""
    ego = state.ego
    ego_xy = ego.box_center()[:2]
    heading = ego.pose()[2]
    for person in state.pedestrians:
        if not 0.0 <= state.t - person.start_time < DT:
            continue
        offset = person.start - ego_xy
        ahead = offset @ np.array([math.cos(heading), math.sin(heading)])
        if 0.0 < ahead < PEDESTRIAN_YIELD_DISTANCE_M and ego.v > 2.0:
            person.start_time = state.t + DT


def step(state: TrafficState) -> None:
    """Advance every mover by one 0.1 s step."""
    _hold_waiting_pedestrians(state)
    obstacles = _obstacles(state)
    for index, vehicle in enumerate(state.vehicles):
        if vehicle.parked:
            continue
        gap, lead_speed = _gap_ahead(vehicle, obstacles, index, state)
        stop_gap = _stop_line_gap(vehicle, state.signals, state.t)
        if stop_gap < gap:
            gap, lead_speed = stop_gap, 0.0
        accel = idm_acceleration(vehicle.v, _desired_speed(vehicle), gap, lead_speed, vehicle.profile)
        accel = float(np.clip(accel, -8.0, vehicle.profile.accel_max))
        v = max(0.0, vehicle.v + accel * DT)
        vehicle.a = (v - vehicle.v) / DT
        vehicle.s = min(vehicle.s + 0.5 * (vehicle.v + v) * DT, vehicle.path.length)
        vehicle.v = v if vehicle.s < vehicle.path.length else 0.0
        offset = 0.0
        if vehicle.is_ego:  # weaving fades out in curves, where drivers hold their line
            damping = max(0.0, 1.0 - 40.0 * abs(vehicle.path.curvature(vehicle.s)))
            offset = damping * vehicle.profile.lateral_offset(state.t + DT)
        if vehicle.cut_in is not None:
            offset += _cut_in_offset(vehicle, vehicle.cut_in, state)
        # Heading follows the lateral motion, as it would for a real car drifting within its lane.
        d_offset = offset - vehicle.offset
        travelled = max(vehicle.v * DT, 1e-3)
        vehicle.heading_offset = math.atan2(d_offset, travelled) if vehicle.v > 0.5 else vehicle.heading_offset
        vehicle.offset = offset
    state.t += DT


def _cut_in_offset(vehicle: Vehicle, cut_in: CutIn, state: TrafficState) -> float:
    """Lateral offset of a cutter: in its own lane until the gap ahead of the ego is right, then a smooth merge."""
    ego = state.ego
    gap = (vehicle.s - 0.5 * vehicle.length) - (ego.s + ego.center_shift + 0.5 * ego.length)
    if cut_in.start_time is None:
        # Merge only with a gap worth taking: at a similar speed, at least ~0.8 s of the ego's travel ahead.
        safe_gap = max(6.0, 0.8 * ego.v)
        if not (safe_gap <= gap <= cut_in.trigger_gap_m + safe_gap) or vehicle.v < 0.6 * ego.v:
            return cut_in.initial_offset
        cut_in.start_time = state.t
    progress = float(np.clip((state.t + DT - cut_in.start_time) / cut_in.duration_s, 0.0, 1.0))
    return cut_in.initial_offset * (1.0 - (3 * progress**2 - 2 * progress**3))


# ------------------------------------------------------------------------------------------------ scenarios


def _lane_near(network: RoadNetwork, path: RoutePath, s: float, side: int) -> str | None:
    """The same-direction lane beside the route's lane at ``s`` (side +1 = left, -1 = right), if any."""
    lane = network.lanes[path.lane_ids[path.lane_index_at(s)]]
    if lane.is_connector:
        return None
    target_index = lane.lane_index - side  # lane 0 is the leftmost of its direction
    for other in network.roadblocks[lane.roadblock_id].lane_ids:
        if network.lanes[other].lane_index == target_index:
            return other
    return None


def populate(
    network: RoadNetwork,
    rng: np.random.Generator,
    duration_s: float,
    num_vehicles: int = 18,
    num_pedestrians: int = 3,
    num_statics: int = 6,
    profile: DriverProfile | None = None,
) -> TrafficState:
    """Spawn the ego on a random route and the traffic around it: leads, oncoming and cross traffic, a cut-in,
    parked cars, pedestrians crossing and static objects on the shoulders."""
    counter = {"n": 0}

    def token() -> str:
        counter["n"] += 1
        return f"{int(rng.integers(0, 2**48)):012x}{counter['n']:04x}"

    plain_lanes = [lane_id for lane_id, lane in network.lanes.items() if not lane.is_connector]
    route_length = duration_s * 17.0 + 150.0
    ego_route = RoutePath(
        network, random_route(network, rng, plain_lanes[int(rng.integers(len(plain_lanes)))], route_length)
    )
    ego_profile = profile or DriverProfile.sample(rng)
    ego = Vehicle(
        token(),
        ego_route,
        s=float(rng.uniform(0.0, 10.0)),
        v=0.0,
        profile=ego_profile,
        length=PACIFICA.length,
        width=PACIFICA.width,
        height=PACIFICA.height,
        is_ego=True,
    )
    ego.v = float(rng.uniform(0.5, 1.0)) * _desired_speed(ego)
    vehicles = [ego]

    # Leading vehicles on the ego's route, at various speeds.
    position = ego.s
    for _ in range(int(rng.integers(1, 4))):
        position += float(rng.uniform(25.0, 70.0))
        if position > ego_route.length - 50:
            break
        lead_profile = DriverProfile.sample(rng, "normal")
        lead_profile.speed_factor = float(rng.uniform(0.5, 1.0))
        vehicles.append(Vehicle(token(), ego_route, position, v=ego.v * 0.8, profile=lead_profile))

    # A cut-in from the neighbouring lane, when there is one.
    if rng.random() < 0.6:
        cut_s = ego.s + float(rng.uniform(20.0, 35.0))
        for side in (1, -1):
            if _lane_near(network, ego_route, cut_s, side) is not None:
                cutter = Vehicle(token(), ego_route, cut_s, v=ego.v, profile=DriverProfile.sample(rng, "normal"))
                cutter.profile.speed_factor = float(rng.uniform(0.6, 0.85))  # slower: the ego catches up with it
                cutter.cut_in = CutIn(float(rng.uniform(8.0, 18.0)), float(rng.uniform(2.5, 3.5)), side * LANE_WIDTH)
                cutter.offset = side * LANE_WIDTH
                vehicles.append(cutter)
                break

    # Background traffic everywhere (oncoming and crossing traffic among it).
    for _ in range(num_vehicles):
        start = plain_lanes[int(rng.integers(len(plain_lanes)))]
        path = RoutePath(network, random_route(network, rng, start, route_length))
        s = float(rng.uniform(0.0, network.lanes[start].length))
        if any(np.hypot(*(path.pose(s)[:2] - other.box_center()[:2])) < 12.0 for other in vehicles):
            continue
        vehicle = Vehicle(token(), path, s, v=0.0, profile=DriverProfile.sample(rng, "normal"))
        vehicle.v = float(rng.uniform(0.3, 1.0)) * _desired_speed(vehicle)
        vehicles.append(vehicle)

    statics: list[StaticObject] = []
    for carpark in network.carparks.values():  # parked cars
        minx, miny, maxx, maxy = carpark.bounds
        for _ in range(int(rng.integers(2, 5))):
            statics.append(
                StaticObject(
                    token(),
                    "vehicle",
                    np.array(
                        [rng.uniform(minx + 3, maxx - 3), rng.uniform(miny + 3, maxy - 3), rng.choice([0, np.pi / 2])]
                    ),
                    (4.6, 1.9, 1.5),
                )
            )
    kinds = [
        ("traffic_cone", (0.4, 0.4, 0.7)),
        ("barrier", (2.0, 0.5, 1.0)),
        ("generic_object", (1.0, 1.0, 1.0)),
        ("czone_sign", (0.6, 0.3, 1.5)),
    ]
    for _ in range(num_statics):  # on the shoulder of the ego's route, just outside the road edge
        s = float(rng.uniform(ego.s + 15.0, min(ego_route.length, ego.s + duration_s * 12.0)))
        lane = network.lanes[ego_route.lane_ids[ego_route.lane_index_at(s)]]
        if lane.is_connector:
            continue
        lanes_right = len(network.roadblocks[lane.roadblock_id].lane_ids) - lane.lane_index - 1
        x, y, h = ego_route.pose(s)
        lateral = -(0.5 + lanes_right) * LANE_WIDTH - 0.8
        kind, size = kinds[int(rng.integers(len(kinds)))]
        statics.append(
            StaticObject(token(), kind, np.array([x - lateral * math.sin(h), y + lateral * math.cos(h), h]), size)
        )

    pedestrians = []
    for _ in range(num_pedestrians):  # crossing the ego's route somewhere ahead
        s = float(rng.uniform(ego.s + 30.0, min(ego_route.length, ego.s + duration_s * 10.0)))
        lane = network.lanes[ego_route.lane_ids[ego_route.lane_index_at(s)]]
        if lane.is_connector:
            continue
        x, y, h = ego_route.pose(s)
        left = np.array([-math.sin(h), math.cos(h)])
        width = 2 * len(network.roadblocks[lane.roadblock_id].lane_ids) * LANE_WIDTH + 3.0
        start = np.array([x, y]) - left * (width / 2.0 + float(rng.uniform(-1.0, 1.0)) + LANE_WIDTH * lane.lane_index)
        kind = "pedestrian" if rng.random() < 0.8 else "bicycle"
        speed = float(rng.uniform(1.0, 1.6)) if kind == "pedestrian" else float(rng.uniform(3.0, 4.5))
        size = (0.6, 0.6, 1.75) if kind == "pedestrian" else (1.8, 0.6, 1.7)
        pedestrians.append(
            Pedestrian(token(), start, left, speed, float(rng.uniform(1.0, duration_s)), width, kind, size)
        )

    return TrafficState(vehicles, pedestrians, statics, Signals(network.lights, rng))
