"""Reference states for the simulator: planned poses -> 41 ego states at 10 Hz, as NAVSIM samples them.

NAVSIM wraps a plan in nuPlan's ``InterpolatedTrajectory`` and samples it with ``get_trajectory_as_array``. The
numbers depend on details that this module reproduces on purpose: knot and sample times pass through float seconds
and back to integer microseconds (truncated, then clipped to the knot range), interpolation uses SciPy's ``interp1d``
formula, headings are unwrapped before and wrapped after interpolating, and every nuPlan ``EgoState`` stores its
rear axle via the box centre (a float round trip). All functions are vectorised over K plans sharing one start state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from navsim_eval.errors import InvalidTrajectoryError
from navsim_eval.geometry import principal_value, relative_to_absolute_poses
from navsim_eval.scene import EgoState
from navsim_eval.sim.state import STATE_SIZE, StateIndex
from navsim_eval.vehicle import PACIFICA

NUM_SAMPLED_STATES = 41
"""States per simulated proposal: t0 and 40 steps of :data:`SAMPLING_INTERVAL_S` (NAVSIM's proposal sampling)."""
SAMPLING_INTERVAL_S = 0.1

# Columns interpolated linearly, in the order of the knot arrays used below (heading is unwrapped first).
_KNOT_COLUMNS = (
    StateIndex.X,
    StateIndex.Y,
    StateIndex.HEADING,
    StateIndex.VELOCITY_X,
    StateIndex.VELOCITY_Y,
    StateIndex.ACCELERATION_X,
    StateIndex.ACCELERATION_Y,
    StateIndex.STEERING_ANGLE,
)


def rear_axle_round_trip(x: np.ndarray, y: np.ndarray, heading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rear-axle position as a nuPlan ``EgoState`` returns it: shifted to the box centre and back.

    ``EgoState.build_from_rear_axle`` stores the centre and recomputes the rear axle on access, which moves the
    position by up to one ulp (about 1e-10 m at UTM magnitudes).
    """
    d = PACIFICA.rear_axle_to_center
    shift_x, shift_y = d * np.cos(heading), d * np.sin(heading)
    return (x + shift_x) - shift_x, (y + shift_y) - shift_y


def seconds_to_us(time_s: np.ndarray) -> np.ndarray:
    """``int(time_s * 1e6)`` element-wise: nuPlan's truncating float-seconds -> microseconds conversion."""
    return np.trunc(np.asarray(time_s, dtype=np.float64) * 1e6).astype(np.int64)


def sample_times_us(
    t0_us: int, num_steps: int = NUM_SAMPLED_STATES - 1, interval_s: float = SAMPLING_INTERVAL_S
) -> np.ndarray:
    """The microsecond times at which ``get_trajectory_as_array`` samples (before clipping to the knot range).

    NAVSIM adds ``arange`` offsets to the start time in float seconds, so at epoch-scale timestamps a sample can land
    one microsecond before or after t0 + k * 100 ms.
    """
    horizon_s = num_steps * interval_s
    offsets_s = np.arange(0.0, horizon_s + interval_s, interval_s)
    return seconds_to_us(offsets_s + int(t0_us) * 1e-6)


@lru_cache(maxsize=256)
def _agent_knot_times(t0_us: int, num_poses: int, interval_s: float) -> tuple[int, ...]:
    """Knot times of an agent plan: t0, then ``_get_fixed_timesteps`` (float seconds, then ``int(t * 1e6)``)."""
    offsets_s = np.arange(0.0, num_poses * interval_s, interval_s) + interval_s
    return (t0_us, *seconds_to_us(offsets_s + t0_us * 1e-6).tolist())


def _segment_plan(knot_times: np.ndarray, sample_times: np.ndarray) -> tuple[np.ndarray, ...]:
    """Segment indices (lo, hi), segment lengths [S, 1] and offsets into the segment [S, 1] of each sample time.

    Follows ``scipy.interpolate.interp1d(kind="linear")``: left-sided search, segment index clipped to [1, N-1],
    so a sample that falls on a knot is taken from the segment ending there. Samples are clipped to the knot range,
    as ``get_trajectory_as_array`` does before interpolating.
    """
    times = np.clip(sample_times, knot_times[0], knot_times[-1])
    hi = np.clip(np.searchsorted(knot_times, times, side="left"), 1, len(knot_times) - 1)
    lo = hi - 1
    span = (knot_times[hi] - knot_times[lo]).astype(np.float64)[:, None]
    offset = (times - knot_times[lo]).astype(np.float64)[:, None]
    return lo, hi, span, offset


@lru_cache(maxsize=256)
def _standard_plan(knot_times_us: tuple[int, ...], t0_us: int) -> tuple[np.ndarray, ...]:
    """:func:`_segment_plan` for the 41 standard sample times of a start time (cached: it depends on times only)."""
    plan = _segment_plan(np.array(knot_times_us, dtype=np.int64), sample_times_us(t0_us))
    for array in plan:
        array.flags.writeable = False
    return plan


def _unwrap(angles: np.ndarray) -> np.ndarray:
    """``np.unwrap(angles, axis=1)`` with a shortcut for the common case of no jump larger than π."""
    jumps = np.diff(angles, axis=1)
    if np.all(np.abs(jumps) < np.pi):
        return angles
    return np.unwrap(angles, axis=1)


def _sample(plan: tuple[np.ndarray, ...], knots: np.ndarray) -> np.ndarray:
    """The interpolation core shared by all entry points: knots [K, N, 8] sampled per ``plan`` -> [K, S, 11]."""
    lo, hi, span, offset = plan
    knots = np.asarray(knots, dtype=np.float64)
    heading = knots[:, :, 2]
    unwrapped = _unwrap(heading)
    if unwrapped is not heading:
        knots = knots.copy()
        knots[:, :, 2] = unwrapped
    y_lo, y_hi = knots[:, lo], knots[:, hi]
    sampled = (y_hi - y_lo) / span * offset + y_lo  # interp1d's operation order, for bit-identical results

    heading = principal_value(sampled[..., 2])
    out = np.zeros((*sampled.shape[:2], STATE_SIZE))
    out[..., StateIndex.X], out[..., StateIndex.Y] = rear_axle_round_trip(sampled[..., 0], sampled[..., 1], heading)
    out[..., StateIndex.HEADING] = heading
    out[..., StateIndex.VELOCITY_X : StateIndex.STEERING_ANGLE + 1] = sampled[..., 3:]
    return out


def interpolate_states(knot_times_us: np.ndarray, knots: np.ndarray, sample_times_us: np.ndarray) -> np.ndarray:
    """Sample piecewise-linear ego trajectories like nuPlan's ``InterpolatedTrajectory.get_state_at_times``.

    ``knot_times_us`` [N] increasing integer microseconds shared by all plans, ``knots`` [K, N, 8] with columns x, y,
    heading, vx, vy, ax, ay, steering angle, ``sample_times_us`` [S] integer microseconds (clipped to the knot
    range). Returns [K, S, 11] state arrays; steering rate and yaw rate / acceleration are zero, as in the official
    states, and positions carry the ``EgoState`` rear-axle round trip.
    """
    knot_times = np.asarray(knot_times_us, dtype=np.int64)
    plan = _segment_plan(knot_times, np.asarray(sample_times_us, dtype=np.int64))
    return _sample(plan, knots)


def _pose_batch(poses: np.ndarray, name: str, min_poses: int) -> np.ndarray:
    """Poses [N, 3] or [K, N, 3] as a float64 batch [K, N, 3] with N >= ``min_poses``."""
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] < min_poses or array.shape[2] != 3:
        raise InvalidTrajectoryError(
            f"{name}: expected poses [N, 3] or [K, N, 3] (x, y, heading) with N >= {min_poses}, got {list(array.shape)}"
        )
    return array


def agent_reference_states(initial: EgoState, poses_ego_frame: np.ndarray, interval_s: float = 0.5) -> np.ndarray:
    """Reference states [K, 41, 11] of K agent plans (``poses_ego_frame`` [K, N, 3] or [N, 3], every ``interval_s``).

    Mirrors ``transform_trajectory`` + ``get_trajectory_as_array``: poses go to the global frame via the initial
    rear-axle pose, get zero velocity / acceleration / steering and the times t0 + interval_s * (i + 1), and the true
    initial ego state (logged velocity and acceleration) is prepended as the first knot.
    """
    poses = _pose_batch(poses_ego_frame, "poses_ego_frame", min_poses=1)
    num_plans, num_poses = poses.shape[:2]
    knots = np.zeros((num_plans, num_poses + 1, len(_KNOT_COLUMNS)))
    x0, y0 = rear_axle_round_trip(np.array(initial.x), np.array(initial.y), np.array(initial.heading))
    origin = np.array([x0, y0, initial.heading])
    knots[:, 0] = [x0, y0, initial.heading, initial.vx, initial.vy, initial.ax, initial.ay, 0.0]
    absolute = relative_to_absolute_poses(origin, poses)
    knots[:, 1:, 0], knots[:, 1:, 1] = rear_axle_round_trip(absolute[..., 0], absolute[..., 1], absolute[..., 2])
    knots[:, 1:, 2] = absolute[..., 2]
    knot_times = _agent_knot_times(int(initial.time_us), num_poses, float(interval_s))
    return _sample(_standard_plan(knot_times, int(initial.time_us)), knots)


def reference_states_from_poses(initial: EgoState, poses_global: np.ndarray) -> np.ndarray:
    """Reference states [K, 41, 11] of global rear-axle poses [41, 3] or [K, 41, 3] at t0 + k * 0.1 s.

    This is how the cached PDM-Closed trajectory enters the scorer: 41 ego states with zero velocity, acceleration
    and steering (so, unlike an agent plan, state 0 has zero velocity), sampled like any other trajectory.
    """
    poses = _pose_batch(poses_global, "poses_global", min_poses=2)
    knots = np.zeros((*poses.shape[:2], len(_KNOT_COLUMNS)))
    knots[..., 0], knots[..., 1] = rear_axle_round_trip(poses[..., 0], poses[..., 1], poses[..., 2])
    knots[..., 2] = poses[..., 2]
    step_us = round(SAMPLING_INTERVAL_S * 1e6)
    knot_times = tuple(int(initial.time_us) + step_us * k for k in range(poses.shape[1]))
    return _sample(_standard_plan(knot_times, int(initial.time_us)), knots)
