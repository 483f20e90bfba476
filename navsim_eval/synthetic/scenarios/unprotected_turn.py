"""The ego turns left from the minor road of a yield T-junction across the main road's traffic, which has right
of way in both directions; straight on is off the road."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_eval.synthetic.scenarios.base import (
    Scenario,
    ScenarioRun,
    Tokens,
    add_background,
    approach_route,
    bends_away,
    green_until,
    make_ego,
    new_state,
    route_vehicle,
    time_to,
    uniform,
)
from navsim_eval.synthetic.traffic import DriverProfile


def has_straight_on(network, connector: str) -> bool:
    """Whether the lane a connector leaves from also continues straight on (else the junction is a T for it)."""
    entry = network.lanes[network.lanes[connector].predecessors[0]]
    return any(network.lanes[c].turn == "straight" for c in entry.successors)


@dataclass(frozen=True)
class UnprotectedTurn(Scenario):
    name = "unprotected_turn"
    description = "a left turn from the minor road of a T across main-road traffic that has right of way"

    conflict_vehicles: tuple[int, int] = (1, 4)  # how many cars with right of way (upper bound exclusive)
    arrival_offset_s: tuple[float, float] = (-1.0, 4.5)  # when they reach the junction, relative to the ego
    min_spacing_s: float = 2.2
    lead_time_s: tuple[float, float] = (5.0, 7.0)

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        pool = [
            c
            for c, lane in network.lanes.items()
            if lane.is_connector
            and lane.turn == "left"
            and lane.yield_to
            and network.junctions[lane.node].control == "yield"
            and not has_straight_on(network, c)
        ]
        if not pool:
            return None
        tokens = Tokens(rng)
        target = pool[int(rng.integers(len(pool)))]
        route, index = approach_route(network, rng, target, 150.0, 200.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        entry = ego.path.lane_start[index]
        ego.s = max(0.0, entry - (ego.front_s - ego.s) - ego.v * uniform(rng, self.lead_time_s))
        arrival = time_to(ego, entry) + 1.0  # it slows for the turn
        state = new_state(network, rng, ego)
        green_until(state.signals, target, arrival + uniform(rng, (7.0, 12.0)))
        conflicts = list(network.lanes[target].yield_to)
        count = int(rng.integers(*self.conflict_vehicles))
        offsets = np.sort(rng.uniform(*self.arrival_offset_s, size=count)) + self.min_spacing_s * np.arange(count)
        for offset in offsets:
            through = conflicts[int(rng.integers(len(conflicts)))]
            speed = float(rng.uniform(0.8, 1.0)) * network.lanes[through].speed_limit
            vehicle = route_vehicle(network, rng, through, max(5.0, speed * (arrival + offset)), tokens(), speed)
            state.vehicles.append(vehicle)
        add_background(network, rng, state, tokens, others=1, keep_clear=(ego.s, entry + 40.0))
        params = {
            "node": network.lanes[target].node,
            "conflict_vehicles": count,
            "ego_speed": ego.v,
            "driver": ego.profile.kind,
        }
        # From the minor road the approach matters (straight on leaves the road); at a signal, the turn itself.
        leave = ego.path.lane_end[index]

        def live(s) -> bool:  # straight on would leave the road: the turn is within reach or under way
            return s.ego.front_s < leave and bends_away(s.ego)

        return ScenarioRun(state, live, params)
