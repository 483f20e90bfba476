"""Scene, map and metric-cache types reject what real data never contains, with messages naming the field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import shapely

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.errors import InvalidSceneError, InvalidTrajectoryError
from navsim_eval.geometry import absolute_to_relative_poses, ego_corners_and_center, relative_to_absolute_poses
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.observation import Observation
from navsim_eval.pdm.scorer import score
from navsim_eval.scene import EgoState, ObjectType, Trajectory
from navsim_eval.vehicle import PACIFICA


def test_pose_transforms_round_trip():
    rng = np.random.default_rng(1)
    origin = np.array([664001.1, 3996998.6, 2.9])
    poses = rng.normal(0, 20, (8, 3))
    poses[:, 2] = rng.uniform(-np.pi, np.pi, 8)
    back = absolute_to_relative_poses(origin, relative_to_absolute_poses(origin, poses))
    np.testing.assert_allclose(back[:, :2], poses[:, :2], atol=1e-8)
    np.testing.assert_allclose(np.cos(back[:, 2] - poses[:, 2]), 1.0, atol=1e-12)


def test_ego_box_matches_the_pacifica():
    coords = ego_corners_and_center(np.array([0.0, 0.0, 0.0]), PACIFICA)
    np.testing.assert_allclose(coords[0], [PACIFICA.front_length, PACIFICA.half_width])  # front left
    np.testing.assert_allclose(coords[2], [-PACIFICA.rear_length, -PACIFICA.half_width])  # rear right
    np.testing.assert_allclose(coords[4], [PACIFICA.rear_axle_to_center, 0.0])
    assert PACIFICA.rear_axle_to_center == pytest.approx(1.461)


def test_drivable_map_boundary_points_are_outside():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    drivable = DrivableMap.from_rings([("rb", "ROADBLOCK", square), ("lane", MapLayer.LANE, square / 2)])
    inside = drivable.points_in_polygons(np.array([[5.0, 5.0], [10.0, 5.0], [2.0, 2.0], [11.0, 1.0]]))
    assert inside.tolist() == [[True, False, True, False], [False, False, True, False]]
    assert drivable.is_in_layer(np.array([[1.0, 1.0]]), [MapLayer.LANE]).tolist() == [True]


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "drivable map is empty"),
        ([("a", "ROAD", np.zeros((4, 2)))], "unknown layer 'ROAD'"),
        ([("a", "LANE", np.zeros((2, 2)))], "finite exterior ring"),
        ([("a", "LANE", np.array([[0, 0], [1, 0], [np.nan, 1]]))], "finite exterior ring"),
    ],
)
def test_bad_maps_are_rejected(items, message):
    with pytest.raises(InvalidSceneError, match=message):
        DrivableMap.from_rings(items)


def test_centerline_projection_and_distance():
    line = Centerline(np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, np.pi / 2]]))
    np.testing.assert_allclose(line.project(np.array([[3.0, 1.0], [12.0, 4.0]])), [3.0, 14.0])
    np.testing.assert_allclose(line.distance(np.array([[3.0, 1.0], [12.0, 4.0]])), [1.0, 2.0])
    with pytest.raises(InvalidSceneError, match="centerline"):
        Centerline(np.zeros((1, 3)))


def test_trajectory_validation_names_the_problem():
    Trajectory(np.zeros((8, 3)))
    with pytest.raises(InvalidTrajectoryError, match=r"got \[9, 3\]"):
        Trajectory(np.zeros((9, 3)))
    with pytest.raises(InvalidTrajectoryError, match="NaN"):
        Trajectory(np.full((8, 3), np.nan))
    with pytest.raises(InvalidTrajectoryError, match="cannot convert"):
        Trajectory([["a"] * 3] * 8)


def test_ego_state_rejects_non_finite_values():
    with pytest.raises(InvalidSceneError, match="non-finite"):
        EgoState(0.0, np.nan, 0.0)


def test_object_types_parse_both_spellings():
    assert ObjectType.parse("VEHICLE") is ObjectType.VEHICLE
    assert ObjectType.parse("traffic_cone") is ObjectType.TRAFFIC_CONE
    assert ObjectType.TRAFFIC_CONE.is_agent is False and ObjectType.BICYCLE.is_agent is True
    with pytest.raises(InvalidSceneError, match="unknown object type 'truck'"):
        ObjectType.parse("truck")


def test_observation_first_appearance_and_static_velocity():
    steps = [
        [],
        [{"token": "a", "type": "VEHICLE", "x": 1, "y": 2, "heading": 0, "length": 4, "width": 2, "vx": 3, "vy": 0}],
        [
            {"token": "a", "type": "VEHICLE", "x": 2, "y": 2, "heading": 0, "length": 4, "width": 2, "vx": 3, "vy": 0},
            {
                "token": "c",
                "type": "TRAFFIC_CONE",
                "x": 9,
                "y": 2,
                "heading": 0,
                "length": 1,
                "width": 1,
                "vx": 5,
                "vy": 5,
            },
        ],
    ]
    observation = Observation.from_steps(steps)
    assert observation.tokens == ["a", "c"]
    assert observation.first_appearance().tolist() == [1, 2]
    assert observation.velocity[2, 1].tolist() == [0.0, 0.0]  # static objects never move
    assert observation.without(np.array([True, False])).tokens == ["c"]
    with pytest.raises(InvalidSceneError, match="appears twice"):
        Observation.from_steps([steps[1] + steps[1]])


def test_metric_cache_requires_a_route_and_a_full_reference():
    case = load_case(case_paths(default_conformance_dir())[0])
    cache = case.cache
    fields = dict(
        token="t",
        ego=cache.ego,
        drivable_map=cache.drivable_map,
        centerline=cache.centerline,
        observation=cache.observation,
        red_lights=[],
        references=cache.references,
    )
    with pytest.raises(InvalidSceneError, match="has no route"):
        MetricCache(route_lane_ids=(), **fields)
    with pytest.raises(InvalidSceneError, match="the v2 reference poses must be finite \\[41, 3\\], got \\[40, 3\\]"):
        MetricCache(route_lane_ids=("x",), **{**fields, "references": {"v2": np.zeros((40, 3))}})
    with pytest.raises(InvalidSceneError, match="references must map some of"):
        MetricCache(route_lane_ids=("x",), **{**fields, "references": {"v3": cache.references["v1"]}})
    with pytest.raises(InvalidSceneError, match="references must map some of"):
        MetricCache(route_lane_ids=("x",), **{**fields, "references": {}})


def test_a_cache_without_a_version_reference_refuses_that_version_in_one_line():
    cache = load_case(case_paths(default_conformance_dir())[0]).cache
    cache = dataclasses.replace(
        cache,
        references={"v2": cache.references["v2"]},
        metadata={"imported_from": "an official NAVSIM v2 metric cache"},
    )
    assert cache.versions == ("v2",)
    np.testing.assert_array_equal(cache.reference("v2"), cache.references["v2"])
    with pytest.raises(InvalidSceneError) as error:
        cache.reference("v1")
    message = str(error.value)
    assert "\n" not in message
    assert "holds no v1 PDM-Closed reference (imported from an official NAVSIM v2 metric cache)" in message
    assert "--version v2" in message
    with pytest.raises(InvalidSceneError, match="holds no v1 PDM-Closed reference"):
        score(cache, np.zeros((8, 3)), "v1")


def test_a_polygon_that_is_not_a_polygon_is_rejected():
    with pytest.raises(InvalidSceneError, match="not a non-empty shapely Polygon"):
        DrivableMap(["a"], [MapLayer.LANE], [shapely.Point(0, 0)])
