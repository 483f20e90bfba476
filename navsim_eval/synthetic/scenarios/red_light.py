"""The light turns red as the ego approaches its stop line, or is red already with cars queued at it; cross
traffic then has green."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from navsim_eval.synthetic.scenarios.base import (
    Scenario,
    ScenarioRun,
    Tokens,
    add_background,
    approach_route,
    make_ego,
    new_state,
    route_vehicle,
    time_to,
    uniform,
    vehicle_on,
    within_reach,
)
from navsim_eval.synthetic.traffic import YELLOW_S, DriverProfile


@dataclass(frozen=True)
class RedLight(Scenario):
    name = "red_light"
    description = "a red light (turning red on approach, or red with a queue) at a stop line on the route"

    queue_share: float = 0.5
    queue_length: tuple[int, int] = (1, 4)  # upper bound exclusive
    yellow_lead_s: tuple[float, float] = (2.8, 5.0)  # turning yellow this long before the ego would reach the line
    cross_vehicles: tuple[int, int] = (1, 4)
    lead_time_s: tuple[float, float] = (6.5, 8.5)

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        signals = [c for group in network.lights for c in group.connector_ids]
        targets = [c for c in signals if network.lanes[network.lanes[c].predecessors[0]].length >= 60.0]
        if not targets:
            return None
        tokens = Tokens(rng)
        target = targets[int(rng.integers(len(targets)))]
        route, index = approach_route(network, rng, target, 200.0, 200.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        line = ego.path.lane_start[index] - 1.0
        ego.s = max(0.0, line - (ego.front_s - ego.s) - ego.v * uniform(rng, self.lead_time_s))
        arrival = time_to(ego, line)
        state = new_state(network, rng, ego)
        queue = rng.random() < self.queue_share
        queued = int(rng.integers(*self.queue_length)) if queue else 0
        if queue:  # red for a while already: the queue stands at the line
            state.signals.turn_yellow_at(target, -uniform(rng, (YELLOW_S + 1.0, 8.0)))
            front = line
            for _ in range(queued):
                car = vehicle_on(ego.path, 0.0, tokens(), rng, speed=0.0)
                car.s = front - 0.5 * car.length
                front = car.s - 0.5 * car.length - float(rng.uniform(1.8, 3.0))
                state.vehicles.append(car)
            stop_at = front
        else:
            state.signals.turn_yellow_at(target, arrival - uniform(rng, self.yellow_lead_s))
            stop_at = line
        # Cross traffic that has green while the ego waits.
        node = network.lanes[target].node
        own_phase = state.signals.connectors[target][1]
        mine = shapely.LineString(network.lanes[target].centerline[:, :2])
        crossing = [
            c
            for c in network.junctions[node].connector_ids
            if c in state.signals.connectors
            and state.signals.connectors[c][1] != own_phase
            and mine.intersects(shapely.LineString(network.lanes[c].centerline[:, :2]))
        ]
        count = int(rng.integers(*self.cross_vehicles)) if crossing else 0
        for k in range(count):
            through = crossing[int(rng.integers(len(crossing)))]
            speed = float(rng.uniform(0.8, 1.0)) * network.lanes[through].speed_limit
            when = arrival + uniform(rng, (-1.0, 3.0)) + 2.0 * k
            state.vehicles.append(route_vehicle(network, rng, through, max(5.0, speed * when), tokens(), speed))
        add_background(network, rng, state, tokens, others=1, keep_clear=(ego.s, line + 30.0))
        params = {"queue": queued, "cross_vehicles": count, "ego_speed": ego.v, "driver": ego.profile.kind}
        signals = state.signals
        live = lambda s: signals.state(target, s.t) != "green" and within_reach(s.ego, stop_at)  # noqa: E731
        return ScenarioRun(state, live, params)
