"""Batched kinematic bicycle model about the rear axle (NAVSIM's ``BatchKinematicBicycleModel``).

One Euler step of ``dt`` with first-order lags on acceleration (0.2 s) and steering angle (0.05 s). Position,
heading and speed integrate with the *old* speed, heading and steering angle; the new steering angle is clipped to
±60°, the lateral velocity and acceleration are zero. The longitudinal part (speed, acceleration) and the lateral part
(position, heading, steering) are separate because the simulator rolls the speed out before the lateral loop.
"""

from __future__ import annotations

import numpy as np

from navsim_eval.vehicle import PACIFICA, VehicleParameters

MAX_STEERING_ANGLE = np.pi / 3
ACCEL_TIME_CONSTANT = 0.2
STEERING_ANGLE_TIME_CONSTANT = 0.05
STEP_S = 100_000 * 1e-6
"""NAVSIM's step as nuPlan's ``TimePoint.time_s`` gives it: 0.09999999999999999, not 0.1."""


class LateralRollout:
    """Step-major buffers of a lateral rollout of K proposals over T steps, written in place by the bicycle.

    ``pose[k]`` [2, K] is complex: row 0 the rear-axle position x + iy, row 1 the orientation e^{iθ}. Headings are
    unwrapped (wrapped once at the end). ``steering_step[k]`` is the steering-angle change of step k (rate * dt).
    With ``clip_steering=False`` the ±60° limit is skipped (cheaper); the caller must then check the result and redo
    the rollout with clipping if the limit was exceeded.
    """

    def __init__(
        self,
        num_steps: int,
        num_proposals: int,
        x: float,
        y: float,
        heading: float,
        steering: float,
        clip_steering: bool = True,
    ):
        self.clip_steering = clip_steering
        shape = (num_steps + 1, num_proposals)
        self.pose = np.empty((num_steps + 1, 2, num_proposals), dtype=np.complex128)
        self.pose[0, 0] = complex(x, y)
        self.pose[0, 1] = np.exp(1j * heading)
        self.heading = np.empty(shape)
        self.heading[0] = heading
        self.steering = np.empty(shape)
        self.steering[0] = steering
        self.steering_step = np.zeros(shape)
        self.position = self.pose[:, 0]
        self.orientation = self.pose[:, 1]
        self._phase = np.zeros(num_proposals, dtype=np.complex128)  # i θ, to get e^{iθ} in one call
        self._phase_imag = self._phase.imag
        self._scratch = np.empty(num_proposals)
        self._scratch_complex = np.empty(num_proposals, dtype=np.complex128)
        self._steering_max = np.full(num_proposals, MAX_STEERING_ANGLE)
        self._steering_min = -self._steering_max


class KinematicBicycle:
    """Kinematic bicycle with actuator lags, vectorised over proposals."""

    def __init__(self, dt: float = STEP_S, vehicle: VehicleParameters = PACIFICA):
        self.dt = dt
        self.wheel_base = vehicle.wheel_base
        self.accel_blend = dt / (dt + ACCEL_TIME_CONSTANT)
        self.steering_blend = dt / (dt + STEERING_ANGLE_TIME_CONSTANT)

    def longitudinal_step(
        self, velocity: np.ndarray, accel: np.ndarray, accel_command: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Next (speed, acceleration): the acceleration lags the command, the speed integrates the new value."""
        new_accel = self.accel_blend * (accel_command - accel) + accel
        return velocity + new_accel * self.dt, new_accel

    def longitudinal_transition(self, gain: float) -> tuple[np.ndarray, np.ndarray]:
        """(M, b) with (v, a)_{k+1} = M (v, a)_k + b v_ref,k when the command is ``gain * (v - v_ref)``."""
        blend, dt = self.accel_blend, self.dt
        accel_row = np.array([blend * gain, 1.0 - blend])
        matrix = np.array([[1.0, 0.0], [0.0, 0.0]]) + np.array([dt * accel_row, accel_row])
        return matrix, np.array([-dt * blend * gain, -blend * gain])

    @property
    def steering_step_per_command(self) -> float:
        """Steering-angle change of one step per unit steering-rate command (lag included)."""
        return self.steering_blend * self.dt

    def lateral_step(
        self, rollout: LateralRollout, step: int, travel: np.ndarray, yaw_gain: np.ndarray, steering_step: np.ndarray
    ) -> None:
        """Fill step ``step + 1`` of ``rollout`` from step ``step``.

        ``travel`` = v dt (complex dtype), ``yaw_gain`` = v dt / L for this step's speed, ``steering_step`` the
        steering-angle change (lagged command * dt) before clipping.
        """
        scratch, scratch_complex = rollout._scratch, rollout._scratch_complex
        np.multiply(travel, rollout.orientation[step], scratch_complex)
        np.add(rollout.position[step], scratch_complex, rollout.position[step + 1])
        steering = rollout.steering[step]
        np.tan(steering, scratch)
        np.multiply(yaw_gain, scratch, scratch)
        new_heading = np.add(rollout.heading[step], scratch, rollout.heading[step + 1])
        rollout._phase_imag[:] = new_heading
        np.exp(rollout._phase, rollout.orientation[step + 1])
        rollout.steering_step[step + 1] = steering_step
        new_steering = rollout.steering[step + 1]
        if rollout.clip_steering:
            np.add(steering, steering_step, scratch)
            np.maximum(scratch, rollout._steering_min, out=scratch)
            np.minimum(scratch, rollout._steering_max, out=new_steering)
        else:
            np.add(steering, steering_step, new_steering)

    def steering_clipped(self, rollout: LateralRollout) -> bool:
        """Whether an unclipped rollout exceeded the steering limit (then it must be redone with clipping)."""
        return bool(np.abs(rollout.steering).max() > MAX_STEERING_ANGLE)

    def yaw_rates(
        self, velocity: np.ndarray, steering: np.ndarray, initial_yaw_rate: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Yaw rate and yaw acceleration [T, K] of steps 1..T from step-major speed and steering [T+1, K].

        NAVSIM sets both after each step from the new speed and steering; the first yaw acceleration is relative to
        ``initial_yaw_rate`` (the start state's, 0 for a logged ego state).
        """
        yaw_rate = np.empty_like(velocity)
        yaw_rate[0] = initial_yaw_rate
        yaw_rate[1:] = velocity[1:] * np.tan(steering[1:]) / self.wheel_base
        return yaw_rate[1:], (yaw_rate[1:] - yaw_rate[:-1]) / self.dt
