"""PDM scoring of K candidate trajectories of one scene: PDMS (NAVSIM v1.1) and EPDMS (NAVSIM v2, one stage).

The official pipeline scores two proposals at a time, the PDM-Closed reference and the agent; the reference only
matters through EP normalisation. Here one call scores K candidates: the scene's observation, map queries and the
simulated reference are shared, and each candidate is normalised against the reference exactly as if it had been
scored alone with it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError, InvalidTrajectoryError
from navsim_eval.geometry import ego_corners_and_center
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.collisions import (
    CollisionEvent,
    ObjectGeometry,
    boxes_overlap,
    no_at_fault_collisions,
    time_to_collision,
)
from navsim_eval.pdm.comfort import COMFORT_CHECKS, comfort_checks
from navsim_eval.pdm.ego_area import EgoAreas, ego_areas
from navsim_eval.pdm.metric_cache import NUM_SCORING_STEPS, V1_OBSERVATION_STEPS, MetricCache, SceneType
from navsim_eval.pdm.metrics import (
    drivable_area_compliance,
    driving_direction_compliance,
    lane_keeping,
    raw_progress,
    traffic_light_compliance,
)
from navsim_eval.pdm.observation import Observation
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.scene import TRAJECTORY_NUM_POSES, validate_trajectory_array
from navsim_eval.sim.history import history_states
from navsim_eval.sim.interpolation import agent_reference_states, reference_states_from_poses
from navsim_eval.sim.simulator import simulate
from navsim_eval.sim.state import StateIndex
from navsim_eval.vehicle import PACIFICA

VERSIONS = ("v1", "v2")
TRAFFIC_AGENTS = ("non_reactive", "reactive")
DT = 0.1
V2_TTC_STEPS = NUM_SCORING_STEPS - 9  # v2 has no observation past 4 s, so TTC stops 0.9 s early


@dataclass(frozen=True)
class ScorerConfig:
    """Weights and switches of the aggregation. Defaults are the official leaderboard settings."""

    progress_weight: float = 5.0
    ttc_weight: float = 5.0
    comfort_weight: float = 2.0  # v1 C
    driving_direction_weight: float = 0.0  # v1 only (DDC is a multiplier in v2)
    lane_keeping_weight: float = 2.0  # v2
    history_comfort_weight: float = 2.0  # v2
    extended_comfort_weight: float = 2.0  # v2, only where a previous frame's plan is given
    progress_distance_threshold: float = 5.0  # metres; below it every proposal gets EP 1
    human_penalty_filter: bool = True  # v2: metrics the human fails are not held against the agent
    human_filter_pre_fix: bool = False  # v2: emulate navsim before 2025-09-29 (filter changed only the columns)
    # v2 background traffic: "non_reactive" = log replay (one-stage default), "reactive" = IDM vehicles that react
    # to each trajectory (two-stage scoring, both stages; see idm_traffic.py)
    traffic_agents: str = "non_reactive"

    def __post_init__(self) -> None:
        if self.traffic_agents not in TRAFFIC_AGENTS:
            raise ValueError(
                f"ScorerConfig.traffic_agents must be one of {TRAFFIC_AGENTS}, got {self.traffic_agents!r}"
            )


@dataclass
class ProposalMetrics:
    """Raw per-proposal metrics of one scoring pass over simulated states [P, 41, 11]."""

    nc: np.ndarray
    dac: np.ndarray
    ddc: np.ndarray
    tlc: np.ndarray
    ttc: np.ndarray
    lk: np.ndarray
    comfort: np.ndarray  # C in v1, HC in v2
    comfort_checks: np.ndarray  # [P, 6]
    progress_raw: np.ndarray
    first_collision_step: np.ndarray
    at_fault_token: list[str]
    first_ttc_step: np.ndarray
    collision_events: list[list[CollisionEvent]]
    areas: EgoAreas

    def select(self, index: slice) -> ProposalMetrics:
        """The metrics of a subset of proposals."""
        picked = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, EgoAreas):
                value = EgoAreas(**{f.name: getattr(value, f.name)[index] for f in fields(value)})
            else:
                value = value[index]
            picked[item.name] = value
        return ProposalMetrics(**picked)

    def multiplier(self, version: str) -> np.ndarray:
        """The product of the multiplicative metrics (NC, DAC in v1; NC, DAC, DDC, TLC in v2)."""
        product = self.nc * self.dac
        return product if version == "v1" else product * self.ddc * self.tlc


@dataclass
class SceneContext:
    """Everything about one scene that all candidates share, prepared once per (cache, version)."""

    cache: MetricCache | None  # None for planner-internal scoring (PDM-Closed proposal selection)
    version: str
    drivable_map: DrivableMap
    route_lane_ids: tuple[str, ...]
    centerline: Centerline
    observation: Observation
    objects: ObjectGeometry
    red_light_polygons: list[list[shapely.Polygon]]
    removed_tokens: list[str]
    history: np.ndarray | None  # [H, 11] logged ego states prepended for HC
    reference_sampled: np.ndarray  # [41, 11] PDM-Closed states before simulation
    reference_simulated: np.ndarray | None = None  # [41, 11], simulated with the first candidates
    reference_metrics: ProposalMetrics | None = None
    human_metrics: dict | None = None
    traffic_agents: str = "non_reactive"

    @classmethod
    def build(cls, cache: MetricCache, version: str, traffic_agents: str = "non_reactive") -> SceneContext:
        """The shared part of scoring ``cache`` in ``version``; with reactive traffic each trajectory gets its own
        observation (:meth:`reacting_to`)."""
        _check_version(version)
        reference_poses = cache.reference(version)  # refuses a version the cache was not made for
        if traffic_agents == "reactive":
            _check_reactive(cache, version)
        if version == "v1":
            if cache.observation.num_steps < V1_OBSERVATION_STEPS:
                raise InvalidSceneError(
                    f"metric cache {cache.token}: v1 scoring needs {V1_OBSERVATION_STEPS} observation steps (5 s of "
                    f"future objects), the cache has {cache.observation.num_steps}; score it with version='v2'"
                )
            observation = cache.observation.truncated(V1_OBSERVATION_STEPS)
            removed, red_lights, history = [], [[] for _ in range(NUM_SCORING_STEPS)], None
        else:
            observation, removed = log_replay_observation(cache)
            red_lights = red_light_polygons(cache)
            history = history_states(cache.past_ego_states) if cache.past_ego_states else None
        reference = reference_states_from_poses(cache.ego, reference_poses)[0]
        return cls(
            cache,
            version,
            cache.drivable_map,
            cache.route_lane_ids,
            cache.centerline,
            observation,
            ObjectGeometry.from_observation(observation),
            red_lights,
            removed,
            history,
            reference,
            traffic_agents=traffic_agents,
        )

    def reacting_to(self, ego_states: np.ndarray) -> SceneContext:
        """This context with the reactive traffic around the ego driving ``ego_states`` [41, 11]; the simulated
        reference is shared, its metrics are not (they are scored against that traffic)."""
        from navsim_eval.pdm.idm_traffic import reactive_observation

        cache = self.cache
        later = cache.observation_v2 if cache.observation_v2 is not None else cache.observation
        observation = reactive_observation(ego_states, cache.current_objects, later, cache.reactive_traffic)
        return replace(
            self,
            observation=observation,
            objects=ObjectGeometry.from_observation(observation),
            removed_tokens=[],
            reference_metrics=None,
        )


def _check_reactive(cache: MetricCache, version: str) -> None:
    if version != "v2":
        raise InvalidSceneError(
            f"metric cache {cache.token}: reactive traffic exists in v2 scoring only, not {version}"
        )
    if cache.reactive_traffic is None or cache.current_objects is None:
        raise InvalidSceneError(
            f"metric cache {cache.token}: holds no reactive-traffic set-up (it needs the map at caching time: build "
            "the cache with `navsim-eval cache` from logs and maps)"
        )


def log_replay_observation(cache: MetricCache) -> tuple[Observation, list[str]]:
    """v2 non-reactive traffic: the first 41 steps, without objects whose box overlaps the ego box at t0."""
    source = cache.observation_v2 if cache.observation_v2 is not None else cache.observation
    observation = source.truncated(NUM_SCORING_STEPS)
    ego_box = ego_corners_and_center(cache.ego.pose, PACIFICA)[:4]
    objects = ObjectGeometry.from_observation(observation)
    present = observation.present[0]
    overlap = np.zeros(len(observation.tokens), dtype=bool)
    if present.any():
        overlap[present] = boxes_overlap(ego_box[None], objects.corners[0, present])
    removed = [token for token, drop in zip(observation.tokens, overlap, strict=True) if drop]
    return observation.without(overlap), removed


def red_light_polygons(cache: MetricCache) -> list[list[shapely.Polygon]]:
    """Per step, the lane-connector polygons of the cache's red lights (they act as obstacles for TLC in v2).

    The cache holds only the red lights on the route (the builder filters them as the official cache does).
    """
    lane_connectors = cache.drivable_map.layer_mask([MapLayer.LANE_CONNECTOR])
    polygons = []
    for tokens in cache.red_lights[:NUM_SCORING_STEPS]:
        step = []
        for token in tokens:
            mask = cache.drivable_map.token_mask([token]) & lane_connectors
            if mask.any():
                step.append(cache.drivable_map.polygons[np.flatnonzero(mask)[0]])
        polygons.append(step)
    return polygons


def evaluate_proposals(context: SceneContext, states: np.ndarray, with_history: bool = True) -> ProposalMetrics:
    """Every metric for simulated proposals [P, 41, 11] in this scene (no aggregation)."""
    version = context.version
    coords = ego_corners_and_center(states[..., :3], PACIFICA)  # [P, T, 5, 2]
    corners, centers = coords[..., :4, :], coords[..., 4, :]
    areas = ego_areas(coords, states[..., :2], context.drivable_map, context.route_lane_ids)
    lateral_risk = areas.multiple_lanes | areas.non_drivable_area
    radius = float(np.hypot(PACIFICA.half_length, PACIFICA.half_width))

    collisions = no_at_fault_collisions(
        states, corners, centers, radius, lateral_risk, context.observation, context.objects, NUM_SCORING_STEPS
    )
    ttc_steps = NUM_SCORING_STEPS if version == "v1" else V2_TTC_STEPS
    ttc, first_ttc = time_to_collision(
        states,
        corners,
        centers,
        radius,
        lateral_risk,
        areas.rear_axle_in_intersection,
        context.observation,
        context.objects,
        ttc_steps,
        DT,
    )
    num = states.shape[0]
    if version == "v1":
        checks = comfort_checks(states, DT, "v1")
        tlc, lk = np.ones(num), np.ones(num)
    else:
        if with_history and context.history is not None:
            padded = np.concatenate([np.broadcast_to(context.history, (num, *context.history.shape)), states], axis=1)
            checks = comfort_checks(padded, DT, "v2")
        else:
            checks = np.ones((num, len(COMFORT_CHECKS)), dtype=bool)
        ego_polygons = shapely.polygons(corners) if any(context.red_light_polygons) else None
        tlc = (
            traffic_light_compliance(ego_polygons, context.red_light_polygons)
            if ego_polygons is not None
            else (np.ones(num))
        )
        lk = lane_keeping(centers, areas, context.centerline, DT)
    return ProposalMetrics(
        nc=collisions.no_collision,
        dac=drivable_area_compliance(areas, NUM_SCORING_STEPS),
        ddc=driving_direction_compliance(centers, areas, version, DT),
        tlc=tlc,
        ttc=ttc,
        lk=lk,
        comfort=checks.all(axis=-1).astype(np.float64),
        comfort_checks=checks,
        progress_raw=raw_progress(centers, context.centerline),
        first_collision_step=collisions.first_step,
        at_fault_token=collisions.at_fault_token,
        first_ttc_step=first_ttc,
        collision_events=collisions.events,
        areas=areas,
    )


def normalised_progress(
    raw: np.ndarray,
    multiplier: np.ndarray,
    reference_raw: float | None,
    reference_multiplier: float | None,
    version: str,
    threshold: float,
) -> np.ndarray:
    """EP of each proposal normalised against the reference (or alone when there is none).

    The normaliser is the larger multiplier-masked progress of {reference, proposal}. v1 reports the masked
    progress over it (so a failed proposal gets 0), v2 the unmasked progress clipped to [0, 1]. At or below
    ``threshold`` metres everybody gets 1 (v1: 0 where the multiplier is 0).
    """
    masked = raw * multiplier
    norm = masked if reference_raw is None else np.maximum(masked, reference_raw * reference_multiplier)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = masked / norm if version == "v1" else np.clip(raw / norm, 0.0, 1.0)
    low = np.ones_like(raw) if version == "v2" else np.where(multiplier == 0.0, 0.0, 1.0)
    return np.where(norm > threshold, ratio, low)


def _weighted(columns: dict[str, np.ndarray], config: ScorerConfig, version: str) -> np.ndarray:
    if version == "v1":
        weights = {
            "ego_progress": config.progress_weight,
            "time_to_collision_within_bound": config.ttc_weight,
            "comfort": config.comfort_weight,
            "driving_direction_compliance": config.driving_direction_weight,
        }
    else:
        weights = {
            "ego_progress": config.progress_weight,
            "time_to_collision_within_bound": config.ttc_weight,
            "lane_keeping": config.lane_keeping_weight,
            "history_comfort": config.history_comfort_weight,
            "two_frame_extended_comfort": config.extended_comfort_weight,
        }
    total = np.zeros_like(columns["ego_progress"])
    weight_sum = np.zeros_like(total)
    for name, weight in weights.items():
        values = columns[name]
        counted = ~np.isnan(values)  # EC is NaN without a previous frame: its weight drops out
        total += np.where(counted, values, 0.0) * weight
        weight_sum += np.where(counted, weight, 0.0)
    return total / weight_sum


def _multiplier_columns(version: str) -> tuple[str, ...]:
    if version == "v1":
        return ("no_at_fault_collisions", "drivable_area_compliance")
    return (
        "no_at_fault_collisions",
        "drivable_area_compliance",
        "driving_direction_compliance",
        "traffic_light_compliance",
    )


def aggregate(columns: dict[str, np.ndarray], config: ScorerConfig, version: str) -> np.ndarray:
    """Final score: product of the multiplicative metrics times the weighted average of the others."""
    product = np.ones_like(columns["ego_progress"])
    for name in _multiplier_columns(version):
        product = product * columns[name]
    return product * _weighted(columns, config, version)


def _metric_columns(metrics: ProposalMetrics, ep: np.ndarray, version: str) -> dict[str, np.ndarray]:
    if version == "v1":
        return {
            "no_at_fault_collisions": metrics.nc,
            "drivable_area_compliance": metrics.dac,
            "ego_progress": ep,
            "time_to_collision_within_bound": metrics.ttc,
            "comfort": metrics.comfort,
            "driving_direction_compliance": metrics.ddc,
        }
    return {
        "no_at_fault_collisions": metrics.nc,
        "drivable_area_compliance": metrics.dac,
        "driving_direction_compliance": metrics.ddc,
        "traffic_light_compliance": metrics.tlc,
        "ego_progress": ep,
        "time_to_collision_within_bound": metrics.ttc,
        "lane_keeping": metrics.lk,
        "history_comfort": metrics.comfort,
        "two_frame_extended_comfort": np.full_like(ep, np.nan),
    }


def simulate_candidates(context: SceneContext, sampled: np.ndarray) -> np.ndarray:
    """Simulate candidate reference states [K, 41, 11]; the PDM-Closed reference rides along in the first call."""
    initial = context.cache.ego.to_array()
    if context.reference_simulated is not None:
        return simulate(initial, sampled)
    simulated = simulate(initial, np.concatenate([context.reference_sampled[None], sampled]))
    context.reference_simulated = simulated[0]
    return simulated[1:]


def reference_simulated(context: SceneContext) -> np.ndarray:
    """The simulated PDM-Closed reference [41, 11] of a scene context."""
    if context.reference_simulated is None:
        context.reference_simulated = simulate(context.cache.ego.to_array(), context.reference_sampled[None])[0]
    return context.reference_simulated


def _evaluate_with_reference(context: SceneContext, simulated: np.ndarray) -> tuple[ProposalMetrics, ProposalMetrics]:
    """Metrics of the candidates and of the PDM-Closed reference; the reference is evaluated once per context,
    in the same pass as the first batch of candidates."""
    if context.reference_metrics is None:
        both = evaluate_proposals(context, np.concatenate([reference_simulated(context)[None], simulated]))
        context.reference_metrics = both.select(slice(0, 1))
        return both.select(slice(1, None)), context.reference_metrics
    return evaluate_proposals(context, simulated), context.reference_metrics


def human_only_columns(context: SceneContext, config: ScorerConfig) -> dict[str, np.ndarray] | None:
    """v2: the logged human trajectory scored alone (no reference, no history), which drives the human filter."""
    cache = context.cache
    if cache is None or cache.human_trajectory is None or cache.scene_type != SceneType.ORIGINAL:
        return None
    if context.human_metrics is None:
        sampled = agent_reference_states(cache.ego, cache.human_trajectory[None])
        simulated = simulate(cache.ego.to_array(), sampled)
        scene = context.reacting_to(simulated[0]) if context.traffic_agents == "reactive" else context
        metrics = evaluate_proposals(scene, simulated, with_history=False)
        ep = normalised_progress(
            metrics.progress_raw, metrics.multiplier("v2"), None, None, "v2", config.progress_distance_threshold
        )
        context.human_metrics = _metric_columns(metrics, ep, "v2")
    return context.human_metrics


def apply_human_filter(
    columns: dict[str, np.ndarray], human: dict[str, np.ndarray], config: ScorerConfig
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Set every metric the human fails (exactly 0) to 1 for the agent.

    Returns (displayed columns, columns the score is aggregated from): post-fix navsim recomputes the score from
    the filtered columns; before the fix (``human_filter_pre_fix``) only the displayed columns changed.
    """
    filtered = dict(columns)
    for name, values in human.items():
        if name in filtered and not np.isnan(values[0]) and values[0] == 0.0:
            filtered[name] = np.ones_like(filtered[name])
    return filtered, (columns if config.human_filter_pre_fix else filtered)


