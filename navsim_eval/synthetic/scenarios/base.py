"""What every scenario generator shares: the run it hands to the world, routes through a chosen place, spawning the
ego and other vehicles, and the light background traffic around the ego's route.

A generator picks a place in the town where its situation can happen (a curve, a lane drop, a signalised approach,
...), routes the ego through it, scripts the actors and returns a :class:`ScenarioRun`. The world simulates the run
until ``event`` fires, keeps simulating for the scenes after it, and cuts the log to the frames the scenes need:
the first scene's current frame ``before_s`` before the event, the last one ``after_s`` after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from navsim_eval.synthetic.network import LANE_WIDTH, SHOULDER_WIDTH, RoadNetwork
from navsim_eval.synthetic.traffic import (
    DriverProfile,
    Pedestrian,
    RoutePath,
    Signals,
    StaticObject,
    TrafficState,
    Vehicle,
    _desired_speed,
    random_route,
)
from navsim_eval.vehicle import PACIFICA

PARKED_CAR_SIZE = (4.6, 1.9, 1.5)


@dataclass
class ScenarioRun:
    """A scripted situation ready to simulate, and at which frames it is live (those frames become scenes)."""

    state: TrafficState
    live: Callable[[TrafficState], bool]  # the situation is happening now (checked at every 2 Hz frame)
    params: dict = field(default_factory=dict)  # what was sampled (written to the scenario labels)
    max_start_s: float = 25.0  # give up (and try another seed) if it has not become live by then
    max_live_s: float = 7.0  # scenes span at most this long


HORIZON_S = 4.0  # the scored horizon: a hazard is live while the ego would reach it within this time


def within_reach(ego: Vehicle, s_target: float, horizon_s: float = HORIZON_S, min_speed: float = 1.0) -> bool:
    """The moving ego's front would reach route arc length ``s_target`` within ``horizon_s`` at its speed."""
    distance = s_target - ego.front_s
    return ego.v > min_speed and -2.0 < distance < ego.v * horizon_s + 2.0


def bends_away(ego: Vehicle, threshold_m: float = 3.0, horizon_s: float = HORIZON_S, min_speed: float = 1.0) -> bool:
    """Holding its heading and speed, the moving ego would leave its route's line by more than ``threshold_m``
    within ``horizon_s``: a bend, a turn or a taper is coming (or under way)."""
    if ego.v <= min_speed:
        return False
    x, y, h = ego.pose()
    reach = ego.v * horizon_s
    straight = np.array([x, y]) + np.outer(np.linspace(0.0, reach, 9), [math.cos(h), math.sin(h)])
    path = ego.path
    window = (path.s >= ego.s - 5.0) & (path.s <= ego.s + reach + 30.0)
    points = path.points[window, :2]
    if len(points) < 2:
        return False
    distance = np.min(
        np.hypot(straight[:, None, 0] - points[None, :, 0], straight[:, None, 1] - points[None, :, 1]), axis=1
    )
    return bool(np.max(distance) > threshold_m)


def closing_on(ego: Vehicle, other: Vehicle, horizon_s: float = 3.0, lateral_m: float = 3.4) -> bool:
    """The moving ego, holding its speed, would run into ``other`` (ahead of it, within ``lateral_m`` of its line,
    holding its own speed) within ``horizon_s``."""
    x, y, h = ego.box_center()
    forward = np.array([math.cos(h), math.sin(h)])
    delta = other.box_center()[:2] - np.array([x, y])
    ahead, lateral = float(delta @ forward), float(forward[0] * delta[1] - forward[1] * delta[0])
    gap = ahead - 0.5 * ego.length - 0.5 * other.length
    other_heading = other.pose()[2]
    closing = ego.v - other.v * math.cos(other_heading - h)
    return ego.v > 1.0 and abs(lateral) < lateral_m and -1.0 < gap < closing * horizon_s + 2.0 and closing > 0.3


