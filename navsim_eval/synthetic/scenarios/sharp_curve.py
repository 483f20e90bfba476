"""A bend, a roundabout or a turn at a junction where going straight leaves the road."""

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
    greens_along,
    make_ego,
    new_state,
    uniform,
)
from navsim_eval.synthetic.scenarios.unprotected_turn import has_straight_on
from navsim_eval.synthetic.traffic import DriverProfile, RoutePath


@dataclass(frozen=True)
class SharpCurve(Scenario):
    name = "sharp_curve"
    description = "a sharp bend, a roundabout or a junction turn: driving straight on leaves the road"

    max_radius_m: float = 45.0
    turn_share: float = 0.4  # junction turns; the rest are bends of the road (roundabout rings included)
    lead_time_s: tuple[float, float] = (4.5, 6.5)

    def setup(self, network, rng: np.random.Generator) -> ScenarioRun | None:
        bends, turns = [], []
        for lane_id, lane in network.lanes.items():
            if lane.is_connector:
                if lane.turn != "straight" and not has_straight_on(network, lane_id):
                    turns.append((lane_id, 0.0, lane.length))  # a T or a roundabout: there is no straight on
                continue
            heading = np.unwrap(lane.centerline[:, 2])
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(lane.centerline[:, :2], axis=0), axis=1))])
            curvature = np.abs(np.gradient(heading, s, edge_order=1)) if len(s) > 2 else np.zeros(len(s))
            sharp = np.flatnonzero(curvature > 1.0 / self.max_radius_m)
            if sharp.size and abs(heading[-1] - heading[0]) > np.radians(40):
                bends.append((lane_id, float(s[sharp[0]]), float(s[sharp[-1]] - s[sharp[0]])))
        pool = turns if (turns and (rng.random() < self.turn_share or not bends)) else bends
        if not pool:
            return None
        tokens = Tokens(rng)
        target, within, curve_length = pool[int(rng.integers(len(pool)))]
        route, index = approach_route(network, rng, target, 120.0, 200.0)
        path = RoutePath(network, route)
        curve_s = path.lane_start[index] + within
        ego = make_ego(network, route, 0.0, tokens(), DriverProfile.sample(rng), speed_fraction=1.0)
        ego.s = max(0.0, curve_s - (ego.front_s - ego.s) - max(ego.v, 6.0) * uniform(rng, self.lead_time_s))
        state = new_state(network, rng, ego)
        greens_along(state.signals, ego.path, 14.0)
        add_background(network, rng, state, tokens, oncoming=1, parked=0, keep_clear=(ego.s, curve_s + 60.0))
        lane = network.lanes[target]
        kind = f"turn_{lane.turn}" if lane.is_connector and lane.turn != "straight" else "bend"
        if (lane.node and network.junctions[lane.node].control == "roundabout") or (
            any(
                network.lanes[i].node and network.junctions[network.lanes[i].node].control == "roundabout"
                for i in route[index : index + 2]
            )
        ):
            kind = "roundabout"
        params = {"kind": kind, "ego_speed": ego.v, "driver": ego.profile.kind}
        curve_end = curve_s + curve_length

        def live(s) -> bool:  # straight on would leave the lane: the curve is within reach or under way
            return s.ego.front_s < curve_end + 10.0 and bends_away(s.ego, min_speed=2.0)

        return ScenarioRun(state, live, params)
