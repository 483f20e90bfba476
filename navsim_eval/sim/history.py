"""The logged ego history that v2 history comfort (HC) prepends to every simulated plan."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.scene import EgoState
from navsim_eval.sim.interpolation import interpolate_states

HISTORY_INTERVAL_US = 100_000


def history_states(past: Sequence[EgoState]) -> np.ndarray:
    """Logged ego states (about t0-1.5 s .. t0) interpolated every 0.1 s: [H, 11].

    NAVSIM samples ``arange(start_us, end_us, 100000)`` of the past ``InterpolatedTrajectory`` and drops the last
    sample, so with a 1.5 s history there are 14 states from t0-1.5 s to t0-0.2 s; the count follows the real log
    timestamps. Yaw rate and yaw acceleration are zero, as in the logged states.
    """
    times = np.array([state.time_us for state in past], dtype=np.int64)
    if len(past) < 2 or np.any(np.diff(times) <= 0):
        raise InvalidSceneError(
            f"past_ego_states: expected at least 2 states with increasing time_us, got times {times.tolist()}"
        )
    knots = np.array([[s.x, s.y, s.heading, s.vx, s.vy, s.ax, s.ay, 0.0] for s in past])[None]
    samples = np.arange(times[0], times[-1], HISTORY_INTERVAL_US)[:-1]
    return interpolate_states(times, knots, samples)[0]