def score_simulated(
    context: SceneContext, simulated: np.ndarray, config: ScorerConfig | None = None
) -> tuple[dict[str, np.ndarray], ProposalMetrics, dict[str, np.ndarray]]:
    """Score simulated candidate states [K, 41, 11] of one scene.

    Returns the official columns, the raw metrics and the columns the score was aggregated from.
    """
    config = config or ScorerConfig()
    version = context.version
    metrics, reference = _evaluate_with_reference(context, simulated)
    ep = normalised_progress(
        metrics.progress_raw,
        metrics.multiplier(version),
        float(reference.progress_raw[0]),
        float(reference.multiplier(version)[0]),
        version,
        config.progress_distance_threshold,
    )
    columns = _metric_columns(metrics, ep, version)
    scored = columns
    if version == "v2" and config.human_penalty_filter:
        human = human_only_columns(context, config)
        if human is not None:
            columns, scored = apply_human_filter(columns, human, config)
    columns["score"] = aggregate(scored, config, version)
    return columns, metrics, scored


def _score_kept(
    context: SceneContext, simulated: np.ndarray, config: ScorerConfig
) -> tuple[dict[str, np.ndarray], ProposalMetrics, dict[str, np.ndarray]]:
    """:func:`score_simulated` for every candidate together, or, with reactive traffic, each against its own."""
    if context.traffic_agents != "reactive":
        return score_simulated(context, simulated, config)
    if config.human_penalty_filter:
        human_only_columns(context, config)  # once per scene, shared by the candidates' contexts
    parts = [score_simulated(context.reacting_to(states), states[None], config) for states in simulated]
    columns = {name: np.concatenate([part[0][name] for part in parts]) for name in parts[0][0]}
    scored = {name: np.concatenate([part[2][name] for part in parts]) for name in parts[0][2]}
    metrics = ProposalMetrics(
        **{item.name: _concatenate([getattr(part[1], item.name) for part in parts]) for item in fields(ProposalMetrics)}
    )
    return columns, metrics, scored


