"""Comfort metrics: v1 comfort (C), v2 history comfort (HC) and two-frame extended comfort (EC).

Savitzky-Golay filters exactly as NAVSIM configures them, quirks included: the acceleration smoothing window is
8 (even), the yaw-rate and yaw-acceleration windows are always 5 whatever the caller asks, values are rounded to
8 decimals and a bound of 0 means "no bound".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import savgol_filter

from navsim_eval.sim.state import StateIndex
from navsim_eval.vehicle import PACIFICA, VehicleParameters

COMFORT_CHECKS = ("lon_acceleration", "lat_acceleration", "jerk_magnitude", "lon_jerk", "yaw_acceleration", "yaw_rate")

# Bounds (min, max), exclusive.
LON_ACCELERATION_BOUNDS = (-4.05, 2.40)  # m/s^2
LAT_ACCELERATION_BOUNDS = (-4.89, 4.89)  # m/s^2
JERK_MAGNITUDE_BOUNDS = (-8.37, 8.37)  # m/s^3
LON_JERK_BOUNDS = (-4.13, 4.13)  # m/s^3
YAW_ACCELERATION_BOUNDS = (-1.93, 1.93)  # rad/s^2
YAW_RATE_BOUNDS = (-0.95, 0.95)  # rad/s

# Extended comfort: RMS of the difference between two consecutive plans.
EC_ACCELERATION_RMS = 0.7
EC_JERK_RMS = 0.5
EC_YAW_RATE_RMS = 0.1
EC_YAW_ACCELERATION_RMS = 0.1

_DECIMALS = 8
_ACCEL_SMOOTHING_WINDOW = 8
_YAW_WINDOW = 5


@lru_cache(maxsize=128)
def _savgol_operator(n: int, window: int, poly: int, deriv: int, delta: float) -> np.ndarray:
    """SciPy's ``savgol_filter`` (mode 'interp') for length-n signals as an [n, n] matrix.

    The filter, edge fits included, is linear in the signal, so filtering the identity with SciPy itself gives
    its exact operator; applying it is one matrix product instead of several polynomial fits per call.
    """
    operator = savgol_filter(np.eye(n), window_length=window, polyorder=poly, deriv=deriv, delta=delta, axis=0)
    return np.ascontiguousarray(operator.T)


def _savgol(values: np.ndarray, window: int, poly: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    n = values.shape[-1]
    return values @ _savgol_operator(n, min(window, n), poly, deriv, float(delta))


def _within(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo = bounds[0] if bounds[0] else -np.inf
    hi = bounds[1] if bounds[1] else np.inf
    return np.all((values > lo) & (values < hi), axis=-1)


def phase_unwrap(headings: np.ndarray) -> np.ndarray:
    """Headings with successive differences brought into [-pi, pi] (nuPlan's rounding-based unwrap)."""
    two_pi = 2.0 * np.pi
    adjustments = np.zeros_like(headings)
    adjustments[..., 1:] = np.cumsum(np.round(np.diff(headings, axis=-1) / two_pi), axis=-1)
    return headings - two_pi * adjustments


def center_accelerations(states: np.ndarray, vehicle: VehicleParameters = PACIFICA) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame acceleration moved from the rear axle to the box centre, as NAVSIM v2 does for comfort.

    The x component gains l*omega^2 + l*alpha (the sign convention of the official code), y is unchanged.
    """
    lever = vehicle.rear_axle_to_center
    omega = states[..., StateIndex.ANGULAR_VELOCITY]
    alpha = states[..., StateIndex.ANGULAR_ACCELERATION]
    ax = states[..., StateIndex.ACCELERATION_X] + lever * omega**2 + lever * alpha
    return ax, states[..., StateIndex.ACCELERATION_Y]


def _smoothed_acceleration(signal: np.ndarray, window: int) -> np.ndarray:
    return np.round(_savgol(signal, window, 2), _DECIMALS)


def _jerk(acceleration_signal: np.ndarray, window: int, dt: float) -> np.ndarray:
    smoothed = _smoothed_acceleration(acceleration_signal, _ACCEL_SMOOTHING_WINDOW)
    return np.round(_savgol(smoothed, window, 2, deriv=1, delta=dt), _DECIMALS)


def _yaw_derivative(states: np.ndarray, dt: float, deriv: int, poly: int) -> np.ndarray:
    unwrapped = phase_unwrap(states[..., StateIndex.HEADING])
    return np.round(_savgol(unwrapped, _YAW_WINDOW, poly, deriv=deriv, delta=dt), _DECIMALS)


def comfort_checks(states: np.ndarray, dt: float = 0.1, version: str = "v1") -> np.ndarray:
    """The six comfort checks for states [K, T, 11]: bool [K, 6] in the order of ``COMFORT_CHECKS``.

    v1 (C) uses rear-axle accelerations and whole-horizon windows for acceleration and jerk; v2 (HC) uses
    centre accelerations, window 8 for acceleration and 15 for jerk.
    """
    n_time = states.shape[-2]
    magnitude = np.hypot(states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y])
    if version == "v1":
        ax, ay = states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y]
        accel_window = jerk_window = n_time
    else:
        ax, ay = center_accelerations(states)
        accel_window, jerk_window = _ACCEL_SMOOTHING_WINDOW, 15
    checks = [
        _within(_smoothed_acceleration(ax, accel_window), LON_ACCELERATION_BOUNDS),
        _within(_smoothed_acceleration(ay, accel_window), LAT_ACCELERATION_BOUNDS),
        _within(_jerk(magnitude, jerk_window, dt), JERK_MAGNITUDE_BOUNDS),
        _within(_jerk(ax, jerk_window, dt), LON_JERK_BOUNDS),
        _within(_yaw_derivative(states, dt, deriv=2, poly=3), YAW_ACCELERATION_BOUNDS),
        _within(_yaw_derivative(states, dt, deriv=1, poly=2), YAW_RATE_BOUNDS),
    ]
    return np.stack(checks, axis=-1)


def extended_comfort_features(states: np.ndarray, dt: float = 0.1) -> dict[str, np.ndarray]:
    """Per-step features compared between consecutive plans by EC (rear-axle acceleration magnitude)."""
    magnitude = np.hypot(states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y])
    return {
        "acceleration": _smoothed_acceleration(magnitude, _ACCEL_SMOOTHING_WINDOW),
        "jerk": _jerk(magnitude, 15, dt),
        "yaw_rate": _yaw_derivative(states, dt, deriv=1, poly=2),
        "yaw_acceleration": _yaw_derivative(states, dt, deriv=2, poly=2),
    }


def two_frame_extended_comfort(
    current_states: np.ndarray, previous_states: np.ndarray, time_offset_s: float = 0.5, dt: float = 0.1
) -> np.ndarray:
    """EC for the plans of two adjacent frames: simulated states [K, 41, 11] of the current frame and of the
    frame ``time_offset_s`` earlier. Compares the overlapping part (current[:-k] against previous[k:]).

    Returns float [K] in {0, 1}.
    """
    if not 0.0 < time_offset_s < 0.55:
        raise ValueError(f"two-frame comfort needs frames 0 < dt < 0.55 s apart, got {time_offset_s}")
    shift = round(time_offset_s / dt)
    current = extended_comfort_features(current_states[..., :-shift, :], dt)
    previous = extended_comfort_features(previous_states[..., shift:, :], dt)
    limits = {
        "acceleration": EC_ACCELERATION_RMS,
        "jerk": EC_JERK_RMS,
        "yaw_rate": EC_YAW_RATE_RMS,
        "yaw_acceleration": EC_YAW_ACCELERATION_RMS,
    }
    ok = np.ones(current_states.shape[:-2], dtype=bool)
    for name, limit in limits.items():
        rms = np.sqrt(np.mean((current[name] - previous[name]) ** 2, axis=-1))
        ok &= rms <= limit
    return ok.astype(np.float64)
