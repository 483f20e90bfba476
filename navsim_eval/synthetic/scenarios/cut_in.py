"""A car from the next lane cuts in close in front of the ego, slower than it; sometimes it brakes once in."""

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
    closing_on,
    greens_along,
    make_ego,
    new_state,
    plain_lanes,
    uniform,
    vehicle_on,
)
from navsim_eval.synthetic.traffic import CutIn as CutInManoeuvre
from navsim_eval.synthetic.traffic import DriverProfile


@dataclass(frozen=True)
class CutIn(Scenario):
    name = "cut_in"
    description = "a slower car from the next lane cuts in a few metres ahead of the ego"

    trigger_gap_m: tuple[float, float] = (7.0, 15.0)  # the cutter's rear to the ego's front when it starts
    duration_s: tuple[float, float] = (1.4, 2.8)
    speed_ratio: tuple[float, float] = (0.65, 0.9)  # cutter speed / ego speed
    brake_share: float = 0.25
    brake_decel: tuple[float, float] = (1.0, 2.0)
    trigger_at_s: tuple[float, float] = (4.0, 6.0)
    min_lane_length_m: float = 110.0

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        lanes = [
            i
            for i in plain_lanes(network)
            if network.lanes[i].length >= self.min_lane_length_m
            and (network.neighbour_lane(i, 1) or network.neighbour_lane(i, -1))
        ]
        if not lanes:
            return None
        tokens = Tokens(rng)
        target = lanes[int(rng.integers(len(lanes)))]
        side = 1 if network.neighbour_lane(target, 1) else -1
        route, index = approach_route(network, rng, target, 30.0, 400.0)
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng))
        ego.s = ego.path.lane_start[index] + uniform(rng, (0.0, 10.0))
        if ego.v < 6.0:
            return None
        ratio = uniform(rng, self.speed_ratio)
        trigger_gap = uniform(rng, self.trigger_gap_m)
        trigger_at = uniform(rng, self.trigger_at_s)
        cutter = vehicle_on(ego.path, 0.0, tokens(), rng)
        cutter.v = ratio * ego.v
        cutter.profile.speed_factor = cutter.v / max(network.lanes[target].speed_limit, 1.0)
        cutter.s = ego.front_s + trigger_gap + (ego.v - cutter.v) * trigger_at + 0.5 * cutter.length
        brake = uniform(rng, self.brake_decel) if rng.random() < self.brake_share else 0.0
        cutter.cut_in = CutInManoeuvre(trigger_gap, uniform(rng, self.duration_s), side * LANE_WIDTH, brake_after=brake)
        cutter.offset = side * LANE_WIDTH
        state = new_state(network, rng, ego)
        state.vehicles.append(cutter)
        greens_along(state.signals, ego.path, trigger_at + 12.0)
        add_background(network, rng, state, tokens, keep_clear=(ego.s, ego.s + 250.0))
        params = {
            "trigger_gap_m": trigger_gap,
            "speed_ratio": ratio,
            "brake_after": brake,
            "side": side,
            "ego_speed": ego.v,
            "driver": ego.profile.kind,
        }

        # Live once the cutter is more in the ego's lane than in its own, while the ego closes on it.
        def live(s) -> bool:
            return cutter.cut_in.start_time is not None and abs(cutter.offset) < 2.0 and closing_on(s.ego, cutter)

        return ScenarioRun(state, live, params)