class Tokens:
    """Track tokens of one log: random but deterministic in the log's generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.count = rng, 0

    def __call__(self) -> str:
        self.count += 1
        return f"{int(self.rng.integers(0, 2**48)):012x}{self.count:04x}"


def plain_lanes(network: RoadNetwork) -> list[str]:
    return [lane_id for lane_id, lane in network.lanes.items() if not lane.is_connector]


def approach_route(
    network: RoadNetwork, rng: np.random.Generator, target: str, before_m: float, after_m: float
) -> tuple[list[str], int]:
    """A route that drives ``before_m`` metres (preferring straight connectors) into lane ``target`` and goes on
    randomly for ``after_m`` metres; returns the lane ids and the index of ``target``."""
    back = [target]
    length = 0.0
    while length < before_m:
        predecessors = network.lanes[back[0]].predecessors
        if not predecessors:
            break
        straight = [p for p in predecessors if network.lanes[p].turn == "straight"]
        options = straight or predecessors
        choice = options[int(rng.integers(len(options)))]
        if choice in back:  # a loop: stop extending
            break
        back.insert(0, choice)
        length += network.lanes[choice].length
    forward = random_route(network, rng, target, after_m)
    return back[:-1] + forward, len(back) - 1


def make_ego(
    network: RoadNetwork, lanes: list[str], s: float, token: str, profile: DriverProfile, speed_fraction: float = 1.0
) -> Vehicle:
    """The ego (Pacifica-sized) at arc length ``s`` of its route, at ``speed_fraction`` of its desired speed."""
    ego = Vehicle(
        token,
        RoutePath(network, lanes),
        s=s,
        v=0.0,
        profile=profile,
        length=PACIFICA.length,
        width=PACIFICA.width,
        height=PACIFICA.height,
        is_ego=True,
    )
    ego.v = speed_fraction * _desired_speed(ego)
    return ego


def vehicle_on(
    path: RoutePath,
    s: float,
    token: str,
    rng: np.random.Generator,
    speed: float | None = None,
    profile: DriverProfile | None = None,
) -> Vehicle:
    """A car on ``path`` at ``s``, at ``speed`` (default: its desired speed)."""
    vehicle = Vehicle(
        token,
        path,
        s,
        v=0.0,
        profile=profile or DriverProfile.npc(rng),
        length=float(rng.uniform(4.3, 5.0)),
        width=float(rng.uniform(1.8, 2.0)),
    )
    vehicle.v = _desired_speed(vehicle) if speed is None else speed
    return vehicle


def route_vehicle(
    network: RoadNetwork,
    rng: np.random.Generator,
    through: str,
    distance_before: float,
    token: str,
    speed: float | None = None,
    after_m: float = 250.0,
) -> Vehicle:
    """A car that will reach the start of lane ``through`` after ``distance_before`` metres of driving."""
    lanes, index = approach_route(network, rng, through, distance_before + 20.0, after_m)
    path = RoutePath(network, lanes)
    s = max(0.0, path.lane_start[index] - distance_before)
    return vehicle_on(path, s, token, rng, speed)


def opposite_lanes(network: RoadNetwork, lane_id: str) -> list[str]:
    """The lanes of the road's other direction (none on one-way roads and connectors)."""
    lane = network.lanes[lane_id]
    road = network.roadblocks[lane.roadblock_id].road
    if road is None:
        return []
    return [
        i for rb in network.roadblocks.values() if rb.road == road and rb.id != lane.roadblock_id for i in rb.lane_ids
    ]


def lateral_point(path: RoutePath, s: float, lateral: float) -> np.ndarray:
    """The point ``lateral`` metres left of the route at ``s``, and the route heading there: (x, y, heading)."""
    x, y, h = path.pose(s)
    return np.array([x - lateral * math.sin(h), y + lateral * math.cos(h), h])


def right_edge_offset(network: RoadNetwork, lane_id: str) -> float:
    """Lateral offset (negative: right) of the roadblock's right edge line from the centre of lane ``lane_id``."""
    lane = network.lanes[lane_id]
    count = len(network.roadblocks[lane.roadblock_id].lane_ids)
    return -(count - lane.lane_index - 0.5) * LANE_WIDTH - SHOULDER_WIDTH


def left_edge_offset(network: RoadNetwork, lane_id: str) -> float:
    """Lateral offset of the road's far (left) edge: across the other direction's lanes."""
    lane = network.lanes[lane_id]
    return (lane.lane_index + 0.5) * LANE_WIDTH + len(opposite_lanes(network, lane_id)) * LANE_WIDTH + SHOULDER_WIDTH


def lane_at(network: RoadNetwork, path: RoutePath, s: float):
    return network.lanes[path.lane_ids[path.lane_index_at(s)]]


