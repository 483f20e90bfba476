"""A pedestrian or cyclist crosses in front of the ego, at a crosswalk or mid-block, sometimes stepping out from
behind a parked car (hidden from the ego until it is in the road)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from navsim_eval.synthetic.network import LANE_WIDTH
from navsim_eval.synthetic.scenarios.base import (
    PARKED_CAR_SIZE,
    Scenario,
    ScenarioRun,
    Tokens,
    add_background,
    approach_route,
    greens_along,
    lateral_point,
    left_edge_offset,
    make_ego,
    new_state,
    plain_lanes,
    right_edge_offset,
    uniform,
    within_reach,
)
from navsim_eval.synthetic.traffic import DriverProfile, Pedestrian, StaticObject
from navsim_eval.vehicle import PACIFICA


@dataclass(frozen=True)
class VulnerableRoadUserCrossing(Scenario):
    name = "vru_crossing"
    description = "a pedestrian or cyclist crosses in front of the ego (crosswalk or mid-block, sometimes occluded)"

    cyclist_share: float = 0.3
    crosswalk_share: float = 0.4
    occluded_share: float = 0.45  # of the mid-block crossings from the ego's side
    from_left_share: float = 0.25
    walk_speed: tuple[float, float] = (1.1, 1.8)
    ride_speed: tuple[float, float] = (3.0, 5.0)
    arrival_offset_s: tuple[float, float] = (0.0, 1.5)  # it is in the ego's lane this long before the ego would be
    lead_time_s: tuple[float, float] = (6.0, 8.0)  # the ego starts this far (at its speed) from the crossing

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        tokens = Tokens(rng)
        crosswalk = rng.random() < self.crosswalk_share and any(j.crosswalk_ids for j in network.junctions.values())
        if crosswalk:
            connectors = [
                c
                for c, lane in network.lanes.items()
                if lane.is_connector and network.junctions[lane.node].crosswalk_ids
            ]
            target = connectors[int(rng.integers(len(connectors)))]
            road_lane = network.lanes[target].predecessors[0]
        else:
            lanes = [i for i in plain_lanes(network) if network.lanes[i].length >= 60.0]
            if not lanes:
                return None
            target = road_lane = lanes[int(rng.integers(len(lanes)))]
        route, index = approach_route(network, rng, target, 150.0, 200.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        path = ego.path
        start_s = path.lane_start[index]
        cross_s = start_s + 1.5 if crosswalk else start_s + uniform(rng, (30.0, network.lanes[target].length - 10.0))
        cyclist = rng.random() < self.cyclist_share
        from_left = rng.random() < self.from_left_share
        occluded = not crosswalk and not from_left and rng.random() < self.occluded_share
        right, left = right_edge_offset(network, road_lane), left_edge_offset(network, road_lane)
        start_lateral = left + 1.2 if from_left else right - (2.8 if occluded else 1.2)
        point = lateral_point(path, cross_s, start_lateral)
        normal = np.array([-math.sin(point[2]), math.cos(point[2])])
        direction = -normal if from_left else normal
        speed = uniform(rng, self.ride_speed if cyclist else self.walk_speed)
        to_lane = abs(start_lateral)
        crosser = Pedestrian(
            tokens(),
            point[:2],
            direction,
            speed,
            math.inf,
            left - right + 2.4 + (1.6 if occluded else 0.0),
            "bicycle" if cyclist else "pedestrian",
            (1.8, 0.6, 1.7) if cyclist else (0.6, 0.6, 1.75),
            trigger_tta=to_lane / speed + uniform(rng, self.arrival_offset_s),
            trigger_s=cross_s,
            hidden_m=2.2 if occluded else 0.0,
            bold=True,
        )
        state = new_state(network, rng, ego)
        ego.s = max(0.0, cross_s - (ego.front_s - ego.s) - ego.v * uniform(rng, self.lead_time_s))
        state.pedestrians.append(crosser)
        if occluded:
            car = lateral_point(path, cross_s - 0.5 * PARKED_CAR_SIZE[0] - 1.0, right - 0.3 - PARKED_CAR_SIZE[1] / 2)
            state.statics.append(StaticObject(tokens(), "vehicle", car, PARKED_CAR_SIZE))
        greens_along(state.signals, path, 14.0)
        add_background(network, rng, state, tokens, keep_clear=(cross_s - 60.0, cross_s + 20.0), walkers=0)
        params = {
            "kind": crosser.kind,
            "crosswalk": bool(crosswalk),
            "occluded": occluded,
            "from_left": from_left,
            "speed": speed,
            "ego_speed": ego.v,
            "driver": ego.profile.kind,
        }
        # Live while it has not yet crossed the ego's lane and the ego would reach the crossing within the horizon.
        beyond = to_lane + 0.5 * LANE_WIDTH + 1.0

        near = 0.5 * PACIFICA.width + 0.4 + 0.5 * crosser.size[0]  # the ego's half width, a margin, its half

        def live(s) -> bool:  # walking on, it would be in the ego's lane when the ego (at its speed) gets there
            if not (crosser.start_time < s.t and crosser.walked(s.t) < beyond and within_reach(s.ego, cross_s)):
                return False
            arrival = max(0.0, cross_s - s.ego.front_s) / max(s.ego.v, 1.0)
            at_arrival = crosser.walked(s.t) + crosser.speed * arrival
            return abs(at_arrival - to_lane) < near

        return ScenarioRun(state, live, params)
