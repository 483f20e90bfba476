"""Unit tests of the simulator: shapes, batching, standstill, invariances and the least-squares reference fit."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.geometry import absolute_to_relative_poses, principal_value
from navsim_eval.scene import EgoState
from navsim_eval.sim.bicycle import MAX_STEERING_ANGLE
from navsim_eval.sim.interpolation import agent_reference_states, reference_states_from_poses, sample_times_us
from navsim_eval.sim.lqr import fit_velocity_curvature_profiles
from navsim_eval.sim.simulator import initial_state_array, simulate, simulate_agent
from navsim_eval.sim.state import STATE_SIZE, StateIndex

T0_US = 1_620_748_428_900_000  # an epoch-scale timestamp whose float-seconds round trip is not exact


def _ego(x=100.0, y=-50.0, heading=0.3, vx=8.0, ax=0.5, time_us=T0_US) -> EgoState:
    return EgoState(x=x, y=y, heading=heading, vx=vx, vy=0.1, ax=ax, ay=-0.2, time_us=time_us)


def _plans(num: int, seed: int = 0) -> np.ndarray:
    """Varied ego-frame plans [num, 8, 3]: cruising, braking to a stop, standing still, turning, reversing."""
    rng = np.random.default_rng(seed)
    t = 0.5 * np.arange(1, 9)
    plans = []
    for i in range(num):
        kind = i % 5
        if kind == 0:  # cruise with a gentle curve
            speed, curvature = rng.uniform(3, 15), rng.uniform(-0.03, 0.03)
            s = speed * t
        elif kind == 1:  # brake to a stop within the horizon
            speed, curvature = rng.uniform(4, 10), 0.0
            s = np.where(t < 2.0, speed * t - speed / 4.0 * t**2, speed)  # stops at 2 s
        elif kind == 2:  # stand still
            speed, curvature, s = 0.0, 0.0, np.zeros_like(t)
        elif kind == 3:  # sharp turn
            speed, curvature = rng.uniform(5, 9), rng.choice([-1, 1]) * rng.uniform(0.08, 0.2)
            s = speed * t
        else:  # slow reverse
            speed, curvature = -1.0, 0.0
            s = speed * t
        heading = curvature * s
        x = np.where(curvature == 0, s, np.sin(heading) / (curvature or 1.0))
        y = np.where(curvature == 0, 0.0, (1 - np.cos(heading)) / (curvature or 1.0))
        plan = np.stack([x, y, heading], axis=1) + rng.normal(0, 0.05, (8, 3)) * (kind != 2)
        plans.append(plan.astype(np.float32).astype(np.float64))
    return np.stack(plans)


def test_shapes():
    ego = _ego()
    plans = _plans(3)
    assert agent_reference_states(ego, plans[0]).shape == (1, 41, STATE_SIZE)
    sampled = agent_reference_states(ego, plans)
    assert sampled.shape == (3, 41, STATE_SIZE)
    reference = reference_states_from_poses(ego, sampled[0, :, :3])
    assert reference.shape == (1, 41, STATE_SIZE)
    assert reference_states_from_poses(ego, sampled[..., :3]).shape == (3, 41, STATE_SIZE)
    simulated = simulate(initial_state_array(ego), sampled)
    assert simulated.shape == (3, 41, STATE_SIZE)
    assert np.isfinite(simulated).all()
    sampled_again, simulated_again = simulate_agent(ego, plans)
    np.testing.assert_array_equal(sampled_again, sampled)
    np.testing.assert_array_equal(simulated_again, simulated)


def test_state_zero_is_the_initial_state():
    """Sampled agent state 0 is the logged ego state; simulated state 0 is it too, with zero steering and yaw rate."""
    ego = _ego()
    sampled, simulated = simulate_agent(ego, _plans(2))
    initial = initial_state_array(ego)
    np.testing.assert_array_equal(simulated[:, 0], np.broadcast_to(initial, (2, STATE_SIZE)))
    # Sampled headings pass through principal_value, which may move them by an ulp.
    initial[StateIndex.HEADING] = principal_value(initial[StateIndex.HEADING])
    np.testing.assert_array_equal(sampled[:, 0], np.broadcast_to(initial, (2, STATE_SIZE)))
    # The PDM-Closed reference is built from poses only: its state 0 has zero velocity and acceleration.
    reference = reference_states_from_poses(ego, sampled[0, :, :3])
    assert np.all(reference[0, 0, StateIndex.VELOCITY_X :] == 0.0)


def test_batched_equals_single():
    ego = _ego()
    plans = _plans(10, seed=3)
    sampled, simulated = simulate_agent(ego, plans)
    for i in range(len(plans)):
        single_sampled, single_simulated = simulate_agent(ego, plans[i : i + 1])
        np.testing.assert_allclose(single_sampled[0], sampled[i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(single_simulated[0], simulated[i], rtol=0, atol=1e-12)


def test_batched_equals_single_at_utm_coordinates():
    ego = _ego(x=664_000.123, y=3_997_000.456, heading=-2.9)
    plans = _plans(5, seed=4)
    _, simulated = simulate_agent(ego, plans)
    for i in range(len(plans)):
        _, single = simulate_agent(ego, plans[i : i + 1])
        np.testing.assert_allclose(single[0], simulated[i], rtol=0, atol=1e-9)


def test_stationary_reference_keeps_the_ego_still():
    ego = EgoState(x=10.0, y=20.0, heading=1.0, time_us=T0_US)
    poses = np.tile(ego.pose, (41, 1))
    simulated = simulate(initial_state_array(ego), reference_states_from_poses(ego, poses))
    np.testing.assert_array_equal(simulated[0], np.tile(initial_state_array(ego), (41, 1)))


def test_consistent_constant_speed_reference_is_tracked():
    """A straight reference at the ego's own speed needs no correction."""
    ego = EgoState(x=5.0, y=-3.0, heading=0.7, vx=10.0, time_us=1_630_000_000_000_000)  # samples land on knots
    s = 10.0 * 0.1 * np.arange(41)
    poses = np.stack([5.0 + s * np.cos(0.7), -3.0 + s * np.sin(0.7), np.full(41, 0.7)], axis=1)
    reference = reference_states_from_poses(ego, poses)
    np.testing.assert_allclose(reference[0, :, :3], poses, rtol=0, atol=1e-12)  # up to the rear-axle round trip
    simulated = simulate(initial_state_array(ego), reference)[0]
    np.testing.assert_allclose(simulated[:, :3], poses, atol=1e-9)
    np.testing.assert_allclose(simulated[:, StateIndex.VELOCITY_X], 10.0, atol=1e-9)


