"""Closed-loop simulation of K proposals: LQR tracking of reference states with the kinematic bicycle at 10 Hz.

Equivalent to NAVSIM's ``PDMSimulator.simulate_proposals``: state 0 is the initial ego state itself (logged velocity
and acceleration, zero steering and yaw rate), and state k+1 is the bicycle propagated from state k under the
tracker's commands for reference index k.

The speed loop never sees the lateral state, so it is rolled out first, in closed form: it is linear as long as each
proposal keeps its controller (longitudinal LQR or the stopping P controller). The lateral loop then runs with
precomputed gains, which leaves about twenty small numpy calls per step.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from navsim_eval.errors import InvalidTrajectoryError
from navsim_eval.geometry import principal_value
from navsim_eval.scene import EgoState
from navsim_eval.sim.bicycle import KinematicBicycle, LateralRollout
from navsim_eval.sim.interpolation import agent_reference_states, rear_axle_round_trip
from navsim_eval.sim.lqr import (
    STOPPING_PROPORTIONAL_GAIN,
    STOPPING_VELOCITY,
    BatchLQRTracker,
    longitudinal_gain,
)
from navsim_eval.sim.state import STATE_SIZE, StateIndex


@lru_cache(maxsize=8)
def _speed_rollout_operators(
    bicycle_dt: float, gain: float, num_steps: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Operators of the speed loop s_{k+1} = M s_k + b v_ref,k, s = (v, a), under the command gain * (v - v_ref).

    For a rollout over the last m steps (m = 1..T), ``free[m]`` [2, 2 (m+1)] and ``forced[m]`` [m, 2 (m+1)] give the
    stacked states (v_0..v_m, a_0..a_m) as ``s_0 @ free[m] + v_ref @ forced[m]`` (index 0 unused).
    """
    matrix, offset = KinematicBicycle(bicycle_dt).longitudinal_transition(gain)
    powers = np.empty((num_steps + 1, 2, 2))
    powers[0] = np.eye(2)
    for k in range(num_steps):
        powers[k + 1] = matrix @ powers[k]
    lag = np.arange(num_steps + 1)[:, None] - 1 - np.arange(num_steps)  # v_ref,j reaches s_n after n-1-j steps
    response = powers[np.maximum(lag, 0)] @ offset  # [T+1, T, 2]
    response[lag < 0] = 0.0
    free_all, forced_all = powers.transpose(2, 1, 0), response.transpose(1, 2, 0)  # [2, 2, T+1], [T, 2, T+1]
    # The operators depend on n - j only, so the leading blocks serve a rollout starting at any step.
    free = tuple(free_all[:, :, : m + 1].reshape(2, -1) for m in range(num_steps + 1))
    forced = tuple(forced_all[:m, :, : m + 1].reshape(m, 2 * (m + 1)) for m in range(num_steps + 1))
    for array in (*free, *forced):
        array.flags.writeable = False
    return free, forced


def _linear_speed_segment(
    operators: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], start: np.ndarray, inputs: np.ndarray
) -> np.ndarray:
    """Speed and acceleration [K, 2, m+1] over m steps from ``start`` [K, 2] with reference speeds [K, m]."""
    free, forced = operators
    num, steps = inputs.shape
    return (start @ free[steps] + inputs @ forced[steps]).reshape(num, 2, steps + 1)


