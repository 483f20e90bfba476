"""Official NAVSIM metric caches (``run_metric_caching.py``) read into ours, so a cached navtrain / navtest is reused.

An official cache folder holds ``<log>/unknown/<token>/metric_cache.pkl`` (``lzma`` of a pickled
``navsim.planning.metric_caching.metric_cache.MetricCache``) and ``metadata/*.csv`` listing them (absolute paths
where the official tool wrote it). The pickles hold navsim / nuPlan objects; they are read with the allow-list
unpickler as inert :class:`~navsim_eval.pickle_io.ForeignObject` stand-ins (any other class is refused naming it;
WKB polygons go through ``shapely.from_wkb``) and converted field by field:

* v1.1 (branch ``v1.1``): ego, PDM-Closed trajectory, observation (51 occupancy maps of polygons and the first
  appearance of each object), centerline, route lanes, drivable map. Object boxes are recovered from their
  polygons (centre of the diagonal, heading of the long side).
* v2 (``main``): also the detections of every step (boxes and velocities as such), red lights per step, the logged
  history and human future, the t0 objects and the scene type.

A cache made by one version's caching holds that version's PDM-Closed reference only (the two rank the proposals
differently, see ``reference.py``), so the imported cache scores that version alone. No map travels in the official
cache: reactive traffic (two-stage scoring) needs a cache built by ``navsim-eval cache``.
"""

from __future__ import annotations

import csv
import lzma
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from navsim_eval.errors import CacheFileError, NavsimEvalError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.maps.nuplan_map import SemanticMapLayer
from navsim_eval.pdm.metric_cache import NUM_SCORING_STEPS, MetricCache, SceneType
from navsim_eval.pdm.observation import Observation
from navsim_eval.pickle_io import (
    BASE_GLOBALS,
    CORRUPT_PICKLE_ERRORS,
    ForbiddenGlobalError,
    ForeignObject,
    foreign_classes,
    restricted_loads,
)
from navsim_eval.scene import EgoState
from navsim_eval.vehicle import PACIFICA

CACHE_FILE = "metric_cache.pkl"
RED_LIGHT_PREFIX = "red_light_"
OFFICIAL_CLASSES = (
    "navsim.planning.metric_caching.metric_cache.MetricCache",
    "navsim.planning.metric_caching.metric_cache.MapParameters",
    "navsim.common.dataclasses.Trajectory",
    "navsim.common.enums.SceneFrameType",
    "navsim.planning.simulation.planner.pdm_planner.observation.pdm_observation.PDMObservation",
    "navsim.planning.simulation.planner.pdm_planner.observation.pdm_occupancy_map.PDMDrivableMap",
    "navsim.planning.simulation.planner.pdm_planner.observation.pdm_occupancy_map.PDMOccupancyMap",
    "navsim.planning.simulation.planner.pdm_planner.utils.pdm_path.PDMPath",
    "nuplan.common.actor_state.agent.Agent",
    "nuplan.common.actor_state.car_footprint.CarFootprint",
    "nuplan.common.actor_state.dynamic_car_state.DynamicCarState",
    "nuplan.common.actor_state.ego_state.EgoState",
    "nuplan.common.actor_state.oriented_box.OrientedBox",
    "nuplan.common.actor_state.scene_object.SceneObjectMetadata",
    "nuplan.common.actor_state.state_representation.StateSE2",
    "nuplan.common.actor_state.state_representation.StateVector2D",
    "nuplan.common.actor_state.state_representation.TimePoint",
    "nuplan.common.actor_state.static_object.StaticObject",
    "nuplan.common.actor_state.tracked_objects.TrackedObjects",
    "nuplan.common.actor_state.tracked_objects_types.TrackedObjectType",
    "nuplan.common.actor_state.vehicle_parameters.VehicleParameters",
    "nuplan.common.maps.maps_datatypes.SemanticMapLayer",
    "nuplan.planning.simulation.observation.observation_type.DetectionsTracks",
    "nuplan.planning.simulation.trajectory.interpolated_trajectory.InterpolatedTrajectory",
    "nuplan.planning.simulation.trajectory.trajectory_sampling.TrajectorySampling",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
)
ALLOWED_GLOBALS = {
    **BASE_GLOBALS,
    **foreign_classes(OFFICIAL_CLASSES),
    ("shapely.io", "from_wkb"): shapely.from_wkb,
    ("shapely.wkb", "loads"): shapely.from_wkb,
}
OBJECT_TYPES = {0: "vehicle", 1: "pedestrian", 2: "bicycle", 3: "traffic_cone", 4: "barrier", 5: "czone_sign"}
OBJECT_TYPES |= {6: "generic_object", 7: "ego"}


