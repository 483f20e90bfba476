"""The synthetic town and its traffic: connected lane graph, clean geometry, signals, IDM and recorded frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from navsim_eval.maps.locations import MAP_LOCATIONS, PROJECTED_CRS
from navsim_eval.synthetic.network import LANE_WIDTH, MERGE_CLEARANCE, build_network, build_town, grid_layout
from navsim_eval.synthetic.recording import driving_command, run_log, to_ego_frame
from navsim_eval.synthetic.scenarios import SCENARIOS
from navsim_eval.synthetic.scenarios.base import make_ego
from navsim_eval.synthetic.towns import TEST_TOWN, TOWNS, TRAIN_TOWNS, lane_drop, roundabout
from navsim_eval.synthetic.traffic import (
    CYCLE_S,
    DriverProfile,
    RoutePath,
    Signals,
    TrafficState,
    idm_acceleration,
    random_route,
    step,
)


def populate(network, rng, duration_s=None, **_):
    """A scripted drive (a lead that brakes, background traffic) standing in for free traffic."""
    del duration_s
    run = SCENARIOS["lead_braking"].setup(network, rng)
    assert run is not None
    return run.state


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
    start = next(i for i, lane in town.lanes.items() if not lane.is_connector)
    ego = make_ego(town, random_route(town, rng, start, 800.0), 0.0, "ego", DriverProfile())
    always_red = Signals(town.lights, rng)
    always_red.state = lambda connector_id, t: "red" if connector_id in always_red.connectors else None
    state = TrafficState([ego], [], [], always_red)
    for _ in range(600):
        step(state)
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


# ------------------------------------------------------------------------------------------------ layouts and towns


def _surface(network):
    return shapely.union_all(network.drivable_polygons())


def test_roundabout_ring_goes_first_and_is_one_way():
    layout = roundabout(grid_layout((3, 3), 150.0, ring_lanes=1, inner_lanes=1, t_control="yield"), "1,1", 22.0)
    network = build_network(layout)
    ring = [j for j in network.junctions.values() if j.control == "roundabout"]
    assert len(ring) == 4

    def one_way(lane_id: str) -> bool:  # the ring is the only one-way road: one roadblock for its road
        road = network.roadblocks[network.lanes[lane_id].roadblock_id].road
        return sum(rb.road == road for rb in network.roadblocks.values() if not rb.is_connector) == 1

    for junction in ring:
        yielding = [network.lanes[c] for c in junction.connector_ids if network.lanes[c].yield_to]
        assert yielding, f"{junction.node}: entering the ring must yield"
        for entry in yielding:
            assert not one_way(entry.predecessors[0]), "cars already on the ring never yield"
            assert all(one_way(network.lanes[c].predecessors[0]) for c in entry.yield_to), "entries yield to the ring"
    assert _surface(network).geom_type == "Polygon"


def test_lane_drop_merges_the_right_lane_into_the_left_one():
    layout = grid_layout((3, 3), 200.0, ring_lanes=2, inner_lanes=2)
    layout = lane_drop(layout, next(k for k, r in enumerate(layout.roads) if {r.a, r.b} == {"1,1", "2,1"}), "drop")
    network = build_network(layout)
    junction = network.junctions["drop"]
    merging = [network.lanes[c] for c in junction.connector_ids if network.lanes[c].yield_to]
    assert len(merging) == 1  # the ending lane yields to the lane it joins, nobody else yields
    through = network.lanes[merging[0].yield_to[0]]
    assert through.successors == merging[0].successors and through.lane_index == 0
    offset = np.hypot(*(merging[0].centerline[0, :2] - merging[0].centerline[-1, :2]))
    assert offset > 2 * MERGE_CLEARANCE - 1.0  # a taper, not a kink
    assert all(lane.successors and lane.predecessors for lane in network.lanes.values())


def test_who_yields_at_signals():
    network = build_network(grid_layout((3, 3), 170.0, t_control="yield"))
    for lane in network.lanes.values():
        if not lane.is_connector:
            continue
        control = network.junctions[lane.node].control
        if control == "signal":
            assert lane.turn == "left" or not lane.yield_to, f"signal: only left turns yield ({lane.id})"
            for other in lane.yield_to:
                assert network.lanes[other].turn != "left", "a left turn yields to oncoming straight and right turns"
        for other in lane.yield_to:
            assert network.lanes[other].node == lane.node


def test_every_town_is_a_valid_nuplan_location_in_its_utm_zone():
    zone_bounds = {  # easting, northing ranges of the cities the locations name
        "us-ma-boston": ((200_000, 800_000), (4_500_000, 4_800_000)),
        "us-nv-las-vegas-strip": ((500_000, 800_000), (3_900_000, 4_100_000)),
        "us-pa-pittsburgh-hazelwood": ((500_000, 700_000), (4_400_000, 4_550_000)),
        "sg-one-north": ((300_000, 400_000), (100_000, 200_000)),
    }
    assert {town.location for town in TOWNS.values()} == set(MAP_LOCATIONS)
    assert TEST_TOWN not in TRAIN_TOWNS
    for town in TOWNS.values():
        network = town.build(0)
        (x0, x1), (y0, y1) = zone_bounds[town.location]
        xs, ys = (
            np.concatenate([lane.centerline[:, 0] for lane in network.lanes.values()]),
            np.concatenate([lane.centerline[:, 1] for lane in network.lanes.values()]),
        )
        assert x0 < xs.min() and xs.max() < x1 and y0 < ys.min() and ys.max() < y1, town.name
        assert town.projected_crs == PROJECTED_CRS[town.location]
        surface = _surface(network)
        assert surface.geom_type == "Polygon", f"{town.name}: the drivable surface is in pieces"
        assert all(lane.successors and lane.predecessors for lane in network.lanes.values()), town.name
        for lane in network.lanes.values():
            assert surface.buffer(0.05).contains(shapely.LineString(lane.centerline[:, :2])), (town.name, lane.id)


def test_towns_differ_in_layout():
    stats = {}
    for name, town in TOWNS.items():
        network = town.build(0)
        lanes = [len(rb.lane_ids) for rb in network.roadblocks.values() if not rb.is_connector]
        curvature = max(
            np.max(np.abs(np.diff(np.unwrap(lane.centerline[:, 2]))))
            for lane in network.lanes.values()
            if not lane.is_connector
        )
        controls = {j.control for j in network.junctions.values()}
        stats[name] = (max(lanes), curvature, controls)
    assert stats["vegas-arterials"][0] == 3 and stats["pittsburgh-hills"][0] == 1  # arterials vs one-lane suburb
    assert "roundabout" in stats["pittsburgh-hills"][2] and "roundabout" in stats["one-north-mixed"][2]
    assert "merge" in stats["vegas-arterials"][2] and "merge" in stats["one-north-mixed"][2]
    assert "yield" in stats["boston-grid"][2]


def test_town_layouts_are_deterministic_in_the_seed():
    first, again, other = (TOWNS["pittsburgh-hills"].build(seed) for seed in (3, 3, 4))
    key = lambda n: np.concatenate([lane.centerline for lane in n.lanes.values()])  # noqa: E731
    np.testing.assert_array_equal(key(first), key(again))
    assert key(first).shape != key(other).shape or not np.array_equal(key(first), key(other))


def test_signal_can_be_timed_to_turn_yellow():
    network = build_network(grid_layout((3, 3), 170.0))
    signals = Signals(network.lights, np.random.default_rng(0))
    connector = network.lights[0].connector_ids[0]
    signals.turn_yellow_at(connector, 7.3)
    assert signals.state(connector, 7.25) == "green" and signals.state(connector, 7.35) == "yellow"
    assert signals.state(connector, 7.3 + 3.1) == "red"


def test_the_ego_yields_to_a_car_with_right_of_way_and_then_turns():
    network = TOWNS["boston-grid"].build(0)
    state = None
    for seed in range(20):
        run = SCENARIOS["unprotected_turn"].setup(network, np.random.default_rng(seed))
        if run is not None and run.params["conflict_vehicles"] >= 1:
            state = run.state
            break
    assert state is not None
    ego = state.ego
    turn = next(i for i in ego.path.lane_ids if network.lanes[i].is_connector and network.lanes[i].yield_to)
    entry = ego.path.lane_start[ego.path.index[turn]]
    conflicts = set(network.lanes[turn].yield_to)
    crossed_with = []
    for _ in range(400):
        step(state)
        if entry <= ego.front_s <= entry + 3.0:  # entering the turn: nobody with right of way is on its conflicts
            for other in state.vehicles[1:]:
                k = next((other.path.index[c] for c in conflicts if c in other.path.index), None)
                if k is not None and other.path.lane_start[k] <= other.front_s <= other.path.lane_end[k]:
                    crossed_with.append(other.token)
    assert ego.front_s > entry + 5.0, "the ego never made its turn"
    assert not crossed_with, f"the ego entered its turn while {crossed_with} crossed it"


def test_reaction_time_delays_the_egos_braking():
    network = TOWNS["boston-grid"].build(0)
    run = SCENARIOS["lead_braking"].setup(network, np.random.default_rng(1))
    state = run.state
    ego, lead = state.ego, state.vehicles[1]
    ego.profile.reaction_s = 0.8
    start = lead.brakes[0].start_s
    accelerations = []
    while state.t < start + 3.0:
        step(state)
        accelerations.append((state.t, ego.a, lead.a))
    lead_brakes = next(t for t, _, a in accelerations if a < -1.0)
    ego_brakes = next(t for t, a, _ in accelerations if t > lead_brakes and a < -1.0)
    assert ego_brakes - lead_brakes >= 0.7, "a human reacts late"