def test_braking_plan_comes_to_rest():
    ego = _ego(vx=6.0, ax=0.0)
    t = 0.5 * np.arange(1, 9)
    s = np.where(t < 2.0, 6.0 * t - 1.5 * t**2, 6.0)  # stops at 2 s
    plan = np.stack([s, np.zeros(8), np.zeros(8)], axis=1)
    simulated = simulate_agent(ego, plan)[1][0]
    assert abs(simulated[-1, StateIndex.VELOCITY_X]) < 0.2
    assert np.all(np.abs(np.diff(simulated[:, StateIndex.ACCELERATION_X])) < 2.0)


def test_steering_is_clipped_to_sixty_degrees():
    ego = _ego(vx=10.0, ax=0.0)
    t = 0.5 * np.arange(1, 9)
    plan = np.stack([np.full(8, 0.5), 3.0 * t, np.full(8, np.pi / 2)], axis=1)  # sideways jump: full lock
    simulated = simulate_agent(ego, plan)[1][0]
    steering = simulated[:, StateIndex.STEERING_ANGLE]
    assert np.abs(steering).max() == pytest.approx(MAX_STEERING_ANGLE)
    assert np.all(np.abs(steering) <= MAX_STEERING_ANGLE)


@pytest.mark.parametrize("offset", [np.pi - 0.05, -np.pi + 0.02])
def test_simulation_is_invariant_to_the_global_heading(offset):
    """The same ego-frame plan gives the same ego-frame result whatever the start heading (wrapping at ±π)."""
    plans = _plans(5, seed=7)
    base_ego, turned_ego = _ego(heading=0.1), _ego(heading=offset)
    base = simulate_agent(base_ego, plans)[1]
    turned = simulate_agent(turned_ego, plans)[1]
    assert np.all(np.abs(turned[..., StateIndex.HEADING]) <= np.pi)
    np.testing.assert_allclose(
        absolute_to_relative_poses(turned_ego.pose, turned[..., :3]),
        absolute_to_relative_poses(base_ego.pose, base[..., :3]),
        atol=1e-9,
    )
    np.testing.assert_allclose(turned[..., 3:], base[..., 3:], atol=1e-9)


def test_sample_times_follow_the_float_seconds_round_trip():
    official = [int(t * 1e6) for t in np.arange(0.0, 4.0 + 0.1, 0.1) + T0_US * 1e-6]
    np.testing.assert_array_equal(sample_times_us(T0_US), official)
    assert any(t != T0_US + 100_000 * k for k, t in enumerate(official))  # the case the round trip matters for


def _dense_official_fit(poses: np.ndarray, dt: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """NAVSIM's least-squares fit written densely: stacked (x, y) displacements, pinv of the normal equations.

    The speed regulariser is NAVSIM's "banded difference matrix" as it actually comes out: -I on the accelerations
    with a +1 only in the last row.
    """
    num = poses.shape[0] - 1
    deltas = np.diff(poses, axis=0)
    lower = np.tril(np.ones((num, num)))
    lower[:, 1:] *= dt
    integrate = dt * lower  # displacement i = dt * (v0 + dt * Σ_{j<i} a_j)
    direction = np.stack([np.cos(poses[:-1, 2]), np.sin(poses[:-1, 2])], axis=1)
    a = (direction[:, :, None] * integrate[:, None, :]).reshape(2 * num, num)
    penalty = np.zeros((num - 2, num))
    penalty[np.arange(num - 2), np.arange(1, num - 1)] = -1.0
    penalty[-1, -1] = 1.0
    x = np.linalg.pinv(a.T @ a + 1e-4 * penalty.T @ penalty) @ a.T @ deltas[:, :2].reshape(-1)
    velocity = lower @ x
    heading_change = np.arctan2(np.sin(deltas[:, 2]), np.cos(deltas[:, 2]))
    a = velocity[:, None] * integrate
    regulariser = np.diag(np.r_[1e-10, np.full(num - 1, 1e-2)])
    x = np.linalg.pinv(a.T @ a + regulariser) @ a.T @ heading_change
    return velocity, lower @ x


def test_reference_fit_matches_the_dense_official_formulation():
    ego = _ego()
    sampled = agent_reference_states(ego, _plans(6, seed=11))
    velocity, curvature = fit_velocity_curvature_profiles(sampled[..., :3])
    for i in range(len(sampled)):
        expected_velocity, expected_curvature = _dense_official_fit(sampled[i, :, :3])
        np.testing.assert_allclose(velocity[i], expected_velocity, rtol=0, atol=1e-9)
        np.testing.assert_allclose(curvature[i], expected_curvature, rtol=0, atol=1e-9)
