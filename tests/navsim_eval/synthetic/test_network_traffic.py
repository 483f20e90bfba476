"""The synthetic town and its traffic: connected lane graph, clean geometry, signals, IDM and recorded frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from navsim_eval.synthetic.network import LANE_WIDTH, build_town
from navsim_eval.synthetic.recording import driving_command, run_log, to_ego_frame
from navsim_eval.synthetic.traffic import (
    CYCLE_S,
    DriverProfile,
    RoutePath,
    Signals,
    idm_acceleration,
    populate,
    random_route,
    step,
)


@pytest.fixture(scope="module")
def town():
    return build_town(np.random.default_rng(0))


def test_town_has_every_kind_of_road(town):
    connectors = [lane for lane in town.lanes.values() if lane.is_connector]
    assert {lane.turn for lane in connectors} == {"straight", "left", "right"}
    assert len(town.intersections) == 5  # four 3-way and one 4-way node in a 3 x 3 grid (corners are curves)
    assert len(town.carparks) == 2
    lane_counts = {len(rb.lane_ids) for rb in town.roadblocks.values() if not rb.is_connector}
    curved = [
        lane for lane in town.lanes.values() if not lane.is_connector and np.ptp(np.unwrap(lane.centerline[:, 2])) > 1.5
    ]
    assert curved, "the ring corners should be curved lanes"
    assert lane_counts == {1, 2}  # single- and two-lane roads
    assert all(lane.polygon.is_valid for lane in town.lanes.values())


def test_lane_graph_is_connected_without_dead_ends(town):
    for lane in town.lanes.values():
        assert lane.successors and lane.predecessors, f"lane {lane.id} is a dead end"
        for successor in lane.successors:
            gap = np.linalg.norm(town.lanes[successor].centerline[0, :2] - lane.centerline[-1, :2])
            assert gap < 1e-9, f"lane {lane.id} -> {successor} jumps {gap} m"


def test_drivable_surface_is_one_piece_without_slivers(town):
    surface = shapely.union_all(town.drivable_polygons())
    assert surface.geom_type == "Polygon"
    holes = sorted(shapely.Polygon(ring).area for ring in surface.interiors)
    blocks = [area for area in holes if area > 1.0]
    assert len(blocks) == 4  # the four town blocks; anything else would be a gap in the road
    assert sum(area for area in holes if area <= 1.0) < 1e-6


def test_map_ids_are_integers(town):
    assert all(key.isdigit() for key in [*town.lanes, *town.roadblocks, *town.intersections, *town.carparks])


def test_signals_alternate_between_approaches(town):
    signals = Signals(town.lights, np.random.default_rng(1))
    node = town.lights[0].node
    ns = next(g for g in town.lights if g.node == node and g.approach == "ns").connector_ids[0]
    ew = next(g for g in town.lights if g.node == node and g.approach == "ew").connector_ids[0]
    times = np.arange(0.0, CYCLE_S, 0.5)
    both_green = [t for t in times if signals.state(ns, t) == signals.state(ew, t) == "green"]
    assert not both_green
    assert {signals.state(ns, t) for t in times} == {"green", "yellow", "red"}


def test_idm_brakes_for_a_stopped_obstacle_and_cruises_on_a_free_road():
    profile = DriverProfile()
    assert idm_acceleration(10.0, 10.0, math.inf, 0.0, profile) == pytest.approx(0.0)
    assert idm_acceleration(5.0, 10.0, math.inf, 0.0, profile) > 0.0
    assert idm_acceleration(10.0, 10.0, 8.0, 0.0, profile) < -3.0


def test_route_path_follows_its_lanes(town):
    rng = np.random.default_rng(3)
    start = next(i for i, lane in town.lanes.items() if not lane.is_connector)
    lanes = random_route(town, rng, start, 500.0)
    path = RoutePath(town, lanes)
    assert path.length >= 500.0 - 1e-6 or not town.lanes[lanes[-1]].successors
    for index in (0, len(lanes) // 2, len(lanes) - 1):
        lane = town.lanes[lanes[index]]
        middle = 0.5 * (path.lane_start[index] + path.lane_end[index])
        point = shapely.Point(path.pose(middle)[:2])
        assert lane.polygon.buffer(1e-6).contains(point)


def test_simulation_is_deterministic_and_the_ego_keeps_to_the_road():
    def run(seed: int):
        rng = np.random.default_rng(seed)
        network = build_town(rng)
        state = populate(network, rng, 20.0)
        return network, state, run_log(state, network, 20)

    network, _, first = run(7)
    _, _, second = run(7)
    np.testing.assert_array_equal([s.ego_pose for s in first], [s.ego_pose for s in second])
    surface = shapely.union_all(network.drivable_polygons())
    for snap in first:
        assert surface.buffer(0.5).contains(shapely.Point(snap.ego_pose[:2]))
        assert snap.driving_command.sum() == 1
    assert np.all(np.diff([s.time_s for s in first]) == pytest.approx(0.5))


def test_red_light_stops_the_ego(town):
    rng = np.random.default_rng(11)
    state = populate(town, rng, 30.0, num_vehicles=0, num_pedestrians=0, num_statics=0)
    state.vehicles = state.vehicles[:1]  # the ego alone
    always_red = Signals(town.lights, rng)
    always_red.state = lambda connector_id, t: "red" if connector_id in always_red.connectors else None
    state.signals = always_red
    for _ in range(600):
        step(state)
    ego = state.ego
    lane = town.lanes[ego.path.lane_ids[ego.path.lane_index_at(ego.s)]]
    next_lane = town.lanes[ego.path.lane_ids[min(ego.path.lane_index_at(ego.s) + 1, len(ego.path.lane_ids) - 1)]]
    # Within a minute every route reaches a signalised intersection, where the ego must wait at the stop line.
    assert next_lane.is_connector and next_lane.id in always_red.connectors
    assert ego.v < 0.5
    assert not lane.is_connector


def test_driving_command_and_ego_frame_transform(town):
    rng = np.random.default_rng(5)
    state = populate(town, rng, 10.0)
    assert driving_command(state.ego).tolist().count(1) == 1
    pose = np.array([10.0, 5.0, np.pi / 2])
    boxes = np.array([[10.0, 15.0, 0.8, 4.0, 2.0, 1.6, np.pi / 2]])
    local, velocity = to_ego_frame(pose, boxes, np.array([[0.0, 3.0]]))
    np.testing.assert_allclose(local[0, :2], [10.0, 0.0], atol=1e-12)  # straight ahead
    np.testing.assert_allclose(local[0, 6], 0.0, atol=1e-12)
    np.testing.assert_allclose(velocity[0], [3.0, 0.0, 0.0], atol=1e-12)
    assert LANE_WIDTH == pytest.approx(3.7)
