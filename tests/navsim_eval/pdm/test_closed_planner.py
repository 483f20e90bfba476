"""IDM and PDM-Closed proposals: hand-computed IDM values, path geometry, stopping behaviour and the forecast."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.closed_planner import (
    PDMPath,
    _leading_agents,
    build_forecast,
    forecast_observation,
    pdm_closed_proposals,
    plan_pdm_closed,
)
from navsim_eval.pdm.idm import BatchIDMPolicy
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import EgoState
from navsim_eval.vehicle import PACIFICA

FRONT = PACIFICA.front_length  # rear axle to front bumper


def straight_centerline(length: float = 200.0) -> Centerline:
    xs = np.arange(0.0, length + 0.5, 1.0)
    return Centerline(np.stack([xs, np.zeros_like(xs), np.zeros_like(xs)], axis=1))


def road_map(*connectors: tuple[str, float, float]) -> DrivableMap:
    items = [("rb", MapLayer.ROADBLOCK, np.array([[-10, -6], [210, -6], [210, 6], [-10, 6]]))]
    for token, x0, x1 in connectors:
        items.append((token, MapLayer.LANE_CONNECTOR, np.array([[x0, -2], [x1, -2], [x1, 2], [x0, 2]])))
    return DrivableMap.from_rings(items)


def objects(*items: dict) -> Observation:
    defaults = {"y": 0.0, "heading": 0.0, "length": 4.0, "width": 2.0, "vx": 0.0, "vy": 0.0, "type": "vehicle"}
    return Observation.from_steps([[{**defaults, **item} for item in items]])


NO_OBJECTS = Observation.from_steps([[]])


# ---------------------------------------------------------------- IDM


def test_idm_acceleration_matches_hand_computation():
    idm = BatchIDMPolicy()
    # s* = 1 + 10*1.5 + 10*(10-5)/(2*sqrt(1.5*3)) = 27.7851; a = 1.5*(1 - (10/15)^10 - (27.7851/30)^2) = 0.18730
    np.testing.assert_allclose(idm.acceleration(10.0, 30.0, 5.0, 15.0), 0.18730020, atol=1e-7)
    # Standing start on a free road: 1.5 * (1 - 0 - (1/100)^2)
    np.testing.assert_allclose(idm.acceleration(0.0, 100.0, 0.0, 15.0), 1.49985, atol=1e-9)
    # Far too close: clipped to -decel_max; gap below s0 is clamped to s0 (no division by zero)
    assert idm.acceleration(10.0, 0.0, 0.0, 15.0) == -3.0
    assert idm.acceleration(10.0, -5.0, 0.0, 15.0) == -3.0
    # Above the target speed on a free road: (20/15)^10 = 17.76 -> clipped braking
    assert idm.acceleration(20.0, 1e6, 20.0, 15.0) == -3.0


def test_idm_propagate_is_one_euler_step():
    idm = BatchIDMPolicy()
    progress, velocity = idm.propagate(
        np.array([0.0, 5.0]),
        np.array([10.0, 0.0]),
        np.array([30.0, 1e6]),
        np.array([5.0, 0.0]),
        np.array([0.0, 0.0]),
        np.array([15.0, 15.0]),
        0.1,
    )
    np.testing.assert_allclose(progress, [1.0, 5.0])
    np.testing.assert_allclose(velocity, [10.0 + 0.1 * 0.18730020, 0.15], atol=1e-7)


def test_target_velocities():
    idm = BatchIDMPolicy()
    np.testing.assert_allclose(idm.target_velocities(None), [3.0, 6.0, 9.0, 12.0, 15.0])
    np.testing.assert_allclose(idm.target_velocities(10.0), [2.0, 4.0, 6.0, 8.0, 10.0])
    with pytest.raises(ValueError, match="speed_limit_mps"):
        idm.target_velocities(0.0)


# ---------------------------------------------------------------- paths


def test_path_interpolation_offset_and_substring():
    path = PDMPath(straight_centerline(10.0).poses)
    np.testing.assert_allclose(path.interpolate([2.5, -1.0, 99.0]), [[2.5, 0, 0], [1e-5, 0, 0], [10.0, 0, 0]])
    left = path.offset(1.0)
    np.testing.assert_allclose(left.poses[:, 1], 1.0)
    assert list(path.substring(2.5, 5.0).coords) == [(3.0, 0.0), (4.0, 0.0), (5.0, 0.0)]
    np.testing.assert_allclose(path.substring(2.2, 2.8).length, 0.6)  # fewer than two vertices: exact substring


def test_path_heading_is_unwrapped_before_interpolating():
    poses = np.array([[0.0, 0.0, 3.1], [1.0, 0.0, -3.1]])
    heading = PDMPath(poses).interpolate([0.5])[0, 2]
    np.testing.assert_allclose(abs(heading), np.pi, atol=1e-9)


# ---------------------------------------------------------------- proposals


def test_proposals_shape_start_and_lateral_offsets():
    ego = EgoState(10.0, 0.3, 0.05, vx=8.0)
    proposals = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, road_map(), [], None)
    assert proposals.shape == (15, 41, 3)
    # Pose 0 is the ego rear axle projected onto each path; paths are centre, right (-1 m), left (+1 m).
    np.testing.assert_allclose(proposals[:5, 0], [[10.0, 0.0, 0.0]] * 5)
    np.testing.assert_allclose(proposals[5:10, :, 1], -1.0)
    np.testing.assert_allclose(proposals[10:, :, 1], 1.0)
    np.testing.assert_allclose(proposals[:5, :, 1], 0.0)
    np.testing.assert_allclose(proposals[:, :, 2], 0.0)
    # The five policies of each path are the same for all three paths on a free straight road.
    np.testing.assert_allclose(proposals[5:10, :, 0], proposals[:5, :, 0])


def test_offsets_follow_a_curved_centerline():
    theta = np.linspace(-np.pi / 2, 0.0, 200)
    radius = 60.0
    poses = np.stack([radius * np.cos(theta), radius * np.sin(theta) + radius, theta + np.pi / 2], axis=1)
    centerline = Centerline(poses)
    ego = EgoState(*poses[5], vx=6.0)
    proposals = pdm_closed_proposals(ego, centerline, NO_OBJECTS, road_map(), [], None)
    np.testing.assert_allclose(centerline.distance(proposals[:5, :, :2]), 0.0, atol=0.01)
    np.testing.assert_allclose(centerline.distance(proposals[5:, :, :2]), 1.0, atol=0.01)
    # +1 m (left of a left turn) is inside the circle: closer to its centre (0, 60).
    centre = np.array([0.0, radius])
    np.testing.assert_allclose(np.linalg.norm(proposals[10:, :, :2] - centre, axis=-1), radius - 1.0, atol=0.01)
    np.testing.assert_allclose(np.linalg.norm(proposals[5:10, :, :2] - centre, axis=-1), radius + 1.0, atol=0.01)


def test_free_road_speeds_follow_policies_and_first_step_quirk():
    ego = EgoState(0.0, 0.0, 0.0, vx=8.0)
    proposals = pdm_closed_proposals(ego, straight_centerline(400.0), NO_OBJECTS, road_map(), [], None)
    speeds = np.diff(proposals[:5, :, 0], axis=1) / 0.1  # speed used in each Euler step
    # Step 1 sees the never-written lead at progress 0: full braking from every policy.
    np.testing.assert_allclose(speeds[:, 1], 8.0 - 0.3)
    # Policies with targets 3 and 6 m/s slow down towards them; 15 m/s accelerates at no more than 1.5 m/s^2.
    assert speeds[0, -1] < 3.3 and speeds[1, -1] < 6.5
    assert speeds[4, -1] > 8.0 and np.all(np.diff(speeds[4, 2:]) <= 0.15 + 1e-9)
    assert np.all(np.diff(proposals[:5, -1, 0]) > 0)  # faster policy, more progress


def test_speed_limit_scales_targets():
    ego = EgoState(0.0, 0.0, 0.0, vx=0.0)
    slow = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, road_map(), [], 5.0)
    fast = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, road_map(), [], None)
    assert slow[4, -1, 0] < fast[4, -1, 0]
    assert np.diff(slow[4, :, 0])[-1] / 0.1 <= 5.0 + 1e-6


def test_stops_behind_a_stopped_vehicle():
    ego = EgoState(10.0, 0.0, 0.0, vx=4.0)
    lead = objects({"token": "car", "x": 25.0, "y": 0.2, "length": 4.5})
    proposals = pdm_closed_proposals(ego, straight_centerline(), lead, road_map(), [], None)
    lead_rear = 25.0 - 2.25
    gap = lead_rear - (proposals[:, :, 0] + FRONT)
    speed = np.diff(proposals[:, :, 0], axis=1) / 0.1
    assert np.all(gap > 1.0)  # never closer than the minimum gap s0
    assert np.all(gap[[4, 9, 14], -1] < 2.0)  # creeps up to it
    assert np.all(speed[[4, 9, 14], -1] < 0.5) and np.all(np.diff(speed[4, 2:]) < 0)
    # From 8 m/s with 18.7 m to the lead (more than the 10.7 m braking distance at 3 m/s^2): never reached either.
    far_lead = objects({"token": "car", "x": 35.0, "length": 4.5})
    fast = pdm_closed_proposals(EgoState(10.0, 0.0, 0.0, vx=8.0), straight_centerline(), far_lead, road_map(), [], None)
    assert np.all(fast[:, :, 0] + FRONT < 35.0 - 2.25 - 1.0)


def test_follows_a_moving_vehicle_without_closing_the_gap():
    ego = EgoState(0.0, 0.0, 0.0, vx=10.0)
    lead = objects({"token": "car", "x": 30.0, "vx": 10.0})
    proposals = pdm_closed_proposals(ego, straight_centerline(300.0), lead, road_map(), [], None)
    lead_rear = 30.0 - 2.0 + 10.0 * 0.1 * np.arange(41)
    gap = lead_rear - (proposals[4, :, 0] + FRONT)
    assert gap.min() > 10.0
    free = pdm_closed_proposals(ego, straight_centerline(300.0), NO_OBJECTS, road_map(), [], None)
    assert proposals[4, -1, 0] < free[4, -1, 0]


def test_stops_before_red_light_only_when_red():
    ego = EgoState(10.0, 0.0, 0.0, vx=8.0)
    drivable = road_map(("lc", 40.0, 50.0))
    red = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, drivable, ["lc"], None)
    green = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, drivable, [], None)
    assert np.all(red[:, :, 0] + FRONT < 40.0)
    assert green[4, -1, 0] + FRONT > 40.0
    # A red light the ego is already fully inside is ignored (counted as "collided" at t0).
    inside = EgoState(42.0, 0.0, 0.0, vx=8.0)
    big = road_map(("lc", 30.0, 80.0))
    passed = pdm_closed_proposals(inside, straight_centerline(), NO_OBJECTS, big, ["lc"], None)
    assert passed[4, -1, 0] > 60.0


def test_ignores_objects_behind_beside_and_overlapping_ego():
    ego = EgoState(20.0, 0.0, 0.0, vx=8.0)
    others = objects(
        {"token": "behind", "x": 5.0},
        {"token": "beside", "x": 40.0, "y": 5.0},
        {"token": "overlap", "x": 22.0, "y": 0.5},
        {"token": "far", "x": 60.0, "y": 150.0},
        {"token": "ego_box", "x": 40.0, "type": "ego"},
    )
    blocked = pdm_closed_proposals(ego, straight_centerline(), others, road_map(), [], None)
    free = pdm_closed_proposals(ego, straight_centerline(), NO_OBJECTS, road_map(), [], None)
    np.testing.assert_allclose(blocked, free)


def test_obstacle_only_blocks_the_paths_whose_corridor_it_touches():
    ego = EgoState(0.0, 0.0, 0.0, vx=8.0)
    # Spans y in [1.7, 2.3]: inside the left path's corridor (y <= 1 + 1.1485), outside the centre and right ones.
    cone = objects({"token": "cone", "type": "traffic_cone", "x": 30.0, "y": 2.0, "length": 0.6, "width": 0.6})
    proposals = pdm_closed_proposals(ego, straight_centerline(), cone, road_map(), [], None)
    assert np.all(proposals[10:, :, 0] + FRONT < 29.7)
    assert proposals[4, -1, 0] > 40.0 and proposals[9, -1, 0] > 40.0


def test_plan_pdm_closed_returns_the_selected_proposal():
    ego = EgoState(0.0, 0.0, 0.0, vx=5.0)
    args = (ego, straight_centerline(), NO_OBJECTS, road_map(), [], None)
    proposals = pdm_closed_proposals(*args)
    seen = []

    def select(poses: np.ndarray) -> int:
        seen.append(poses.shape)
        return int(np.argmax(poses[:, -1, 0]))

    np.testing.assert_array_equal(plan_pdm_closed(*args, select), proposals[4])
    assert seen == [(15, 41, 3)]
    with pytest.raises(InvalidSceneError, match="index 15"):
        plan_pdm_closed(*args, lambda poses: 15)
    with pytest.raises(InvalidSceneError, match="integer"):
        plan_pdm_closed(*args, lambda poses: 1.5)


# ---------------------------------------------------------------- forecast


def test_forecast_is_constant_velocity_at_two_step_resolution():
    ego = EgoState(0.0, 0.0, 0.0)
    obs = objects(
        {"token": "car", "x": 20.0, "y": 3.0, "vx": 5.0, "vy": 0.0},
        {"token": "reverse", "x": 30.0, "y": -3.0, "vx": -2.0},  # velocity against the heading: moves backwards
        {"token": "cone", "type": "traffic_cone", "x": 10.0, "y": 4.0},
        {"token": "far", "x": 200.0},
        {"token": "ego_box", "type": "ego", "x": 1.0},
    )
    forecast = forecast_observation(ego, obs)
    assert forecast.tokens == ["cone", "car", "reverse"]  # static first, then dynamic, far and ego dropped
    assert forecast.num_steps == 51 and forecast.present.all()
    car = forecast.boxes[:, 1]
    np.testing.assert_allclose(car[[0, 1, 2, 3, 50], 0], [20.0, 20.0, 21.0, 21.0, 45.0])
    np.testing.assert_allclose(forecast.boxes[[0, 10], 2, 0], [30.0, 28.0])
    np.testing.assert_allclose(forecast.boxes[:, 0, :2], np.tile([10.0, 4.0], (51, 1)))
    np.testing.assert_allclose(forecast.velocity[:, 1], np.tile([5.0, 0.0], (51, 1)))


def test_forecast_red_lights_and_collided_flags():
    ego = EgoState(10.0, 0.0, 0.0)
    obs = objects({"token": "touching", "x": 13.0, "y": 1.5})
    drivable = road_map(("lc", 40.0, 50.0), ("lc_under_ego", 5.0, 20.0))
    forecast = build_forecast(ego, obs, drivable, ["lc", "lc_under_ego", "unknown"])
    assert forecast.tokens == ["touching", "red_light_lc", "red_light_lc_under_ego"]
    # Ego box x in [8.873, 14.049] and y in [-1.15, 1.15] lies within the second connector (y in [-2, 2]).
    assert forecast.collided.tolist() == [True, False, True]
    assert forecast.is_red_light.tolist() == [False, True, True]
    assert len(forecast.polygons) == 26


def test_leading_agent_vector_is_shared_across_proposals_like_the_official_generator():
    path = PDMPath(straight_centerline().poses)
    ego = EgoState(0.0, 0.0, 0.0)
    forecast = build_forecast(ego, objects({"token": "car", "x": 30.0, "vx": 5.0}), None, [])
    corridor = path.linestring.buffer(1.2, cap_style="square")
    previous_progress = np.array([0.0, 50.0, 0.0])
    previous_poses = np.array([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    lead = _leading_agents(path, forecast, corridor, 2, previous_progress, previous_poses, PACIFICA)
    # Car at step 2 (0.2 s): centre x = 31, rear 29, gap to the ego front (4.049) = 24.951.
    np.testing.assert_allclose(lead[0], [24.951, 5.0, 0.0])
    # Nothing ahead of proposal 1: free road, but the lead speed of proposal 0 is kept.
    np.testing.assert_allclose(lead[1], [200.0, 5.0, PACIFICA.length / 2])
    # Proposal 2 sees the car again, yet keeps the rear length written for proposal 1.
    np.testing.assert_allclose(lead[2], [24.951, 5.0, PACIFICA.length / 2])