class OfficialCacheError(CacheFileError):
    """An official metric cache file that cannot be read or converted."""


# --------------------------------------------------------------------------------------------------- reading


def load_official_cache_pickle(path: str | os.PathLike) -> ForeignObject:
    """The ``MetricCache`` stand-in of one official cache file (lzma pickle), read with the allow-list."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise OfficialCacheError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        data = lzma.decompress(data)
    except lzma.LZMAError:
        pass  # an uncompressed pickle
    try:
        cache = restricted_loads(data, ALLOWED_GLOBALS, "an official metric cache holds only navsim / nuPlan data")
    except ForbiddenGlobalError as error:
        raise OfficialCacheError(f"{path}: not an official metric cache: {error}") from None
    except CORRUPT_PICKLE_ERRORS as error:
        raise OfficialCacheError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {error})") from None
    if not isinstance(cache, ForeignObject) or cache.name != "MetricCache":
        raise OfficialCacheError(f"{path}: expected a navsim MetricCache, got {type(cache).__name__}")
    return cache


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if not isinstance(obj, ForeignObject) or name not in obj.fields:
            raise OfficialCacheError(f"expected a navsim / nuPlan object with {name!r}, got {obj!r}")
        obj = obj.fields[name]
    return obj


def _enum_value(obj: Any) -> int:
    value = obj.args[0] if isinstance(obj, ForeignObject) and obj.args else obj
    return int(value[0] if isinstance(value, tuple) else value)


def _pose(state: ForeignObject) -> np.ndarray:
    return np.array([float(_get(state, "x")), float(_get(state, "y")), float(_get(state, "heading"))])


def rear_axle_before_round_trip(center: np.ndarray) -> np.ndarray:
    """The rear-axle pose ``p`` a nuPlan ``EgoState`` with box centre ``center`` was built from: ``p + s == c``.

    Our caches hold that pose (the scorer repeats nuPlan's centre round trip itself); where no double gives the
    centre exactly, the nearest candidate is taken.
    """
    x, y, heading = (float(v) for v in center)
    d = PACIFICA.rear_axle_to_center
    shifts = (d * np.cos(heading), d * np.sin(heading))
    pose = []
    for value, shift in zip((x, y), shifts, strict=True):
        guess = value - shift
        candidates = [guess, np.nextafter(guess, np.inf), np.nextafter(guess, -np.inf)]
        pose.append(next((c for c in candidates if c + shift == value), guess))
    return np.array([pose[0], pose[1], heading])


def _ego(state: ForeignObject) -> EgoState:
    center = _pose(_get(state, "_car_footprint", "_center"))
    x, y, heading = rear_axle_before_round_trip(center)
    dynamics = _get(state, "_dynamic_car_state")
    velocity, acceleration = _get(dynamics, "_rear_axle_velocity_2d"), _get(dynamics, "_rear_axle_acceleration_2d")
    return EgoState(
        x=x,
        y=y,
        heading=heading,
        vx=float(_get(velocity, "_x")),
        vy=float(_get(velocity, "_y")),
        ax=float(_get(acceleration, "_x")),
        ay=float(_get(acceleration, "_y")),
        time_us=int(_get(state, "_time_point", "time_us")),
    )


def _trajectory_states(trajectory: ForeignObject) -> list[ForeignObject]:
    if not isinstance(trajectory, ForeignObject) or not trajectory.args or not isinstance(trajectory.args[0], list):
        raise OfficialCacheError(f"expected an InterpolatedTrajectory of ego states, got {trajectory!r}")
    return trajectory.args[0]


def _reference(trajectory: ForeignObject, t0_us: int) -> np.ndarray:
    """The PDM-Closed rear-axle poses at t0 + 0.1 s * k (k = 0..40) from the cached trajectory's ego states."""
    states = _trajectory_states(trajectory)
    times = [int(_get(s, "_time_point", "time_us")) - t0_us for s in states[:NUM_SCORING_STEPS]]
    if times != [100_000 * k for k in range(NUM_SCORING_STEPS)]:
        raise OfficialCacheError(f"PDM-Closed trajectory: expected states every 0.1 s from t0, got offsets {times[:5]}")
    return np.array([rear_axle_before_round_trip(_pose(_get(s, "_car_footprint", "_center"))) for s in states[:41]])


def _object(obj: ForeignObject) -> dict:
    """A detection as the neutral object dict of :meth:`Observation.from_steps`."""
    box = _get(obj, "_box")
    center = _pose(_get(box, "_center"))
    moving = obj.fields.get("_velocity")
    return {
        "token": str(_get(obj, "_metadata", "track_token")),
        "type": OBJECT_TYPES[_enum_value(_get(obj, "_tracked_object_type"))],
        "x": center[0],
        "y": center[1],
        "heading": center[2],
        "length": float(_get(box, "_length")),
        "width": float(_get(box, "_width")),
        "vx": float(_get(moving, "_x")) if moving is not None else 0.0,
        "vy": float(_get(moving, "_y")) if moving is not None else 0.0,
    }


def _tracked(detections: ForeignObject) -> list:
    return _get(detections, "tracked_objects", "tracked_objects")


def _observation_from_detections(detections: list) -> Observation:
    return Observation.from_steps([[_object(obj) for obj in _tracked(step)] for step in detections])


def _observation_from_polygons(observation: ForeignObject) -> Observation:
    """v1.1 stores only polygons per step (and each object's first appearance): boxes are recovered from them."""
    unique = {str(token): _object(obj) for token, obj in _get(observation, "_unique_objects").items()}
    steps = []
    for occupancy in _get(observation, "_occupancy_maps"):
        tokens, polygons = occupancy.args[0], occupancy.args[1]
        step = []
        for token, polygon in zip(tokens, polygons, strict=True):
            if str(token).startswith("red_light") or str(token) not in unique:
                continue
            corners = shapely.get_coordinates(polygon)[:4]  # front-left, rear-left, rear-right, front-right
            center = (corners[0] + corners[2]) / 2.0
            side = corners[0] - corners[1]
            step.append({**unique[str(token)], "x": center[0], "y": center[1], "heading": np.arctan2(side[1], side[0])})
        steps.append(step)
    return Observation.from_steps(steps)


def _drivable_map(drivable: ForeignObject) -> DrivableMap:
    tokens, layers, polygons = drivable.args[0], drivable.args[1], drivable.args[2]
    names = [SemanticMapLayer(_enum_value(layer)).name for layer in layers]
    return DrivableMap([str(t) for t in tokens], [MapLayer[name] for name in names], list(polygons))


def _centerline(path: ForeignObject) -> Centerline:
    return Centerline(np.array([_pose(state) for state in path.args[0]]))


def convert_official_cache(cache: ForeignObject, token: str, log_name: str = "") -> MetricCache:
    """Our :class:`MetricCache` of an official one (see the module docstring)."""
    fields = cache.fields
    version = "v2" if "scene_type" in fields else "v1"
    ego = _ego(fields["ego_state"])
    observation_field = fields["observation"]
    metadata: dict[str, Any] = {
        "imported_from": f"an official NAVSIM {'v2' if version == 'v2' else 'v1.1'} metric cache"
    }
    if version == "v1":
        observation = _observation_from_polygons(observation_field)
        red_lights: list[list[str]] = []
        past = human = current = None
        scene_type = SceneType.ORIGINAL
    else:
        observation = _observation_from_detections(_get(observation_field, "_detections_tracks"))
        red_lights = [
            [str(t)[len(RED_LIGHT_PREFIX) :] for t in tokens if str(t).startswith(RED_LIGHT_PREFIX)]
            for tokens, _ in _get(observation_field, "_occupancy_maps_tl")
        ]
        past = [_ego(s) for s in _trajectory_states(fields["past_human_trajectory"])]
        human_field = fields.get("human_trajectory")
        human = None if human_field is None else np.asarray(_get(human_field, "poses"), dtype=np.float64)
        current = _observation_from_detections(fields["current_tracked_objects"])
        scene_type = SceneType.SYNTHETIC if _enum_value(fields["scene_type"]) == 1 else SceneType.ORIGINAL
        log_name = str(fields.get("log_name") or log_name)
        parameters = fields.get("map_parameters")
        if isinstance(parameters, ForeignObject) and "map_name" in parameters.fields:
            metadata["map_name"] = parameters.fields["map_name"]
    return MetricCache(
        token=token,
        ego=ego,
        drivable_map=_drivable_map(fields["drivable_area_map"]),
        route_lane_ids=tuple(str(i) for i in fields["route_lane_ids"]),
        centerline=_centerline(fields["centerline"]),
        observation=observation,
        red_lights=red_lights,
        references={version: _reference(fields["trajectory"], ego.time_us)},
        past_ego_states=past,
        human_trajectory=human,
        scene_type=scene_type,
        log_name=log_name,
        metadata=metadata,
        current_objects=current,
    )


def read_official_metric_cache(path: str | os.PathLike) -> MetricCache:
    """One official cache file as our :class:`MetricCache` (token = its folder name, log = the folder above)."""
    path = Path(path)
    try:
        return convert_official_cache(
            load_official_cache_pickle(path), path.parent.name, path.parent.parent.parent.name
        )
    except OfficialCacheError as error:
        raise OfficialCacheError(str(error) if str(error).startswith(str(path)) else f"{path}: {error}") from None
    except (NavsimEvalError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise OfficialCacheError(f"{path}: cannot convert ({type(error).__name__}: {error})") from None


# --------------------------------------------------------------------------------------------------- folders


def official_cache_files(folder: str | os.PathLike) -> list[Path]:
    """The cache files of an official cache folder: those its ``metadata/*.csv`` lists (absolute paths from
    another machine are resolved inside the folder by their ``<log>/<type>/<token>/metric_cache.pkl`` tail), else
    every ``metric_cache.pkl`` below it."""
    folder = Path(folder)
    listed: list[Path] = []
    for index in sorted((folder / "metadata").glob("*.csv")):
        with open(index, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        for row in rows[1:]:
            if not row:
                continue
            name = Path(row[0])
            candidates = [name, folder / name, folder / Path(*name.parts[-4:])]
            listed.append(next((c for c in candidates if c.is_file()), folder / Path(*name.parts[-4:])))
    return listed if listed else sorted(folder.rglob(CACHE_FILE))


def iter_official_caches(folder: str | os.PathLike) -> Iterator[tuple[Path, str | None, MetricCache | str]]:
    """(file, token, converted cache or the reason it was skipped) for every file of an official cache folder
    (the :data:`cache_build.CacheResult` layout, for ``write_metric_caches``)."""
    for path in official_cache_files(folder):
        if not path.is_file():
            yield path, None, "listed in the metadata but not found"
            continue
        try:
            cache = read_official_metric_cache(path)
        except OfficialCacheError as error:
            yield path, path.parent.name, str(error)
            continue
        yield path, cache.token, cache