def add_background(
    network: RoadNetwork,
    rng: np.random.Generator,
    state: TrafficState,
    tokens: Tokens,
    *,
    oncoming: int = 3,
    others: int = 3,
    parked: int = 2,
    walkers: int = 1,
    keep_clear: tuple[float, float] | None = None,
) -> None:
    """Light background traffic around the ego's route: oncoming cars, cars on nearby roads, cars parked on the
    shoulder and pedestrians waiting at the curb. Nothing is placed on the ego's own lanes within ``keep_clear``
    (a route arc-length interval), so the scenario's actors stay the ones that matter."""
    ego = state.ego
    path = ego.path
    taken = [v.box_center()[:2] for v in state.vehicles]

    def free(point: np.ndarray, distance: float = 12.0) -> bool:
        return all(np.hypot(*(point - other)) >= distance for other in taken)

    route_plain = [i for i in path.lane_ids if not network.lanes[i].is_connector]
    opposite = [i for lane in route_plain for i in opposite_lanes(network, lane)]
    for _ in range(oncoming if opposite else 0):
        lane_id = opposite[int(rng.integers(len(opposite)))]
        vehicle_path = RoutePath(network, random_route(network, rng, lane_id, 300.0))
        vehicle = vehicle_on(vehicle_path, float(rng.uniform(0.0, network.lanes[lane_id].length)), tokens(), rng)
        if free(vehicle.box_center()[:2]):
            state.vehicles.append(vehicle)
            taken.append(vehicle.box_center()[:2])
    near = _lanes_near_route(network, path, 120.0)
    for _ in range(others if near else 0):
        lane_id = near[int(rng.integers(len(near)))]
        vehicle_path = RoutePath(network, random_route(network, rng, lane_id, 300.0))
        vehicle = vehicle_on(vehicle_path, float(rng.uniform(0.0, network.lanes[lane_id].length)), tokens(), rng)
        if free(vehicle.box_center()[:2]) and not _on_route_interval(path, vehicle, keep_clear):
            state.vehicles.append(vehicle)
            taken.append(vehicle.box_center()[:2])
    for _ in range(parked):
        s = float(rng.uniform(ego.s + 10.0, min(path.length, ego.s + 220.0)))
        lane = lane_at(network, path, s)
        if lane.is_connector or (keep_clear and keep_clear[0] - 15 <= s <= keep_clear[1] + 10):
            continue
        point = lateral_point(path, s, right_edge_offset(network, lane.id) - 0.3 - PARKED_CAR_SIZE[1] / 2)
        state.statics.append(StaticObject(tokens(), "vehicle", point, PARKED_CAR_SIZE))
    for _ in range(walkers):
        s = float(rng.uniform(ego.s + 30.0, min(path.length, ego.s + 200.0)))
        lane = lane_at(network, path, s)
        if lane.is_connector:
            continue
        point = lateral_point(path, s, right_edge_offset(network, lane.id) - 1.5)
        direction = np.array([-math.sin(point[2]), math.cos(point[2])])
        width = -right_edge_offset(network, lane.id) + left_edge_offset(network, lane.id) + 3.0
        state.pedestrians.append(
            Pedestrian(
                tokens(), point[:2], direction, float(rng.uniform(1.0, 1.5)), float(rng.uniform(0.0, 15.0)), width
            )
        )


def _lanes_near_route(network: RoadNetwork, path: RoutePath, radius: float) -> list[str]:
    points = path.points[:: max(1, len(path.points) // 40), :2]
    on_route = set(path.lane_ids)
    result = []
    for lane_id, lane in network.lanes.items():
        if lane.is_connector or lane_id in on_route:
            continue
        start = lane.centerline[0, :2]
        if np.min(np.hypot(points[:, 0] - start[0], points[:, 1] - start[1])) < radius:
            result.append(lane_id)
    return result


def _on_route_interval(path: RoutePath, vehicle: Vehicle, interval: tuple[float, float] | None) -> bool:
    if interval is None:
        return False
    lane = vehicle.path.lane_ids[vehicle.path.lane_index_at(vehicle.s)]
    k = path.index.get(lane)
    return k is not None and path.lane_start[k] <= interval[1] + 20 and path.lane_end[k] >= interval[0] - 40


def new_state(network: RoadNetwork, rng: np.random.Generator, ego: Vehicle) -> TrafficState:
    return TrafficState([ego], [], [], Signals(network.lights, rng))


def straightness(path: RoutePath, s0: float, s1: float) -> float:
    """The largest |curvature| on the route between ``s0`` and ``s1``."""
    return path.max_curvature(s0, max(0.0, s1 - s0))


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def green_until(signals: Signals, connector: str, t_yellow: float) -> None:
    """Make a signalised connector's light green until ``t_yellow`` (for the 18 s before it)."""
    if connector in signals.connectors:
        signals.turn_yellow_at(connector, t_yellow)


def greens_along(signals: Signals, path: RoutePath, t_yellow: float) -> None:
    """Every signal on the route green until ``t_yellow``."""
    for lane_id in path.lane_ids:
        green_until(signals, lane_id, t_yellow)


def project(path: RoutePath, xy: np.ndarray) -> float:
    """Arc length of the route point closest to ``xy``."""
    k = int(np.argmin(np.hypot(path.points[:, 0] - xy[0], path.points[:, 1] - xy[1])))
    return float(path.s[k])


def time_to(ego: Vehicle, s_target: float) -> float:
    """Seconds until the ego's front reaches route arc length ``s_target`` at its current speed."""
    return (s_target - ego.front_s) / max(ego.v, 1.0)


class Scenario:
    """A generator of one kind of situation; its dataclass fields are its parameters (ranges and shares)."""

    name: str = ""
    description: str = ""

    def setup(self, network: RoadNetwork, rng: np.random.Generator) -> ScenarioRun | None:
        """A run in ``network``, or None if this town has no place for the situation."""
        raise NotImplementedError
