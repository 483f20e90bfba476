"""A stopped car or a construction zone (cones, barriers) blocks the ego's lane: the ego changes lane around it
when the next lane is clear, or passes through the oncoming lane on a one-lane road, and stops until then."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_eval.synthetic.network import LANE_WIDTH
from navsim_eval.synthetic.scenarios.base import (
    Scenario,
    ScenarioRun,
    Tokens,
    add_background,
    approach_route,
    greens_along,
    lateral_point,
    make_ego,
    new_state,
    opposite_lanes,
    plain_lanes,
    project,
    right_edge_offset,
    route_vehicle,
    uniform,
    vehicle_on,
    within_reach,
)
from navsim_eval.synthetic.traffic import Avoidance, DriverProfile, RoutePath, StaticObject, random_route


@dataclass(frozen=True)
class BlockedLane(Scenario):
    name = "blocked_lane"
    description = "a stopped car or a construction zone blocks the ego's lane; it must change lane or stop"

    construction_share: float = 0.5
    stopped_car_offset_m: tuple[float, float] = (-0.4, 0.3)  # of the stopped car from the lane centre
    zone_length_m: tuple[float, float] = (8.0, 22.0)
    traffic_share: float = 0.5  # a car in the lane the ego needs, so that it must wait
    lead_time_s: tuple[float, float] = (5.5, 7.5)

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        lanes = [i for i in plain_lanes(network) if network.lanes[i].length >= 80.0]
        if not lanes:
            return None
        tokens = Tokens(rng)
        target = lanes[int(rng.integers(len(lanes)))]
        route, index = approach_route(network, rng, target, 150.0, 250.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        path = ego.path
        lane = network.lanes[target]
        construction = rng.random() < self.construction_share
        zone = uniform(rng, self.zone_length_m)
        extent = 8.0 + zone if construction else 5.0
        start = path.lane_start[index] + uniform(rng, (25.0, max(26.0, lane.length - extent - 15.0)))
        end = start + extent
        if path.max_curvature(start - 40.0, extent + 60.0) > 1.0 / 150.0:
            return None  # a straight stretch only: passing in a bend is another story
        state = new_state(network, rng, ego)
        ego.s = max(0.0, start - (ego.front_s - ego.s) - ego.v * uniform(rng, self.lead_time_s))
        if construction:
            right = -0.5 * LANE_WIDTH
            for k in range(5):  # a taper of cones from the right edge to the left edge
                lateral = right + 0.3 + k * (LANE_WIDTH - 0.6) / 4
                state.statics.append(
                    StaticObject(
                        tokens(), "traffic_cone", lateral_point(path, start + 2.0 * k, lateral), (0.4, 0.4, 0.7)
                    )
                )
            s = start + 9.0
            while s < end:
                state.statics.append(StaticObject(tokens(), "barrier", lateral_point(path, s, 0.0), (2.0, 0.5, 1.0)))
                s += 2.5
            sign = lateral_point(path, start - 15.0, right_edge_offset(network, target) - 0.6)
            state.statics.append(StaticObject(tokens(), "czone_sign", sign, (0.6, 0.3, 1.5)))
        else:
            offset = uniform(rng, self.stopped_car_offset_m)
            size = (float(rng.uniform(4.5, 7.5)), float(rng.uniform(1.9, 2.4)), float(rng.uniform(1.5, 3.0)))
            state.statics.append(
                StaticObject(tokens(), "vehicle", lateral_point(path, start + 0.5 * size[0], offset), size)
            )
            end = start + size[0]
        side, check, oncoming = 1, network.neighbour_lane(target, 1), False
        if check is None and network.neighbour_lane(target, -1):
            side, check = -1, network.neighbour_lane(target, -1)
        if check is None:
            opposite = sorted(opposite_lanes(network, target), key=lambda i: network.lanes[i].lane_index)
            if not opposite:
                return None
            check, oncoming = opposite[0], True
        ego.avoidance = Avoidance(start, end, side, check, oncoming)
        arrival = (start - ego.front_s) / max(ego.v, 1.0)
        if rng.random() < self.traffic_share:
            if oncoming:
                speed = 0.9 * network.lanes[check].speed_limit
                # It reaches the obstacle about when the ego does (distance along its lane to the obstacle).
                probe = route_vehicle(network, rng, check, 0.0, tokens(), speed)
                s_obstacle = project(probe.path, lateral_point(path, start, LANE_WIDTH)[:2])
                probe.s = max(0.0, s_obstacle - speed * (arrival + uniform(rng, (-1.0, 1.5))))
                state.vehicles.append(probe)
            else:
                neighbour = RoutePath(network, random_route(network, rng, check, 300.0))
                car = vehicle_on(neighbour, 0.0, tokens(), rng, speed=ego.v * float(rng.uniform(0.8, 1.05)))
                car.s = project(
                    neighbour, lateral_point(path, ego.s + uniform(rng, (-20.0, 8.0)), side * LANE_WIDTH)[:2]
                )
                state.vehicles.append(car)
        greens_along(state.signals, path, 14.0)
        add_background(network, rng, state, tokens, oncoming=0 if oncoming else 2, keep_clear=(ego.s, end + 30.0))
        params = {
            "obstacle": "construction" if construction else "stopped_car",
            "pass": "oncoming" if oncoming else "lane_change",
            "extent_m": end - start,
            "ego_speed": ego.v,
            "driver": ego.profile.kind,
        }
        live = lambda s: abs(s.ego.offset) < 1.0 and within_reach(s.ego, start)  # noqa: E731  (still in its lane)
        return ScenarioRun(state, live, params)
