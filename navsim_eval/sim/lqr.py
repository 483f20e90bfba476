"""Batched LQR trajectory tracker (NAVSIM's ``BatchLQRTracker``, itself nuPlan's LQR tracker for K proposals).

Each step the tracker commands an acceleration (one-step longitudinal LQR towards the fitted speed 10 steps ahead,
or a P controller when both the ego and that speed are below 0.2 m/s) and a steering rate (one-step LQR on the lateral
error dynamics composed over a 10-step horizon). Reference speeds and curvatures come from a regularised
least-squares fit to the reference poses.

The maths is NAVSIM's; the evaluation is arranged for speed, with results equal to within float rounding:

* The speed fit ``pinv(AᵀA + λRᵀR) Aᵀ y`` has AᵀA independent of the headings (cos² + sin² = 1), so it is one
  constant matrix applied to the displacements projected on the reference headings.
* The curvature fit has A = diag(v) W with a constant W: AᵀA comes from reverse cumulative sums of v², and the
  well-conditioned system is solved directly instead of through ``pinv``.
* The longitudinal command depends only on the speed, never on the lateral state, so the simulator rolls the speed
  out first. The lateral LQR gains then depend only on (speed, acceleration command, curvature) and are precomputed
  for all steps (:meth:`BatchLQRTracker.prepare_lateral`); each step only evaluates the feedback law.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from navsim_eval.vehicle import PACIFICA, VehicleParameters

Q_LONGITUDINAL = 10.0
R_LONGITUDINAL = 1.0
Q_LATERAL = (1.0, 10.0, 0.0)  # lateral error, heading error, steering angle
R_LATERAL = 1.0
TRACKING_HORIZON = 10
JERK_PENALTY = 1e-4
CURVATURE_RATE_PENALTY = 1e-2
INITIAL_CURVATURE_PENALTY = 1e-10
STOPPING_PROPORTIONAL_GAIN = 0.5
STOPPING_VELOCITY = 0.2


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared between calls: make accidental in-place edits fail loudly."""
    array.flags.writeable = False
    return array


def longitudinal_gain(dt: float = 0.1) -> float:
    """Gain of the one-step longitudinal LQR: a = gain * (v - v_ref), in NAVSIM's operation order.

    The acceleration is held over the horizon, so v_N = v + (N dt) a and a = -(B q (v - v_ref)) / (B q B + r).
    """
    b = TRACKING_HORIZON * dt
    return -1 / (b * Q_LONGITUDINAL * b + R_LONGITUDINAL) * b * Q_LONGITUDINAL


@lru_cache(maxsize=8)
def _integration_matrix(num: int, dt: float) -> np.ndarray:
    """W [num, num] mapping (x0, rates...) to dt * profile: W[i, 0] = dt, W[i, j] = dt² for 1 <= j <= i."""
    w = np.tril(np.full((num, num), dt * dt))
    w[:, 0] = dt
    return _read_only(w)


@lru_cache(maxsize=8)
def _velocity_fit_matrix(num: int, dt: float) -> np.ndarray:
    """Constant [num, num] matrix from displacements projected on the headings to the fitted speed profile."""
    w = _integration_matrix(num, dt)
    # NAVSIM quirk: its "banded difference matrix" writes the +1 band and then overwrites it with -I, so the
    # penalty rows are -a_r for r < num - 3 and only the last row is a true difference a_{num-2} - a_{num-3}.
    # The speed fit therefore shrinks accelerations towards zero rather than penalising jerk.
    penalty = np.zeros((num - 2, num))
    rows = np.arange(num - 2)
    penalty[rows, rows + 1] = -1.0
    penalty[-1, -1] = 1.0
    solution = np.linalg.pinv(w.T @ w + JERK_PENALTY * penalty.T @ penalty) @ w.T
    return _read_only(np.ascontiguousarray(((w / dt) @ solution).T))


