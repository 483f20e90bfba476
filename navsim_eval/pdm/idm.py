"""Batched Intelligent Driver Model, as PDM-Closed unrolls its longitudinal proposals (NAVSIM's ``BatchIDMPolicy``).

Read in ``navsim/planning/simulation/planner/pdm_planner/proposal/batch_idm_policy.py`` (identical in ``v1.1`` and
``main``) and configured as in ``metric_cache_processor.py``. One explicit Euler step of ``dt``::

    s*    = s0 + v T + v (v - v_lead) / (2 sqrt(a b))
    s     = max(x_lead - x - l_rear_lead, s0)            # clamped to avoid a zero division
    dv/dt = clip(a (1 - (v / v0)^10 - (s* / s)^2), -b, a)
    x'    = x + dt v,   v' = v + dt dv/dt                # v is NOT clamped at 0 (the official code does not either)

The target speed ``v0`` of policy i is ``speed_limit_fraction[i] * speed_limit`` (lane speed limit) or
``speed_limit_fraction[i] * fallback_target_velocity`` when the lane has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACCELERATION_EXPONENT = 10


@dataclass(frozen=True)
class BatchIDMPolicy:
    """IDM parameters shared by all policies; the policies differ only by their speed-limit fraction."""

    speed_limit_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    fallback_target_velocity: float = 15.0  # [m/s] used when the lane has no speed limit
    min_gap_to_lead_agent: float = 1.0  # s0 [m]
    headway_time: float = 1.5  # T [s]
    accel_max: float = 1.5  # a [m/s^2]
    decel_max: float = 3.0  # b [m/s^2], positive
    acceleration_exponent: int = ACCELERATION_EXPONENT

    @property
    def num_policies(self) -> int:
        return len(self.speed_limit_fractions)

    def target_velocities(self, speed_limit_mps: float | None) -> np.ndarray:
        """[num_policies] desired free-road speeds for a lane speed limit (None: the fallback speed)."""
        if speed_limit_mps is None:
            base = self.fallback_target_velocity
        else:
            base = float(speed_limit_mps)
            if not np.isfinite(base) or base <= 0.0:
                raise ValueError(f"speed_limit_mps must be a positive finite speed or None, got {speed_limit_mps}")
        return np.asarray(self.speed_limit_fractions, dtype=np.float64) * base

    def acceleration(
        self,
        velocity: np.ndarray,
        gap: np.ndarray,
        lead_velocity: np.ndarray,
        target_velocity: np.ndarray,
    ) -> np.ndarray:
        """Clipped IDM acceleration for ego speed, raw bumper gap ``x_lead - x - l_rear`` and lead speed."""
        v = np.asarray(velocity, dtype=np.float64)
        s0 = self.min_gap_to_lead_agent
        s_star = s0 + v * self.headway_time + v * (v - lead_velocity) / (2.0 * np.sqrt(self.accel_max * self.decel_max))
        s_alpha = np.maximum(gap, s0)
        free_term = (v / target_velocity) ** self.acceleration_exponent
        accel = self.accel_max * (1.0 - free_term - (s_star / s_alpha) ** 2)
        return np.clip(accel, -self.decel_max, self.accel_max)

    def propagate(
        self,
        progress: np.ndarray,
        velocity: np.ndarray,
        lead_progress: np.ndarray,
        lead_velocity: np.ndarray,
        lead_length_rear: np.ndarray,
        target_velocity: np.ndarray,
        dt: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One Euler step of ``dt`` seconds for a batch: returns (next progress, next velocity)."""
        progress = np.asarray(progress, dtype=np.float64)
        velocity = np.asarray(velocity, dtype=np.float64)
        gap = np.asarray(lead_progress, dtype=np.float64) - progress - lead_length_rear
        accel = self.acceleration(velocity, gap, lead_velocity, target_velocity)
        return progress + dt * velocity, velocity + dt * accel


PDM_CLOSED_IDM = BatchIDMPolicy()