def _concatenate(values: list):
    if isinstance(values[0], EgoAreas):
        return EgoAreas(**{f.name: np.concatenate([getattr(v, f.name) for v in values]) for f in fields(EgoAreas)})
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values)
    return [item for value in values for item in value]


def score(
    cache: MetricCache,
    trajectories: np.ndarray,
    version: str = "v1",
    config: ScorerConfig | None = None,
    context: SceneContext | None = None,
) -> ScoreTable:
    """Score K candidate trajectories [K, 8, 3] (or one [8, 3]) of one scene in its ego frame.

    A candidate with NaN or infinite poses gets an invalid row with score 0 and a reason; the others are scored
    normally. A wrongly shaped batch raises :class:`InvalidTrajectoryError`.
    """
    _check_version(version)
    array = np.asarray(trajectories, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (TRAJECTORY_NUM_POSES, 3):
        validate_trajectory_array(array, name=f"trajectories for scene {cache.token}")
    if array.shape[0] == 0:
        raise InvalidTrajectoryError(f"trajectories for scene {cache.token}: empty batch (K = 0)")
    config = config or ScorerConfig()
    traffic = config.traffic_agents if version == "v2" else "non_reactive"
    if context is None or context.cache is not cache or context.version != version or context.traffic_agents != traffic:
        context = SceneContext.build(cache, version, traffic)
    finite = np.isfinite(array).all(axis=(1, 2))
    reasons = ["" if ok else "trajectory contains NaN or infinite poses" for ok in finite]
    num = len(array)
    names = METRIC_COLUMNS[version]
    columns = {name: np.zeros(num) for name in names}
    diagnostics = {
        "progress_raw": np.zeros(num),
        "first_collision_step": np.full(num, -1, dtype=np.int64),
        "at_fault_token": np.array([""] * num, dtype=object),
        "first_ttc_step": np.full(num, -1, dtype=np.int64),
    }
    if version == "v2":
        columns["two_frame_extended_comfort"][:] = np.nan
    aggregation = {name: values.copy() for name, values in columns.items() if name != "score"}
    simulated_all = np.full((num, NUM_SCORING_STEPS, len(StateIndex)), np.nan)
    index = np.flatnonzero(finite)
    if len(index):
        simulated = simulate_candidates(context, agent_reference_states(cache.ego, array[index]))
        diverged = ~np.isfinite(simulated).all(axis=(1, 2))
        for i in index[diverged]:
            reasons[i] = "simulation diverged (non-finite states)"
        keep = index[~diverged]
        simulated = simulated[~diverged]
        if len(keep):
            scored, metrics, aggregated = _score_kept(context, simulated, config)
            for name in names:
                columns[name][keep] = scored[name]
                if name != "score":
                    aggregation[name][keep] = aggregated[name]
            diagnostics["progress_raw"][keep] = metrics.progress_raw
            diagnostics["first_collision_step"][keep] = metrics.first_collision_step
            diagnostics["at_fault_token"][keep] = metrics.at_fault_token
            diagnostics["first_ttc_step"][keep] = metrics.first_ttc_step
            simulated_all[keep] = simulated
    valid = np.array([reason == "" for reason in reasons])
    return ScoreTable(
        cache.token,
        version,
        columns,
        valid,
        reasons,
        diagnostics,
        simulated_all,
        cache.log_name,
        cache.t0_us,
        aggregation,
    )


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown PDM score version {version!r}; expected one of {VERSIONS}")


__all__ = [
    "SceneContext",
    "ScorerConfig",
    "aggregate",
    "evaluate_proposals",
    "normalised_progress",
    "score",
    "score_simulated",
]
