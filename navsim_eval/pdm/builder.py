"""Build a :class:`MetricCache` from a scene, its map and route (NAVSIM's ``MetricCacheProcessor``).

Mirrors ``navsim/planning/metric_caching/metric_cache_processor.py`` (``v1.1`` and ``main``): the observation is the
10 Hz interpolation of the current and future 2 Hz annotations (``annotations.observation_from_frames``), red lights
are the held 2 Hz statuses (``red_lights_from_frames``), the past ego states are the logged states at t0 - 1.5 s ..
t0 (``main``'s ``get_ego_past_trajectory(0, 1.5)``: frames -3 .. 0), the human trajectory is the logged future
(8 poses every 0.5 s in the t0 rear-axle frame; none for a synthetic scene) and the references are PDM-Closed's,
planned once from the current frame's objects and the red lights of its corrected route, one pick per scoring
version (``reference.py``), unless given.

Differences to keep in mind: the map queries (route correction, centerline, drivable map) are the caller's; the
caller passes the starting lane's speed limit (``speed_limit_mps``, default None = the 15 m/s fallback); the cached
red lights are those of ``red_light_route_lane_ids`` (official v2: the uncorrected route of the current frame),
default the given ``route_lane_ids``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.maps.nuplan_map import NuPlanMap
from navsim_eval.maps.route import scene_map_inputs
from navsim_eval.pdm.annotations import (
    V1_OBSERVATION_STEPS,
    V2_OBSERVATION_STEPS,
    frames_needed,
    observation_from_frames,
    red_lights_from_frames,
)
from navsim_eval.pdm.closed_planner import pdm_closed_proposals, pick_proposal
from navsim_eval.pdm.idm_traffic import reactive_traffic_setup
from navsim_eval.pdm.metric_cache import NUM_SCORING_STEPS, SCORING_VERSIONS, MetricCache, SceneType
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import EgoState, Frame, Scene

Selector = Callable[[np.ndarray], int]

NUM_PAST_EGO_STATES = 4  # t0 - 1.5 s, -1 s, -0.5 s, t0


def route_lane_connector_ids(drivable_map: DrivableMap, route_lane_ids: Sequence[str]) -> list[str]:
    """The route lanes that are LANE_CONNECTOR polygons of the drivable map (where red lights can apply)."""
    connectors = set(np.asarray(drivable_map.tokens, dtype=object)[drivable_map.layer_mask([MapLayer.LANE_CONNECTOR])])
    return [lane_id for lane_id in route_lane_ids if lane_id in connectors]


def _timed_ego(frame: Frame) -> EgoState:
    """The frame's ego state stamped with the frame time (NAVSIM takes time points from the frame timestamps)."""
    return dataclasses.replace(frame.ego, time_us=int(frame.timestamp_us))


