"""Choosing the PDM-Closed reference: simulate its 15 proposals and keep the best-scoring one.

The official metric cache runs PDM-Closed and scores its proposals with a default PDM scorer against the planner's
own constant-velocity forecast (red lights of t0 held as obstacles), normalising progress over all 15 proposals.
We do the same with our simulator and metrics, aggregated with the v1 weights (NC, DAC multipliers; EP 5, TTC 5,
C 2); the official v2 cache scores with its v2 scorer, which can pick a different proposal where TLC, LK or HC
separate them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.pdm.closed_planner import forecast_observation
from navsim_eval.pdm.collisions import ObjectGeometry
from navsim_eval.pdm.metric_cache import NUM_SCORING_STEPS, V1_OBSERVATION_STEPS
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


def pdm_closed_selector(
    ego: EgoState,
    drivable_map: DrivableMap,
    route_lane_ids: Sequence[str],
    centerline: Centerline,
    current_objects: Observation,
    config: ScorerConfig | None = None,
) -> Callable[[np.ndarray], int]:
    """A ``select(proposals [P, 41, 3]) -> index`` callback for :func:`closed_planner.plan_pdm_closed`."""
    config = config or ScorerConfig()
    forecast = forecast_observation(ego, current_objects, num_steps=V1_OBSERVATION_STEPS)
    context = SceneContext(
        cache=None,
        version="v1",
        drivable_map=drivable_map,
        route_lane_ids=tuple(route_lane_ids),
        centerline=centerline,
        observation=forecast,
        objects=ObjectGeometry.from_observation(forecast),
        red_light_polygons=[[] for _ in range(NUM_SCORING_STEPS)],
        removed_tokens=[],
        history=None,
        reference_sampled=np.zeros((NUM_SCORING_STEPS, 11)),
    )

    def select(proposals: np.ndarray) -> int:
        simulated = simulate(ego.to_array(), reference_states_from_poses(ego, proposals))
        metrics = evaluate_proposals(context, simulated, with_history=False)
        multiplier = metrics.multiplier("v1")
        best_progress = float(np.max(metrics.progress_raw * multiplier))
        ep = normalised_progress(
            metrics.progress_raw, multiplier, best_progress, 1.0, "v1", config.progress_distance_threshold
        )
        return int(np.argmax(aggregate(_metric_columns(metrics, ep, "v1"), config, "v1")))

    return select