def _speed_rollout(
    tracker: BatchLQRTracker, bicycle: KinematicBicycle, velocity0: float, accel0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Speeds and accelerations [T+1, K], acceleration commands and stopping flags [T, K] of all proposals.

    Within a stretch where every proposal keeps its controller (LQR or stopping P controller) the loop is linear and
    is rolled out in closed form; a new stretch starts at the first step where some proposal switches.
    """
    reference, reference_stopped = tracker.reference_velocity, tracker.reference_stopped  # [T, K]
    num_steps, num = reference.shape
    gains = (longitudinal_gain(tracker.dt), -STOPPING_PROPORTIONAL_GAIN)
    operators = [_speed_rollout_operators(bicycle.dt, gain, num_steps) for gain in gains]
    state = np.empty((num_steps + 1, num, 2))  # (speed, acceleration) per step and proposal
    state[0] = velocity0, accel0
    stopping = np.empty((num_steps, num), dtype=bool)
    step = 0
    mode = reference_stopped[0] & (velocity0 <= STOPPING_VELOCITY)
    while step < num_steps:
        start, inputs = state[step], reference[step:].T
        if not mode.any():
            segment = _linear_speed_segment(operators[0], start, inputs)
        elif mode.all():
            segment = _linear_speed_segment(operators[1], start, inputs)
        else:
            segment = np.where(
                mode[:, None, None],
                _linear_speed_segment(operators[1], start, inputs),
                _linear_speed_segment(operators[0], start, inputs),
            )
        predicted = reference_stopped[step:] & (segment[:, 0, :-1].T <= STOPPING_VELOCITY)
        switched = (predicted != mode).any(axis=1)  # never at row 0: that is how mode was set
        length = int(np.argmax(switched)) if switched.any() else num_steps - step
        state[step + 1 : step + length + 1] = segment[:, :, 1 : length + 1].transpose(2, 0, 1)
        stopping[step : step + length] = mode
        step += length
        if step < num_steps:
            mode = predicted[length]
    velocity, accel = state.transpose(2, 0, 1)
    command = np.where(stopping, gains[1], gains[0]) * (velocity[:-1] - reference)
    return np.ascontiguousarray(velocity), np.ascontiguousarray(accel), command, stopping


def simulate(initial_state: np.ndarray, reference_states: np.ndarray, dt: float = 0.1) -> np.ndarray:
    """Simulate K proposals from one initial state [11] tracking ``reference_states`` [K, T+1, 11] -> [K, T+1, 11].

    ``dt`` is the reference sampling interval; the bicycle steps by the same interval in whole microseconds, as
    nuPlan's ``TimePoint`` arithmetic does.
    """
    reference_states = np.asarray(reference_states, dtype=np.float64)
    initial = np.asarray(initial_state, dtype=np.float64)
    if initial.shape != (STATE_SIZE,):
        raise InvalidTrajectoryError(
            f"simulate: initial_state must have shape [{STATE_SIZE}], got {list(initial.shape)}"
        )
    if reference_states.ndim != 3 or reference_states.shape[1] < 4 or reference_states.shape[2] < 3:
        raise InvalidTrajectoryError(
            f"simulate: reference_states must have shape [K, T+1 >= 4, 11] (x, y, heading first), "
            f"got {list(reference_states.shape)}"
        )
    if len(reference_states) == 0:
        return np.zeros((0, reference_states.shape[1], STATE_SIZE))
    tracker = BatchLQRTracker(reference_states, dt)
    bicycle = KinematicBicycle(round(dt * 1e6) * 1e-6)
    velocity, accel, command, stopping = _speed_rollout(
        tracker, bicycle, initial[StateIndex.VELOCITY_X], initial[StateIndex.ACCELERATION_X]
    )
    tracker.prepare_lateral(velocity[:-1], command, stopping, scale=bicycle.steering_step_per_command)

    num_steps, num = command.shape
    travel = (velocity[:-1] * bicycle.dt).astype(np.complex128)
    yaw_gain = velocity[:-1] * (bicycle.dt / bicycle.wheel_base)
    start = (initial[StateIndex.X], initial[StateIndex.Y], initial[StateIndex.HEADING])
    steering0 = initial[StateIndex.STEERING_ANGLE]
    for clip_steering in (False, True):  # the ±60° limit is rarely reached: try without it first
        rollout = LateralRollout(num_steps, num, *start, steering0, clip_steering=clip_steering)
        for step in range(num_steps):
            steering_step = tracker.steering_command(step, rollout.pose[step], rollout.steering[step])
            bicycle.lateral_step(rollout, step, travel[step], yaw_gain[step], steering_step)
        if clip_steering or not bicycle.steering_clipped(rollout):
            break

    # Assemble step-major [T+1, 11, K], then one transposing copy to [K, T+1, 11].
    states = np.zeros((num_steps + 1, STATE_SIZE, num))
    states[:, StateIndex.X] = rollout.pose[:, 0].real
    states[:, StateIndex.Y] = rollout.pose[:, 0].imag
    states[:, StateIndex.HEADING] = principal_value(rollout.heading)
    states[:, StateIndex.VELOCITY_X] = velocity
    states[:, StateIndex.ACCELERATION_X] = accel
    states[:, StateIndex.STEERING_ANGLE] = rollout.steering
    states[:, StateIndex.STEERING_RATE] = rollout.steering_step / bicycle.dt
    yaw_rate, yaw_accel = bicycle.yaw_rates(velocity, rollout.steering, initial[StateIndex.ANGULAR_VELOCITY])
    states[1:, StateIndex.ANGULAR_VELOCITY] = yaw_rate
    states[1:, StateIndex.ANGULAR_ACCELERATION] = yaw_accel
    states = states.transpose(2, 0, 1).copy()
    states[:, 0] = initial
    return states


def initial_state_array(initial: EgoState) -> np.ndarray:
    """The 11-float start state as NAVSIM reads it from a nuPlan ``EgoState`` (rear axle round-tripped)."""
    state = initial.to_array()
    state[StateIndex.X], state[StateIndex.Y] = rear_axle_round_trip(state[0], state[1], state[2])
    return state


def simulate_agent(initial: EgoState, poses_ego_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference states and simulated states [K, 41, 11] for agent plans [K, 8, 3] (ego frame, every 0.5 s)."""
    sampled = agent_reference_states(initial, poses_ego_frame)
    return sampled, simulate(initial_state_array(initial), sampled)
