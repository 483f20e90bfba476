"""Route handling as NAVSIM's PDM planner does it: correction, starting lane, Dijkstra centerline."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np
import pytest

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.nuplan_map import NuPlanMap
from navsim_eval.maps.route import (
    breadth_first_search,
    dijkstra_lanes,
    lookup_route,
    remove_route_loops,
    route_lanes,
    scene_map_inputs,
    starting_lane,
)
from navsim_eval.pdm.builder import build_metric_cache
from navsim_eval.scene import Boxes, EgoState, Frame, Scene

from .map_fixtures import write_road

FULL_ROUTE = ["100", "300", "101", "301", "102"]


@pytest.fixture(scope="module")
def road(tmp_path_factory) -> NuPlanMap:
    return NuPlanMap.from_file(write_road(tmp_path_factory.mktemp("map") / "map.gpkg"))


def test_route_lookup_deduplicates_and_falls_back_to_connectors(road):
    route = lookup_route(road, ["100", "100", "300", "101"])
    assert list(route) == ["100", "300", "101"] and type(route["300"]).__name__ == "RoadblockConnector"
    assert list(route_lanes(route)) == ["1", "2", "11", "13", "3", "4"]
    with pytest.raises(InvalidSceneError, match="'999' is neither a roadblock nor a roadblock connector"):
        lookup_route(road, ["999"])


def test_correction_fills_gaps_between_unlinked_roadblocks(road):
    inputs = scene_map_inputs(road, EgoState(10.0, -2.0, 0.0), ["100", "101", "102"])
    assert inputs.route_roadblock_ids == FULL_ROUTE
    assert inputs.uncorrected_route_lane_ids == ["1", "2", "3", "4", "5", "6"]
    assert inputs.route_lane_ids == ["1", "2", "11", "13", "3", "4", "14", "15", "5", "6"]


def test_correction_recovers_an_off_route_start_backwards(road):
    inputs = scene_map_inputs(road, EgoState(10.0, -2.0, 0.0), ["101", "301", "102"])
    assert inputs.route_roadblock_ids == FULL_ROUTE
    assert inputs.uncorrected_route_lane_ids == ["3", "4", "14", "15", "5", "6"]
    assert inputs.starting_lane_id == "2" and inputs.speed_limit_mps == pytest.approx(13.4)


def test_correction_forward_search_when_backward_fails(road):
    # Side road D (105) only reaches the route forwards, through connector 302 into C (102).
    inputs = scene_map_inputs(road, EgoState(80.0, 44.0, 0.0), ["101", "301", "102"])
    assert inputs.route_roadblock_ids == ["105", "302", "102"] and inputs.starting_lane_id == "8"
    assert inputs.speed_limit_mps is None


def test_centerline_is_continuous_across_a_lane_connector(road):
    inputs = scene_map_inputs(road, EgoState(10.0, -2.0, 0.0), FULL_ROUTE)
    poses = inputs.centerline.poses
    np.testing.assert_allclose(poses[[0, -1], :2], [[0.0, -2.0], [170.0, 2.0]])
    steps = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)
    assert steps.max() < 1.1  # no jump anywhere: lane 2 -> connector 13 (lane change) -> lane 3 -> 14 -> 5
    assert np.count_nonzero(steps == 0.0) == 4  # joint points are kept twice, as in the official centerline
    on_connector = (poses[:, 0] > 50) & (poses[:, 0] < 60)
    np.testing.assert_allclose(poses[on_connector, 2], np.arctan2(4, 10))
    assert inputs.centerline.length == pytest.approx(50 + np.hypot(10, 4) + 50 + 10 + 50)


def test_starting_lane_prefers_the_smallest_heading_error(road):
    route = lookup_route(road, FULL_ROUTE)
    lanes = route_lanes(route)
    drivable = road.drivable_map_around((55.0, 1.0))
    # (55, 1) lies in connectors 11 (straight) and 13 (lane change); the ego heading picks between them.
    assert starting_lane(drivable, EgoState(55.0, 1.0, 0.0), lanes).id == "11"
    assert starting_lane(drivable, EgoState(55.0, 1.0, 0.4), lanes).id == "13"
    # Off every route lane: the lane closest to the ego footprint.
    assert starting_lane(drivable, EgoState(30.0, 12.0, 0.0), lanes).id == "1"


def test_dijkstra_without_a_path_returns_the_cheapest_deepest_expansion(road):
    lanes = route_lanes(lookup_route(road, FULL_ROUTE))
    path, found = dijkstra_lanes(road, road.lane("1"), list(lanes), "105")
    assert not found and [lane.id for lane in path] == ["1", "11", "3", "14", "5"]
    path, found = dijkstra_lanes(road, road.lane("2"), list(lanes), "102")
    assert found and [lane.id for lane in path] == ["2", "13", "3", "14", "5"]


def test_remove_route_loops_cuts_at_a_repeated_connector(road):
    blocks = [road.roadblock_connector("300"), road.roadblock("101"), road.roadblock_connector("300")]
    assert [block.id for block in remove_route_loops(blocks)] == ["300", "101"]
    assert remove_route_loops(list(lookup_route(road, FULL_ROUTE).values())) == list(
        lookup_route(road, FULL_ROUTE).values()
    )


def test_scene_map_inputs_errors(road):
    with pytest.raises(InvalidSceneError, match="no route"):
        scene_map_inputs(road, EgoState(10.0, -2.0, 0.0), [])


def test_scene_map_inputs_feed_the_metric_cache_builder(road):
    frames = [
        Frame(f"tok{i}", 2_000_000 + 500_000 * i, EgoState(5.0 + 2.5 * i, -2.0, 0.0, vx=5.0), Boxes.empty(), ["100"])
        for i in range(14)
    ]
    scene = Scene("tok3", "log", "us-ma-boston", frames)
    inputs = scene_map_inputs(road, scene.current_frame.ego, ["100", "101", "102"])
    cache = build_metric_cache(
        scene, inputs.drivable_map, inputs.route_lane_ids, inputs.centerline, speed_limit_mps=inputs.speed_limit_mps
    )
    assert cache.route_lane_ids == tuple(inputs.route_lane_ids) and cache.drivable_map is inputs.drivable_map
    assert np.all(np.diff(cache.references["v1"][:, 0]) >= 0)  # PDM-Closed drives along the centerline


@dataclass(frozen=True, eq=False)
class _Node:
    id: str


def _official_bfs(start, targets, max_depth, neighbours):
    """Literal port of NAVSIM's BreadthFirstSearchRoadBlock.search (queue with duplicates, parents by id_depth)."""
    queue = deque([start, None])
    parent = {f"{start.id}_1": None}
    depth, end, end_depth, found = 1, start, 1, False
    while queue:
        current = queue.popleft()
        if depth > max_depth:
            break
        if current is None:
            depth += 1
            queue.append(None)
            if queue[0] is None:
                break
            continue
        if current.id in targets and depth <= max_depth:
            end, end_depth, found = current, depth, True
            break
        for nxt in neighbours(current):
            queue.append(nxt)
            parent[f"{nxt.id}_{depth + 1}"] = current
    if not found:
        return None
    path = [end]
    while parent[f"{end.id}_{end_depth}"] is not None:
        end = parent[f"{end.id}_{end_depth}"]
        path.append(end)
        end_depth -= 1
    return path[::-1]


def test_breadth_first_search_matches_the_official_queue_semantics():
    rng = random.Random(0)
    for _ in range(300):
        nodes = [_Node(str(i)) for i in range(rng.randint(2, 9))]
        edges = {n.id: [rng.choice(nodes) for _ in range(rng.randint(0, 3))] for n in nodes}  # cycles, duplicates

        def neighbours(node, edges=edges):
            return edges[node.id]

        start = rng.choice(nodes)
        targets = {rng.choice(nodes).id for _ in range(rng.randint(1, 2))}
        depth = rng.randint(1, 7)
        expected = _official_bfs(start, targets, depth, neighbours)
        actual = breadth_first_search(start, targets, depth, neighbours)
        assert (None if expected is None else [n.id for n in expected]) == (
            None if actual is None else [n.id for n in actual]
        )