def build_metric_cache(
    scene: Scene,
    drivable_map: DrivableMap,
    route_lane_ids: Sequence[str],
    centerline: Centerline,
    reference_poses: np.ndarray | Mapping[str, np.ndarray] | None = None,
    select: Selector | Mapping[str, Selector] | None = None,
    *,
    speed_limit_mps: float | None = None,
    red_light_route_lane_ids: Sequence[str] | None = None,
    versions: Sequence[str] = SCORING_VERSIONS,
    scene_type: SceneType = SceneType.ORIGINAL,
) -> MetricCache:
    """Everything the scorer needs for ``scene``, for v1 and v2 alike.

    ``reference_poses``: a cached PDM-Closed reference [41, 3] (global rear-axle poses at t0 + 0.1 s * k) for every
    version, or one per version; when None, PDM-Closed is planned once and each version picks its proposal with
    ``select(proposals [15, 41, 3]) -> index`` (one callable for every version, or one per version; default:
    simulate and score them with that version's scorer, as the official v1.1 and v2 metric caches do, see
    ``reference.pdm_closed_selector``). The v1 observation needs 10 future frames (5 s); with only 8 (4 s, the
    two-stage splits) the cache serves v2 only. ``versions``: the scoring versions to hold a reference for.
    ``scene_type``: a SYNTHETIC scene (a two-stage follow-up) has no human trajectory, so no human filter.
    ``red_light_route_lane_ids``: the lanes whose red lights count (official v2: the uncorrected logged route).
    """
    token = scene.token
    route_lane_ids = [str(lane_id) for lane_id in route_lane_ids]
    if not route_lane_ids:
        raise InvalidSceneError(f"scene {token}: route_lane_ids is empty; the route must have at least one lane")
    future = scene.future_frames
    needed_v2 = frames_needed(V2_OBSERVATION_STEPS) - 1
    if len(future) < needed_v2:
        raise InvalidSceneError(
            f"scene {token}: future_frames has {len(future)} frames, at least {needed_v2} needed "
            f"({needed_v2 * 0.5:g} s at 2 Hz)"
        )

    current = scene.current_frame
    frames = [current, *future]
    observation_v2 = observation_from_frames(frames, V2_OBSERVATION_STEPS)
    has_v1 = len(future) >= frames_needed(V1_OBSERVATION_STEPS) - 1
    observation = observation_from_frames(frames, V1_OBSERVATION_STEPS) if has_v1 else observation_v2
    versions = [version for version in SCORING_VERSIONS if version in versions and (has_v1 or version != "v1")]
    if not versions:
        raise InvalidSceneError(
            f"scene {token}: {len(future)} future frames serve v2 only (v1 needs "
            f"{frames_needed(V1_OBSERVATION_STEPS) - 1}), but v2 was not asked for"
        )
    # Official v2 keeps the red lights of the logged (uncorrected) route; default: the given route.
    connectors = route_lane_connector_ids(drivable_map, red_light_route_lane_ids or route_lane_ids)
    red_lights = red_lights_from_frames(frames, connectors, NUM_SCORING_STEPS)
    # PDM-Closed sees the red lights of its own (corrected) route at t0 (the planner's route lane dictionary).
    red_lights_t0 = red_lights_from_frames([current], route_lane_connector_ids(drivable_map, route_lane_ids), 1)[0]
    ego = _timed_ego(current)
    history = scene.frames[max(0, scene.num_history - NUM_PAST_EGO_STATES) : scene.num_history]
    past_ego_states = [_timed_ego(frame) for frame in history]
    human_trajectory = scene.future_trajectory().poses if scene_type == SceneType.ORIGINAL else None

    current_objects = observation_from_frames([current], 1)  # the t0 objects as logged
    if reference_poses is None:
        references = _plan_references(
            ego,
            current_objects,
            drivable_map,
            route_lane_ids,
            centerline,
            red_lights_t0,
            speed_limit_mps,
            select,
            versions,
        )
    else:
        given = reference_poses if isinstance(reference_poses, Mapping) else dict.fromkeys(versions, reference_poses)
        references = {}
        for version, poses in given.items():
            poses = np.asarray(poses, dtype=np.float64)
            if poses.shape != (NUM_SCORING_STEPS, 3) or not np.all(np.isfinite(poses)):
                raise InvalidSceneError(
                    f"scene {token}: reference_poses must be finite [{NUM_SCORING_STEPS}, 3] global rear-axle "
                    f"poses, got shape {list(poses.shape)}"
                )
            references[version] = poses

    return MetricCache(
        token=token,
        ego=ego,
        drivable_map=drivable_map,
        route_lane_ids=tuple(route_lane_ids),
        centerline=centerline,
        observation=observation,
        observation_v2=observation_v2 if has_v1 else None,
        red_lights=red_lights,
        references=references,
        past_ego_states=past_ego_states,
        human_trajectory=human_trajectory,
        scene_type=scene_type,
        log_name=scene.log_name,
        metadata={"map_name": scene.map_name},
        current_objects=current_objects,
    )


def _plan_references(
    ego: EgoState,
    current_objects: Observation,
    drivable_map: DrivableMap,
    route_lane_ids: Sequence[str],
    centerline: Centerline,
    red_lights: Sequence[str],
    speed_limit_mps: float | None,
    select: Selector | Mapping[str, Selector] | None,
    versions: Sequence[str],
) -> dict[str, np.ndarray]:
    """PDM-Closed's 15 proposals, planned once from the t0 objects and red lights, and each version's pick."""
    proposals = pdm_closed_proposals(ego, centerline, current_objects, drivable_map, red_lights, speed_limit_mps)
    references = {}
    for version in versions:
        if select is None:
            from navsim_eval.pdm.reference import pdm_closed_selector  # the scorer imports the simulator

            chooser = pdm_closed_selector(
                ego, drivable_map, route_lane_ids, centerline, current_objects, version, red_lights
            )
        else:
            chooser = select[version] if isinstance(select, Mapping) else select
        references[version] = pick_proposal(proposals, chooser)
    return references


def build_metric_cache_from_map(
    scene: Scene, nuplan_map: NuPlanMap, radius: float = 100.0, scene_type: SceneType = SceneType.ORIGINAL
) -> MetricCache:
    """The metric cache of a scene loaded from logs, with every map input derived as NAVSIM derives it: the
    drivable map around the ego, the corrected route and its lanes, the centerline, the starting lane's speed
    limit (for PDM-Closed), the red lights of the logged route, and the IDM agents of reactive traffic."""
    current = scene.current_frame
    if not current.roadblock_ids:
        raise InvalidSceneError(f"scene {scene.token}: the current frame has no route (roadblock_ids is empty)")
    inputs = scene_map_inputs(nuplan_map, current.ego, list(current.roadblock_ids), radius)
    cache = build_metric_cache(
        scene,
        inputs.drivable_map,
        inputs.route_lane_ids,
        inputs.centerline,
        speed_limit_mps=inputs.speed_limit_mps,
        red_light_route_lane_ids=inputs.uncorrected_route_lane_ids,
        scene_type=scene_type,
    )
    cache.reactive_traffic = reactive_traffic_setup(cache.ego, cache.current_objects, nuplan_map)
    return cache