@lru_cache(maxsize=8)
def _curvature_fit_structure(num: int, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constants of the curvature normal equations: column weight products, column weights, penalty matrix."""
    weights = np.full(num, dt * dt)
    weights[0] = dt  # column j of W is weights[j] on rows i >= j
    penalty = np.full(num, CURVATURE_RATE_PENALTY)
    penalty[0] = INITIAL_CURVATURE_PENALTY
    return _read_only(np.outer(weights, weights)), _read_only(weights), _read_only(np.diag(penalty))


def _reverse_cumsum(values: np.ndarray) -> np.ndarray:
    """Σ_{i >= j} values[:, i] for every j (tail sums along axis 1)."""
    return np.cumsum(values[:, ::-1], axis=1)[:, ::-1]


def _profile(initial: np.ndarray, rates: np.ndarray, dt: float) -> np.ndarray:
    """initial + dt * (0, cumsum(rates)) along the last axis: a profile from its start value and derivatives."""
    profile = np.empty((*rates.shape[:-1], rates.shape[-1] + 1))
    profile[..., 0] = 0.0
    np.cumsum(rates * dt, axis=-1, out=profile[..., 1:])
    return profile + initial[..., None]


def fit_velocity_curvature_profiles(poses: np.ndarray, dt: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares speed and curvature profiles [K, N-1] of reference poses [K, N, 3] sampled every ``dt``.

    Speed: displacement i ~ dt * v_i * (cos θ_i, sin θ_i) with v_i = v0 + dt Σ_{j<i} a_j (penalty 1e-4, see the
    quirk in :func:`_velocity_fit_matrix`). Curvature: wrapped heading change i ~ dt * v_i * κ_i with
    κ_i = κ0 + dt Σ_{j<i} κ̇_j using the fitted speeds; penalty 1e-2 on κ̇ and 1e-10 on κ0.
    """
    poses = np.asarray(poses, dtype=np.float64)
    num = poses.shape[1] - 1
    deltas = np.diff(poses, axis=1)
    headings = poses[:, :-1, 2]
    projected = np.cos(headings) * deltas[..., 0] + np.sin(headings) * deltas[..., 1]
    velocity = projected @ _velocity_fit_matrix(num, dt)

    heading_change = np.arctan2(np.sin(deltas[..., 2]), np.cos(deltas[..., 2]))
    weight_products, weights, penalty = _curvature_fit_structure(num, dt)
    # (AᵀA)[j, l] = w_j w_l Σ_{i >= max(j, l)} v_i²; that tail sum is non-increasing in its start index, so the
    # tail from max(j, l) is the smaller of the two tails.
    tail = _reverse_cumsum(velocity * velocity)
    normal = np.minimum(tail[:, :, None], tail[:, None, :]) * weight_products + penalty
    rhs = weights * _reverse_cumsum(velocity * heading_change)
    solution = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return velocity, _profile(solution[:, 0], solution[:, 1:], dt)


@lru_cache(maxsize=4)
def _lateral_polynomials(horizon: int, dt: float, wheel_base: float, num_steps: int) -> tuple[np.ndarray, ...]:
    """Constants that turn (v, α = a dt) and the curvature profile into the composed lateral dynamics.

    Over the horizon the speeds are v_i = v + i α (i < horizon) and the curvatures κ_{min(k+i, T-1)}. Composing the
    Euler steps x_{i+1} = M_i x_i + B u + g_i with M_i = I + v_i dt E01 + (v_i dt / L) E12, B = (0, 0, dt) and
    g_i = (0, -v_i κ_i dt, 0) gives, with pairs j < i:
    a01 = dt Σ v_i, a12 = a01 / L, a02 = dt²/L Σ v_i v_j, b1 = dt²/L Σ i v_i, b0 = dt³/L Σ j v_i v_j,
    g1 = -dt Σ κ_i v_i, g0 = -dt² Σ κ_j v_i v_j: quadratic polynomials in (v, α).

    Returns ``dynamics`` [5, 4] mapping the features (v, α, v², vα, α²) to (a01, a02, b1, b0);
    ``curvature_moments`` [T, 5 T] mapping a curvature profile to five moment-major per-step moments (Σ κ_i, Σ i κ_i,
    and over pairs Σ κ_j, Σ κ_j (i + j), Σ κ_j i j); and ``drift`` [5, 2] taking features times moments to (g1, g0).
    """
    index = np.arange(horizon, dtype=np.float64)
    later, earlier = (i.astype(np.float64) for i in np.tril_indices(horizon, -1))  # pairs i > j
    dynamics = np.zeros((5, 4))
    dynamics[:2, 0] = dt * horizon, dt * index.sum()
    dynamics[2:, 1] = dt * dt / wheel_base * np.array([len(later), (later + earlier).sum(), (later * earlier).sum()])
    dynamics[:2, 2] = dt * dt / wheel_base * np.array([index.sum(), (index * index).sum()])
    pair_j_sums = [earlier.sum(), (earlier * (later + earlier)).sum(), (later * earlier * earlier).sum()]
    dynamics[2:, 3] = dt**3 / wheel_base * np.array(pair_j_sums)

    per_index = np.zeros((horizon, 5))  # weight of κ at horizon index i in each moment
    per_index[:, 0], per_index[:, 1] = 1.0, index
    pair_terms = np.stack([np.ones_like(later), later + earlier, later * earlier], axis=1)
    np.add.at(per_index[:, 2:], earlier.astype(np.intp), pair_terms)
    curvature_moments = np.zeros((num_steps, num_steps, 5))  # [source index, step, moment]
    source = np.minimum(np.arange(num_steps)[:, None] + np.arange(horizon), num_steps - 1)
    np.add.at(curvature_moments, (source, np.arange(num_steps)[:, None]), per_index)

    drift = np.zeros((5, 2))
    drift[:2, 0] = -dt
    drift[2:, 1] = -dt * dt
    curvature_moments = np.ascontiguousarray(curvature_moments.transpose(0, 2, 1)).reshape(num_steps, -1)
    return _read_only(dynamics), _read_only(curvature_moments), _read_only(drift)


class BatchLQRTracker:
    """LQR tracking of reference states [K, T+1, 11] by K proposals, stepped by :mod:`navsim_eval.sim.simulator`.

    Per-step arrays are stored step-major ([T, ...]) so that a step's slice is a contiguous view. Poses are complex:
    position x + iy and orientation e^{iθ}, so one subtraction and one rotation give all tracking errors.
    """

    def __init__(self, reference_states: np.ndarray, dt: float = 0.1, vehicle: VehicleParameters = PACIFICA):
        reference_states = np.asarray(reference_states, dtype=np.float64)
        self.dt = dt
        self.wheel_base = vehicle.wheel_base
        self.num_proposals = len(reference_states)
        velocity, self.curvature = fit_velocity_curvature_profiles(reference_states[..., :3], dt)
        self.num_steps = velocity.shape[1]
        lookahead = np.minimum(np.arange(self.num_steps) + TRACKING_HORIZON, self.num_steps - 1)
        self.reference_velocity = np.ascontiguousarray(velocity[:, lookahead].T)  # [T, K] speed to reach
        self.reference_stopped = self.reference_velocity <= STOPPING_VELOCITY
        poses = reference_states[:, : self.num_steps, :3].transpose(1, 0, 2)  # [T, K, 3]
        self._reference_origin = np.zeros((self.num_steps, 2, self.num_proposals), dtype=np.complex128)
        self._reference_origin[:, 0] = poses[..., 0] + 1j * poses[..., 1]
        self._reference_unrotation = np.repeat(np.exp(-1j * poses[:, None, :, 2]), 2, axis=1)
        # Per-step scratch: the lateral state (lateral error, heading error, steering, 1) and the gains' output.
        self._lateral_state = np.ones((self.num_proposals, 1, 4))
        self._lateral_output = np.empty((self.num_proposals, 1, 2))
        self._lateral_error, self._heading_error, self._steering = (self._lateral_state[:, 0, i] for i in range(3))
        self._heading_part, self._linear_part = self._lateral_output[:, 0, 0], self._lateral_output[:, 0, 1]
        self._lateral_gains: np.ndarray | None = None
        self._wrapped_heading_gains: np.ndarray | None = None

    def accel_command(self, step: int, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Acceleration command [K] at ``step`` for the current speeds, and whether the stopping controller acted."""
        speed_error = velocity - self.reference_velocity[step]
        stopping = self.reference_stopped[step] & (velocity <= STOPPING_VELOCITY)
        gain = np.where(stopping, -STOPPING_PROPORTIONAL_GAIN, longitudinal_gain(self.dt))
        return gain * speed_error, stopping

    def prepare_lateral(
        self, velocity: np.ndarray, accel_command: np.ndarray, stopping: np.ndarray, scale: float = 1.0
    ) -> None:
        """Precompute the lateral LQR law of every step from the speed rollout (all [T, K]).

        At step k the error dynamics are linearised along speeds v_i = v_k + i a_k dt and curvatures
        κ_{min(k+i, last)} for i < 10; composing the ten Euler steps gives x̂ = A x + g (zero-input error) and the
        steering-rate response B (entries from :func:`_lateral_polynomials`). The one-step LQR
        u = -(BᵀQ x̂) / (BᵀQB + R) is linear in (lateral error, heading error, steering) except that the heading
        component of x̂ is wrapped, which :meth:`steering_command` applies. Stopping proposals get zero gains
        (steering rate 0). Commands come out multiplied by ``scale`` (the simulator folds in the actuator lag and
        the step, so the loop gets steering-angle increments directly).
        """
        dynamics, curvature_moments, drift = _lateral_polynomials(
            TRACKING_HORIZON, self.dt, self.wheel_base, self.num_steps
        )
        num_steps, num = velocity.shape
        alpha = accel_command * self.dt  # NAVSIM's horizon speeds v + i a dt hold the command over the horizon
        features = np.empty((5, num_steps, num))  # v, α, v², vα, α²; feature-major keeps every row contiguous
        features[0], features[1] = velocity, alpha
        np.multiply(velocity, velocity, features[2])
        np.multiply(velocity, alpha, features[3])
        np.multiply(alpha, alpha, features[4])
        flat = features.reshape(5, -1)
        a01, a02, b1, b0 = (dynamics.T @ flat).reshape(4, num_steps, num)
        moments = (curvature_moments.T @ self.curvature.T).reshape(5, -1)  # [5, T * K]
        g1, g0 = (drift.T @ (flat * moments)).reshape(2, num_steps, num)

        q_lat, q_heading, _ = Q_LATERAL
        inverse = -1 / (b0 * q_lat * b0 + b1 * q_heading * b1 + R_LATERAL)
        inverse[stopping] = 0.0
        inverse *= scale
        error_gain = inverse * b0 * q_lat
        # Gain matrix rows: lateral error, heading error, steering, 1; columns: heading component of x̂
        # (h + a12 δ + g1, wrapped later) and the weighted lateral component (error_gain * (e + a01 h + a02 δ + g0)).
        parts = np.empty((4, 2, num_steps, num))
        parts[0, 0], parts[1, 0], parts[2, 0], parts[3, 0] = 0.0, 1.0, a01 / self.wheel_base, g1
        parts[0, 1] = error_gain
        np.multiply(error_gain, a01, parts[1, 1])
        np.multiply(error_gain, a02, parts[2, 1])
        np.multiply(error_gain, g0, parts[3, 1])
        self._lateral_gains = parts.transpose(2, 3, 0, 1).copy()  # [T, K, 4, 2]
        self._wrapped_heading_gains = inverse * b1 * q_heading

    def steering_command(self, step: int, pose: np.ndarray, steering: np.ndarray) -> np.ndarray:
        """Steering-rate command [K] (times the ``prepare_lateral`` scale) at ``step``.

        ``pose`` [2, K] holds complex positions and orientations e^{iθ}, ``steering`` the steering angles [K].
        """
        if self._lateral_gains is None:
            raise RuntimeError("BatchLQRTracker.prepare_lateral must run before steering_command")
        # Position offset and orientation in the frame of the reference pose at this step, in one shot.
        local = (pose - self._reference_origin[step]) * self._reference_unrotation[step]
        orientation = local[1]
        self._lateral_error[:] = local[0].imag
        np.arctan2(orientation.imag, orientation.real, self._heading_error)
        self._steering[:] = steering
        np.matmul(self._lateral_state, self._lateral_gains[step], self._lateral_output)
        heading_part = self._heading_part
        wrapped = np.arctan2(np.sin(heading_part), np.cos(heading_part))
        return self._linear_part + self._wrapped_heading_gains[step] * wrapped
