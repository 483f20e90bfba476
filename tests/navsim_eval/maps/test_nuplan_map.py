"""NuPlanMap: lane graph as nuPlan builds it, query semantics and NAVSIM's drivable map."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.drivable import MapLayer
from navsim_eval.maps.nuplan_map import NuPlanMap, RoadblockConnector, SemanticMapLayer

from .map_fixtures import write_road


@pytest.fixture(scope="module")
def road(tmp_path_factory) -> NuPlanMap:
    return NuPlanMap.from_file(write_road(tmp_path_factory.mktemp("map") / "map.gpkg"), "us-ma-boston")


def test_lane_graph(road):
    lane1, lane3 = road.lane("1"), road.lane("3")
    assert lane1.outgoing_edges == ("11",) and lane1.incoming_edges == ()
    assert lane3.incoming_edges == ("11", "13") and lane3.outgoing_edges == ("14",)  # table order
    assert lane1.get_roadblock_id() == "100" and lane1.parent is road.roadblock("100") and lane3.index == 0
    connector = road.lane_connector("13")
    assert connector.incoming_edges == ("2",) and connector.outgoing_edges == ("3",)
    assert connector.get_roadblock_id() == "300" and connector.parent is road.roadblock_connector("300")
    assert connector.speed_limit_mps == 15.0 and not connector.has_traffic_lights()
    assert [lane.id for lane in connector.outgoing()] == ["3"]
    a, b = road.roadblock("100"), road.roadblock("101")
    assert a.interior_edges == ("1", "2") and a.outgoing_edges == ("300",) and a.incoming_edges == ()
    assert b.incoming_edges == ("300",) and b.outgoing_edges == ("301",)
    ab = road.roadblock_connector("300")
    assert ab.interior_edges == ("11", "13") and ab.incoming_edges == ("100",) and ab.outgoing_edges == ("101",)
    assert ab.intersection_id == "500"
    assert road.roadblock("102").incoming_edges == ("301", "302")


def test_speed_limits_and_baseline_paths(road):
    assert road.lane("2").speed_limit_mps == pytest.approx(13.4) and road.lane("1").speed_limit_mps is None
    path = road.lane_connector("13").baseline_path
    poses = path.discrete_path
    assert poses.shape == (path.linestring.coords.__len__(), 3) and path.length == pytest.approx(np.hypot(10, 4))
    np.testing.assert_allclose(poses[:, 2], np.arctan2(4, 10))  # heading to the next vertex, last repeated
    np.testing.assert_allclose(poses[[0, -1], :2], [[50, -2], [60, 2]])


def test_get_map_object_returns_none_for_other_layers(road):
    assert road.get_map_object("100", SemanticMapLayer.ROADBLOCK) is road.roadblock("100")
    assert road.get_map_object("300", SemanticMapLayer.ROADBLOCK) is None
    assert isinstance(road.get_map_object("300", SemanticMapLayer.ROADBLOCK_CONNECTOR), RoadblockConnector)
    assert road.get_map_object("600", SemanticMapLayer.CARPARK_AREA).layer == SemanticMapLayer.CARPARK_AREA
    with pytest.raises(ValueError, match="PUDO"):
        road.get_map_object("1", SemanticMapLayer.PUDO)


def test_proximal_query_is_an_axis_aligned_square(road):
    found = road.get_proximal_map_objects((200.0, 200.0), 10.0, [SemanticMapLayer.CARPARK_AREA])
    # 601 is 11.3 m away diagonally (inside the square, outside the circle); 602 is 11 m away along x.
    assert [obj.id for obj in found[SemanticMapLayer.CARPARK_AREA]] == ["601"]
    edge = road.get_proximal_map_objects((55.0, -16.0), 10.0, [SemanticMapLayer.INTERSECTION])
    assert [obj.id for obj in edge[SemanticMapLayer.INTERSECTION]] == ["500"]  # touching the square counts


def test_proximal_lane_connectors_use_their_line_strings(road):
    # (55, 5.5) is inside connector 11's polygon (y 0..4 buffered to 4) but 3.5 m from its line string.
    query = road.get_proximal_map_objects((55.0, 5.5), 1.0, [SemanticMapLayer.LANE_CONNECTOR])
    assert query[SemanticMapLayer.LANE_CONNECTOR] == []
    assert [lc.id for lc in road.get_all_map_objects((55.0, 3.5), SemanticMapLayer.LANE_CONNECTOR)] == ["11"]


def test_point_queries(road):
    assert [lane.id for lane in road.get_all_map_objects((10.0, -2.0), SemanticMapLayer.LANE)] == ["2"]
    assert road.get_all_map_objects((10.0, 0.0), SemanticMapLayer.LANE) == []  # on a shared edge: not contained
    assert road.get_one_map_object((10.0, 2.0), SemanticMapLayer.ROADBLOCK).id == "100"
    assert road.is_in_layer((55.0, 0.0), SemanticMapLayer.INTERSECTION)
    assert not road.is_in_layer((30.0, 0.0), SemanticMapLayer.INTERSECTION)
    # DRIVABLE_AREA = road segments + intersections + generic drivable areas + car parks (no lanes or roadblocks).
    assert road.is_in_layer((30.0, 20.0), SemanticMapLayer.DRIVABLE_AREA)
    assert not road.is_in_layer((30.0, 0.0), SemanticMapLayer.DRIVABLE_AREA)
    assert road.get_distance_to_nearest_map_object((30.0, 8.0), SemanticMapLayer.ROADBLOCK) == ("100", 4.0)
    assert road.lane_connector_polygon("13").equals(road.lane_connector("13").polygon)


def test_drivable_map_around_matches_pdm_drivable_map_order(road):
    drivable = road.drivable_map_around((11.461, -2.0), 100.0)
    expected = [
        ("100", MapLayer.ROADBLOCK),
        ("101", MapLayer.ROADBLOCK),
        ("105", MapLayer.ROADBLOCK),
        ("1", MapLayer.LANE),
        ("2", MapLayer.LANE),
        ("3", MapLayer.LANE),
        ("4", MapLayer.LANE),
        ("8", MapLayer.LANE),
        ("11", MapLayer.LANE_CONNECTOR),
        ("13", MapLayer.LANE_CONNECTOR),
        ("14", MapLayer.LANE_CONNECTOR),
        ("15", MapLayer.LANE_CONNECTOR),
        ("16", MapLayer.LANE_CONNECTOR),
        ("500", MapLayer.INTERSECTION),
        ("501", MapLayer.INTERSECTION),
        ("600", MapLayer.CARPARK_AREA),
    ]
    assert list(zip(drivable.tokens, drivable.layers, strict=True)) == expected  # 102 starts at x=120 > 111.461
    assert drivable.polygon("13").equals(road.lane_connector_polygon("13"))
    assert "300" not in drivable.tokens  # roadblock-connector polygons themselves are not included
    with pytest.raises(InvalidSceneError, match="no roadblock"):
        road.drivable_map_around((5000.0, 5000.0), 100.0)


def test_pickles_by_path(road):
    clone = pickle.loads(pickle.dumps(road))
    assert clone.path == road.path and clone.map_name == "us-ma-boston" and list(clone.lanes) == list(road.lanes)
