"""A lane ends: the ego merges into the lane beside it through a gap in its traffic, or a car from the ending
lane merges in front of the ego."""

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
    closing_on,
    greens_along,
    make_ego,
    new_state,
    route_vehicle,
    time_to,
    uniform,
)
from navsim_eval.synthetic.traffic import DriverProfile


@dataclass(frozen=True)
class Merge(Scenario):
    name = "merge"
    description = "a lane drop: the ego merges through a gap, or a car from the ending lane merges in front of it"

    ego_merges_share: float = 0.6
    through_vehicles: tuple[int, int] = (1, 4)  # upper bound exclusive
    gap_before_s: tuple[float, float] = (1.8, 4.0)  # the through cars reach the taper this long before the ego
    gap_after_s: tuple[float, float] = (2.6, 5.0)  # or this long after it
    merger_speed_ratio: tuple[float, float] = (0.65, 0.85)
    merger_gap_s: tuple[float, float] = (1.3, 2.0)  # the merger's accepted gap
    merger_lead_s: tuple[float, float] = (0.6, 1.6)  # it reaches the taper this long before the ego
    lead_time_s: tuple[float, float] = (5.5, 7.5)

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        merging = [
            c
            for c, lane in network.lanes.items()
            if lane.is_connector and lane.yield_to and network.junctions[lane.node].control == "merge"
        ]
        if not merging:
            return None
        tokens = Tokens(rng)
        merge = merging[int(rng.integers(len(merging)))]
        through = network.lanes[merge].yield_to[0]
        ego_merges = rng.random() < self.ego_merges_share
        route, index = approach_route(network, rng, merge if ego_merges else through, 150.0, 200.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        entry = ego.path.lane_start[index]
        ego.s = max(0.0, entry - (ego.front_s - ego.s) - ego.v * uniform(rng, self.lead_time_s))
        arrival = time_to(ego, entry)
        state = new_state(network, rng, ego)
        if ego_merges:
            # Traffic in the lane it joins, with a gap for it: cars clearly before and after it.
            count = int(rng.integers(*self.through_vehicles))
            before = int(rng.integers(0, count + 1))
            offsets = [-uniform(rng, self.gap_before_s) - 2.5 * k for k in range(before)]
            offsets += [uniform(rng, self.gap_after_s) + 2.5 * k for k in range(count - before)]
            for offset in offsets:
                speed = float(rng.uniform(0.85, 1.0)) * network.lanes[through].speed_limit
                distance = max(3.0, speed * (arrival + offset))
                state.vehicles.append(route_vehicle(network, rng, through, distance, tokens(), speed))
        else:
            count = 1
            speed = uniform(rng, self.merger_speed_ratio) * ego.v
            # It reaches the taper a little before the ego and squeezes in ahead of it.
            ahead = uniform(rng, self.merger_lead_s)
            merger = route_vehicle(network, rng, merge, max(3.0, speed * (arrival - ahead)), tokens(), speed)
            merger.profile.speed_factor = speed / max(network.lanes[merge].speed_limit, 1.0)
            merger.profile.gap_acceptance_s = uniform(rng, self.merger_gap_s)
            state.vehicles.append(merger)
        greens_along(state.signals, ego.path, 14.0)
        add_background(network, rng, state, tokens, others=1, keep_clear=(ego.s, entry + 60.0))
        params = {"ego_merges": ego_merges, "vehicles": count, "ego_speed": ego.v, "driver": ego.profile.kind}
        leave = ego.path.lane_end[index]
        if ego_merges:

            def live(s) -> bool:  # holding its lane would run off the taper: the lane end is within reach
                return s.ego.front_s < min(leave, entry + 8.0) and bends_away(s.ego, threshold_m=1.5)

        else:

            def live(s) -> bool:  # the merging car is moving over in front of the ego
                return merger.front_s > merger.path.lane_start[merger.path.index[merge]] - 5.0 and closing_on(
                    s.ego, merger
                )

        return ScenarioRun(state, live, params)
