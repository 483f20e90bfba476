"""A car ahead brakes hard, to a stop or to a crawl; in stop-and-go traffic it stops again after moving off."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_eval.synthetic.scenarios.base import (
    Scenario,
    ScenarioRun,
    Tokens,
    add_background,
    closing_on,
    greens_along,
    make_ego,
    new_state,
    plain_lanes,
    uniform,
    vehicle_on,
)
from navsim_eval.synthetic.traffic import BrakeEvent, DriverProfile, random_route


@dataclass(frozen=True)
class LeadBraking(Scenario):
    name = "lead_braking"
    description = "the car ahead brakes hard (to a stop or a crawl); stop-and-go queues stop twice"

    decel: tuple[float, float] = (3.0, 6.0)  # m/s^2
    headway_s: tuple[float, float] = (1.3, 2.4)  # the ego's gap to the lead when the braking starts
    stop_share: float = 0.7  # the rest slow to a crawl
    crawl_speed: tuple[float, float] = (1.0, 3.5)
    stop_and_go_share: float = 0.35
    hold_s: tuple[float, float] = (0.8, 2.5)
    brake_at_s: tuple[float, float] = (4.5, 6.5)
    min_speed_limit: float = 10.0

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        lanes = [i for i in plain_lanes(network) if network.lanes[i].speed_limit >= self.min_speed_limit]
        if not lanes:
            return None
        tokens = Tokens(rng)
        route = random_route(network, rng, lanes[int(rng.integers(len(lanes)))], 600.0)
        ego = make_ego(network, route, uniform(rng, (0.0, 10.0)), tokens(), DriverProfile.sample(rng))
        if ego.v < 6.0:
            return None
        brake_at = uniform(rng, self.brake_at_s)
        gap = ego.v * uniform(rng, self.headway_s) + 2.0
        lead = vehicle_on(ego.path, 0.0, tokens(), rng)
        lead.s = ego.front_s + gap + 0.5 * lead.length
        lead.profile.speed_factor = ego.profile.speed_factor
        lead.v = ego.v
        decel = uniform(rng, self.decel)
        stop = rng.random() < self.stop_share
        target = 0.0 if stop else uniform(rng, self.crawl_speed)
        hold = uniform(rng, self.hold_s)
        lead.brakes.append(BrakeEvent(brake_at, decel, target, hold))
        stop_and_go = rng.random() < self.stop_and_go_share
        if stop_and_go:
            again = brake_at + ego.v / decel + hold + uniform(rng, (2.5, 4.0))
            lead.brakes.append(BrakeEvent(again, uniform(rng, self.decel), 0.0, hold))
        state = new_state(network, rng, ego)
        state.vehicles.append(lead)
        greens_along(state.signals, ego.path, brake_at + 12.0)
        add_background(network, rng, state, tokens, keep_clear=(ego.s, ego.s + 300.0))
        params = {
            "decel": decel,
            "target_speed": target,
            "headway_s": (gap - 2.0) / ego.v,
            "stop_and_go": stop_and_go,
            "ego_speed": ego.v,
            "driver": ego.profile.kind,
        }
        live = lambda s: s.t >= brake_at and closing_on(s.ego, lead)  # noqa: E731
        return ScenarioRun(state, live, params, max_live_s=12.0 if stop_and_go else 7.0)
