"""Choosing the PDM-Closed reference: simulate its 15 proposals and keep the best-scoring one, per scoring version.

The official metric cache runs PDM-Closed and scores its proposals with the PDM scorer of its own version against
the planner's constant-velocity forecast, normalising progress over all 15 proposals:

* v1.1 (branch ``v1.1``): NC, DAC multipliers; EP 5, TTC 5, C 2 (comfort on the 41 simulated states); TTC over
  t = 0 .. 4 s; red lights play no part in the score;
* v2 (branch ``main``): NC, DAC, DDC, TLC multipliers; EP 5, TTC 5, LK 2, HC 2 (no history: HC = 1), EP clipped
  raw / best; TTC over t = 0 .. 3.1 s; the red on-route lane connectors of t0 are obstacles at every step, so TLC
  can separate proposals.

So the two versions can pick different proposals, and a candidate's EP is normalised by the pick of its version.
Objects whose box overlaps the ego at t0 are the planner observation's ``collided_track_ids``: NC and TTC skip them
from the start, which is the same as leaving them out of the forecast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.closed_planner import forecast_observation
from navsim_eval.pdm.collisions import ObjectGeometry
from navsim_eval.pdm.metric_cache import NUM_SCORING_STEPS, SCORING_VERSIONS, V1_OBSERVATION_STEPS
from navsim_eval.pdm.observation import Observation
from navsim_eval.pdm.scorer import (
    SceneContext,
    ScorerConfig,
    _metric_columns,
    aggregate,
    evaluate_proposals,
    normalised_progress,
)
from navsim_eval.scene import EgoState
from navsim_eval.sim.interpolation import reference_states_from_poses
from navsim_eval.sim.simulator import simulate

Selector = Callable[[np.ndarray], int]


def _red_light_polygons(drivable_map: DrivableMap, red_light_tokens: Sequence[str]) -> list:
    """The lane-connector polygons of the red lights (tokens without such a polygon in the map are skipped)."""
    connectors = drivable_map.layer_mask([MapLayer.LANE_CONNECTOR])
    polygons = []
    for token in red_light_tokens:
        mask = drivable_map.token_mask([str(token)]) & connectors
        if mask.any():
            polygons.append(drivable_map.polygons[np.flatnonzero(mask)[0]])
    return polygons


def pdm_closed_selector(
    ego: EgoState,
    drivable_map: DrivableMap,
    route_lane_ids: Sequence[str],
    centerline: Centerline,
    current_objects: Observation,
    version: str = "v1",
    red_light_tokens: Sequence[str] = (),
    config: ScorerConfig | None = None,
) -> Selector:
    """A ``select(proposals [P, 41, 3]) -> index`` callback for :func:`closed_planner.plan_pdm_closed` that ranks
    the proposals as the official ``version`` metric cache does.

    ``current_objects``: the t0 objects (step 0 is used); ``red_light_tokens``: the red on-route lane connectors
    at t0 (v2 only).
    """
    if version not in SCORING_VERSIONS:
        raise ValueError(f"unknown PDM score version {version!r}; expected one of {SCORING_VERSIONS}")
    config = config or ScorerConfig()
    num_steps = V1_OBSERVATION_STEPS if version == "v1" else NUM_SCORING_STEPS
    forecast = forecast_observation(ego, current_objects, num_steps=num_steps, drop_collided=True)
    lights = _red_light_polygons(drivable_map, red_light_tokens) if version == "v2" else []
    context = SceneContext(
        cache=None,
        version=version,
        drivable_map=drivable_map,
        route_lane_ids=tuple(route_lane_ids),
        centerline=centerline,
        observation=forecast,
        objects=ObjectGeometry.from_observation(forecast),
        red_light_polygons=[list(lights) for _ in range(NUM_SCORING_STEPS)],
        removed_tokens=[],
        history=None,
        reference_sampled=np.zeros((NUM_SCORING_STEPS, 11)),
    )

    def select(proposals: np.ndarray) -> int:
        simulated = simulate(ego.to_array(), reference_states_from_poses(ego, proposals))
        metrics = evaluate_proposals(context, simulated, with_history=False)
        multiplier = metrics.multiplier(version)
        best_progress = float(np.max(metrics.progress_raw * multiplier))
        ep = normalised_progress(
            metrics.progress_raw, multiplier, best_progress, 1.0, version, config.progress_distance_threshold
        )
        return int(np.argmax(aggregate(_metric_columns(metrics, ep, version), config, version)))

    return select
