"""Diffusion and flow machinery for the trajectory head: paths, prediction targets, step schedules and samplers.

Convention: t = 1 is noise, t = 0 is data. Every path is Gaussian, ``x_t = alpha_t * x0 + sigma_t * eps``:

* ``vp_cosine``: alpha = cos(pi/2 * u * t), sigma = sin(pi/2 * u * t), with u < 1 chosen so that the log-SNR at
  t = 1 is ``logsnr_min`` (-10 by default, alpha(1) ~ 6.7e-3): finite everywhere, alpha(0) = 1, sigma(0) = 0.
* ``vp_linear``: the continuous DDPM schedule beta(t) = beta_min + t (beta_max - beta_min) (0.1 to 20).
* ``flow``: rectified flow, alpha = 1 - t, sigma = t.

Targets: ``eps``, ``x0`` and ``v``; v is the path's own velocity, ``v = c_x0 * x0 + c_eps * eps`` with
(c_x0, c_eps) = (-sigma, alpha) on VP paths (Salimans & Ho) and (-1, 1) on the flow (v = dx_t/dt). The three
are exact affine functions of each other given x_t, so a model may predict any of them and every sampler works.

Samplers (all run on a grid 1 = t_0 > t_1 > ... > t_N = 0; the model is never evaluated at t = 0):

* ``ddim``: generalised DDIM with eta (any path); eta = 1 is the DDPM posterior, eta = 0 the probability-flow ODE
  (on the flow path it coincides with Euler).
* ``ddpm``: ancestral sampling from the Gaussian posterior q(x_s | x_t, x0_hat).
* ``dpmpp_2m``: DPM-Solver++ (2M), data-prediction multistep, first order on the first and the last step.
* ``euler``: Euler on the flow ODE dx/dt = v (flow path only).

Stochastic sampling (a :class:`NoiseConfig`) is the policy-gradient sampler: every step is the DDIM-eta Gaussian
N(x_{k+1}; mean_k, std_k^2 I), std_k = max(eta * posterior std, min_std), with the standard-normal noise optionally
clipped; the chain is kept in float32 and the per-step log-densities (their own std floor, optional clamp of every
per-dimension term, sum or mean over dimensions) are recorded in float32. :meth:`Diffusion.chain_logprob`
recomputes them with the identical arithmetic, for all steps or the last K'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from vla_drive.model.types import NoiseConfig

PathName = Literal["vp_cosine", "vp_linear", "flow"]
TargetName = Literal["eps", "v", "x0"]
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m", "euler"]
StepScheduleName = Literal["uniform", "logsnr"]

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]
"""``model_fn(x_t [B, ...], t [B], cond) -> prediction`` in the diffusion's target space."""

Coef = float | Tensor

LOGSNR_GRID_T_END = 1e-3  # the log-SNR step grid is spaced down to this t; its last point is then moved to t = 0


class Path:
    """A Gaussian path x_t = alpha(t) x0 + sigma(t) eps; subclasses give alpha, sigma, the velocity and lambda^-1."""

    name: str = ""

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def v_coeffs(self, alpha: Coef, sigma: Coef) -> tuple[Coef, Coef]:
        """(c_x0, c_eps) of the velocity target v = c_x0 * x0 + c_eps * eps."""
        raise NotImplementedError

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse of lambda(t) = log(alpha / sigma) (half the log-SNR)."""
        raise NotImplementedError

    def coeffs(self, t: float) -> tuple[float, float]:
        """(alpha, sigma) at one time as Python floats (float64 step coefficients, no tensors, no device sync)."""
        raise NotImplementedError

    def lam(self, t: float) -> float:
        """lambda(t) = log(alpha / sigma); -inf where alpha = 0, +inf where sigma = 0."""
        alpha, sigma = self.coeffs(t)
        if alpha <= 0.0:
            return -math.inf
        if sigma <= 0.0:
            return math.inf
        return math.log(alpha) - math.log(sigma)


class VPCosinePath(Path):
    """Variance-preserving cosine schedule, truncated so that alpha(1) > 0 (log-SNR(1) = logsnr_min)."""

    name = "vp_cosine"

    def __init__(self, logsnr_min: float = -10.0) -> None:
        self.u_max = (2.0 / math.pi) * math.atan(math.exp(-logsnr_min / 2.0))

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        angle = (0.5 * math.pi * self.u_max) * t
        return torch.cos(angle), torch.sin(angle)

    def coeffs(self, t: float) -> tuple[float, float]:
        angle = (0.5 * math.pi * self.u_max) * t
        return math.cos(angle), math.sin(angle)

    def v_coeffs(self, alpha: Coef, sigma: Coef) -> tuple[Coef, Coef]:
        return -sigma, alpha

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        return torch.atan(torch.exp(-lam)) / (0.5 * math.pi * self.u_max)


class VPLinearPath(Path):
    """Variance-preserving linear-beta schedule (continuous DDPM): log alpha = -(b1-b0) t^2 / 4 - b0 t / 2."""

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.b0, self.b1 = beta_min, beta_max

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = -0.25 * (self.b1 - self.b0) * t**2 - 0.5 * self.b0 * t
        return torch.exp(log_alpha), torch.sqrt(-torch.expm1(2.0 * log_alpha))

    def coeffs(self, t: float) -> tuple[float, float]:
        log_alpha = -0.25 * (self.b1 - self.b0) * t * t - 0.5 * self.b0 * t
        return math.exp(log_alpha), math.sqrt(-math.expm1(2.0 * log_alpha))

    def v_coeffs(self, alpha: Coef, sigma: Coef) -> tuple[Coef, Coef]:
        return -sigma, alpha

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        neg_log_alpha = 0.5 * torch.nn.functional.softplus(-2.0 * lam)  # alpha^2 = sigmoid(2 lambda)
        a, b = 0.25 * (self.b1 - self.b0), 0.5 * self.b0
        return 2.0 * neg_log_alpha / (b + torch.sqrt(b * b + 4.0 * a * neg_log_alpha))  # stable root of a t^2+bt-L


class FlowPath(Path):
    """Rectified flow x_t = (1 - t) x0 + t eps; velocity v = eps - x0."""

    name = "flow"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - t, t

    def coeffs(self, t: float) -> tuple[float, float]:
        return 1.0 - t, t

    def v_coeffs(self, alpha: Coef, sigma: Coef) -> tuple[Coef, Coef]:
        return -1.0, 1.0

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-lam)


def make_path(name: PathName) -> Path:
    """The path called ``name`` with its default constants."""
    paths: dict[str, Callable[[], Path]] = {"vp_cosine": VPCosinePath, "vp_linear": VPLinearPath, "flow": FlowPath}
    if name not in paths:
        raise ValueError(f"unknown diffusion path {name!r}; expected one of {sorted(paths)}")
    return paths[name]()


def _bcast(coef: Coef, like: Tensor) -> Coef:
    """A per-sample coefficient [B] shaped to broadcast over x [B, ...]; floats pass through."""
    if isinstance(coef, Tensor) and coef.ndim == 1:
        return coef.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return coef


def guidance_combine(pred_pos: Tensor, pred_neg: Tensor, omega: float) -> Tensor:
    """Dichotomous guidance (1 + omega) * pos - omega * neg, written so that pos == neg gives pos exactly.

    The weights sum to 1, so combining eps, v or x0 predictions gives the same update (all are affine in each
    other given x_t)."""
    return pred_pos + omega * (pred_pos - pred_neg)


def gaussian_logp(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(x; mean, std^2 I) summed over every dimension but the first: [B]."""
    return _gaussian_logp_per_dim(x, mean, std).flatten(1).sum(1)


def _gaussian_logp_per_dim(x: Tensor, mean: Tensor, std: float) -> Tensor:
    z = (x - mean) / std
    return -0.5 * z * z - (math.log(std) + 0.5 * math.log(2.0 * math.pi))


def step_logprob(x: Tensor, mean: Tensor, std: float, noise: NoiseConfig) -> Tensor:
    """The log-probability [B] of one stochastic step x ~ N(mean, std^2 I) as ``noise`` defines it (std floored at
    ``noise.logprob_std_floor``, every per-dimension term clamped to ``noise.logprob_clamp``, summed or averaged
    over the dimensions), in float32."""
    per_dim = _gaussian_logp_per_dim(x.float(), mean.float(), max(std, noise.logprob_std_floor))
    if noise.logprob_clamp is not None:
        per_dim = per_dim.clamp(*noise.logprob_clamp)
    per_dim = per_dim.flatten(1)
    return per_dim.mean(1) if noise.reduction == "mean" else per_dim.sum(1)


@dataclass
class DiffusionSample:
    """What a sampler returns, in model space."""

    x0: Tensor  # [B, ...]
    chain: Tensor | None = None  # [B, N+1, ...], index 0 = initial noise, index N = x0
    step_logp: Tensor | None = None  # [B, N] (stochastic sampling only)


class Diffusion:
    """One configured path + target + sampler: forward process, training targets, sampling, chain log-probs."""

    def __init__(
        self,
        path: PathName = "vp_cosine",
        target: TargetName = "eps",
        sampler: SamplerName = "ddim",
        step_schedule: StepScheduleName = "uniform",
        ddim_eta: float = 0.0,
        clip_x0: float | None = None,
        t_min: float = 1e-3,
    ) -> None:
        for value, name, kind in (
            (target, "target", TargetName),
            (sampler, "sampler", SamplerName),
            (step_schedule, "step_schedule", StepScheduleName),
        ):
            if value not in get_args(kind):
                raise ValueError(f"Diffusion: unknown {name} {value!r}; expected one of {get_args(kind)}")
        self.path = make_path(path)
        if path == "flow" and target == "eps":
            raise ValueError(
                "Diffusion: target 'eps' on the flow path is singular at t = 1 (x0 is not identifiable "
                "from eps where alpha = 0); use target 'v' or 'x0'"
            )
        if sampler == "euler" and path != "flow":
            raise ValueError(
                f"Diffusion: sampler 'euler' integrates the flow ODE; path {path!r} needs 'ddim', 'ddpm' or 'dpmpp_2m'"
            )
        if step_schedule == "logsnr" and path == "flow":
            raise ValueError(
                "Diffusion: step_schedule 'logsnr' needs a finite log-SNR at t = 1; the flow path has "
                "-inf there, use 'uniform'"
            )
        _check_eta(ddim_eta, "Diffusion.ddim_eta")
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"Diffusion: t_min must be in [0, 1), got {t_min}")
        self.target_name: TargetName = target
        self.sampler: SamplerName = sampler
        self.step_schedule: StepScheduleName = step_schedule
        self.ddim_eta = float(ddim_eta)
        self.clip_x0 = clip_x0
        self.t_min = float(t_min)

    # ----------------------------------------------------------------------------------------------- forward process
    def alpha_sigma(self, t: Tensor | float, like: Tensor) -> tuple[Coef, Coef]:
        """(alpha, sigma) at t (a float or per-sample [B]), shaped to broadcast over ``like``."""
        if isinstance(t, Tensor):
            alpha, sigma = self.path.alpha_sigma(t.to(torch.float64))
            return _bcast(alpha, like), _bcast(sigma, like)
        return self.path.coeffs(float(t))

    def forward_noise(self, x0: Tensor, t: Tensor | float, eps: Tensor) -> Tensor:
        """x_t = alpha_t x0 + sigma_t eps."""
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps

    def target(self, x0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
        """The regression target for (x0, eps) at t in this diffusion's target space."""
        return self.from_x0_eps(x0, eps, t, self.target_name)

    def from_x0_eps(self, x0: Tensor, eps: Tensor, t: Tensor | float, kind: TargetName) -> Tensor:
        """eps, x0 or v built from (x0, eps)."""
        if kind == "x0":
            return x0
        if kind == "eps":
            return eps
        alpha, sigma = self.alpha_sigma(t, x0)
        c_x0, c_eps = self.path.v_coeffs(alpha, sigma)
        return c_x0 * x0 + c_eps * eps

    def to_x0_eps(
        self, pred: Tensor, x_t: Tensor, t: Tensor | float, kind: TargetName | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x0, eps) implied by a prediction of ``kind`` (default: this diffusion's target) at x_t, t."""
        kind = kind or self.target_name
        alpha, sigma = self.alpha_sigma(t, x_t)
        if kind == "x0":
            return pred, (x_t - alpha * pred) / sigma
        if kind == "eps":
            return (x_t - sigma * pred) / alpha, pred
        c_x0, c_eps = self.path.v_coeffs(alpha, sigma)
        det = alpha * c_eps - sigma * c_x0  # 1 for every path here (alpha^2 + sigma^2 = 1, resp. (1-t) + t = 1)
        return (c_eps * x_t - sigma * pred) / det, (alpha * pred - c_x0 * x_t) / det

    def convert(self, pred: Tensor, x_t: Tensor, t: Tensor | float, src: TargetName, dst: TargetName) -> Tensor:
        """A prediction of kind ``src`` rewritten as kind ``dst`` (exact, given x_t and t)."""
        if src == dst:
            return pred
        x0, eps = self.to_x0_eps(pred, x_t, t, src)
        return self.from_x0_eps(x0, eps, t, dst)

    def sample_t(self, batch: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
        """Training times t ~ U[t_min, 1], [B] float32."""
        u = torch.rand(batch, device=device, generator=generator)
        return self.t_min + (1.0 - self.t_min) * u

    # ----------------------------------------------------------------------------------------------- step schedules
    def time_grid(self, steps: int) -> list[float]:
        """N + 1 times from 1 (noise) down to 0 (data), uniform in t or in log-SNR."""
        if steps < 1:
            raise ValueError(f"Diffusion.time_grid: steps must be >= 1, got {steps}")
        if self.step_schedule == "uniform":
            grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        else:
            lam = torch.linspace(self.path.lam(1.0), self.path.lam(LOGSNR_GRID_T_END), steps + 1, dtype=torch.float64)
            grid = self.path.t_from_lambda(lam)
        times = [float(v) for v in grid]
        times[0], times[-1] = 1.0, 0.0
        return times

    # ------------------------------------------------------------------------------------------------------ sampling
    def _x0_eps_for_step(self, pred: Tensor, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """The model's (x0, eps) at one step, x0 optionally clipped (eps then re-derived to stay consistent)."""
        x0, eps = self.to_x0_eps(pred, x, t)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            alpha, sigma = self.path.coeffs(t)
            eps = (x - alpha * x0) / sigma
        return x0, eps

    def ddim_mean_std(self, x0: Tensor, eps: Tensor, t: float, s: float, eta: float) -> tuple[Tensor, float]:
        """Mean and std of the DDIM-eta step t -> s (s < t): eta = 1 is the DDPM posterior, eta = 0 deterministic."""
        a_s, s_s = self.path.coeffs(s)
        std = eta * posterior_std(self.path, t, s)
        return a_s * x0 + math.sqrt(max(s_s * s_s - std * std, 0.0)) * eps, std

    def ddpm_mean_std(self, x: Tensor, x0: Tensor, t: float, s: float) -> tuple[Tensor, float]:
        """Gaussian posterior q(x_s | x_t, x0) of the path: mean from x_t and x0, and its std."""
        a_t, s_t = self.path.coeffs(t)
        a_s, s_s = self.path.coeffs(s)
        a_ts = a_t / a_s
        var_ts = s_t * s_t - a_ts * a_ts * s_s * s_s
        mean = (a_ts * s_s * s_s / (s_t * s_t)) * x + (a_s * var_ts / (s_t * s_t)) * x0
        return mean, posterior_std(self.path, t, s)

    def sample(
        self,
        model_fn: ModelFn,
        cond: Any,
        shape: tuple[int, ...],
        steps: int,
        *,
        stochastic: NoiseConfig | None = None,
        return_chain: bool = False,
        generator: Generators = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        temperature: float = 1.0,
    ) -> DiffusionSample:
        """Run the configured sampler (or the stochastic DDIM-eta sampler) from N(0, I) noise to data.

        ``generator`` is one torch generator for the whole batch, or a sequence of G generators each drawing the
        noise of its own block of ``shape[0] / G`` consecutive rows (one per scene: the samples of a scene then do
        not depend on the batch they run in). ``temperature`` scales the initial noise and every stochastic step's
        noise (1: the sampler as trained; 0: a deterministic sampler's output no longer depends on the noise); the
        per-step log-probabilities stay those of the untempered steps."""
        times = self.time_grid(steps)
        if not (temperature >= 0.0 and math.isfinite(temperature)):
            raise ValueError(f"temperature: expected a finite number >= 0, got {temperature}")
        if stochastic is not None:
            _check_noise(stochastic)
            dtype = torch.float32  # the chain whose log-probabilities are trained on stays in float32

        def noise() -> Tensor:
            draw = gaussian_noise(shape, generator, device, dtype)
            return draw if temperature == 1.0 else draw * temperature  # 1: bit for bit the untempered sampler

        x = noise()
        chain = [x] if return_chain else None
        logps: list[Tensor] = []
        prev_x0: Tensor | None = None
        for k in range(steps):
            t, s = times[k], times[k + 1]
            t_vec = torch.full((shape[0],), t, device=device, dtype=dtype)
            x0, eps = self._x0_eps_for_step(model_fn(x, t_vec, cond).to(dtype), x, t)
            if stochastic is not None:
                mean, std = self.ddim_mean_std(x0, eps, t, s, stochastic.eta)
                std = max(std, stochastic.min_std)
                draw = gaussian_noise(shape, generator, device, dtype)
                if stochastic.randn_clip is not None:
                    draw = draw.clamp(-stochastic.randn_clip, stochastic.randn_clip)
                x = mean + std * (draw if temperature == 1.0 else draw * temperature)
                logps.append(step_logprob(x, mean, std, stochastic))
            elif self.sampler in ("ddim", "ddpm"):
                if self.sampler == "ddim":
                    mean, std = self.ddim_mean_std(x0, eps, t, s, self.ddim_eta)
                else:
                    mean, std = self.ddpm_mean_std(x, x0, t, s)
                x = mean + std * noise() if std > 0 else mean
            elif self.sampler == "dpmpp_2m":
                x = self._dpmpp_2m_step(x, x0, prev_x0, times, k)
                prev_x0 = x0
            else:  # euler on the flow: dx/dt = v = eps - x0
                x = x + (s - t) * (eps - x0)
            if chain is not None:
                chain.append(x)
        return DiffusionSample(
            x0=x,
            chain=torch.stack(chain, dim=1) if chain is not None else None,
            step_logp=torch.stack(logps, dim=1) if logps else None,
        )

    def _dpmpp_2m_step(self, x: Tensor, x0: Tensor, prev_x0: Tensor | None, times: list[float], k: int) -> Tensor:
        """DPM-Solver++(2M) step times[k] -> times[k+1]; first order on the first step and into t = 0."""
        t, s = times[k], times[k + 1]
        a_s, s_s = self.path.coeffs(s)
        if s_s == 0.0:
            return a_s * x0  # h = inf: the first-order update is exactly the data prediction
        _, s_t = self.path.coeffs(t)
        lam_t, lam_s = self.path.lam(t), self.path.lam(s)
        h = lam_s - lam_t
        decay = -math.expm1(-h)  # 1 - e^{-h}
        data = x0
        if prev_x0 is not None:
            r = (lam_t - self.path.lam(times[k - 1])) / h
            if math.isfinite(r):
                data = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        return (s_s / s_t) * x + (a_s * decay) * data

    def chain_logprob(
        self, model_fn: ModelFn, chain: Tensor, cond: Any, noise: NoiseConfig, last_steps: int | None = None
    ) -> Tensor:
        """Per-step log-probabilities (:func:`step_logprob`, float32) of a stored chain [B, N+1, ...] under
        model_fn: [B, K'] for the last K' = ``last_steps`` transitions (None = all N).

        Repeats the stochastic sampler's arithmetic step by step, so at the sampling parameters it reproduces the
        stored ``step_logp`` (up to the batch layout); gradients flow into model_fn."""
        _check_noise(noise)
        steps = chain.shape[1] - 1
        first = 0 if last_steps is None else steps - last_steps
        if not 0 <= first < steps:
            raise ValueError(f"Diffusion.chain_logprob: last_steps must be in [1, {steps}], got {last_steps}")
        times = self.time_grid(steps)
        batch = chain.shape[0]
        chain = chain.float()
        out = []
        for k in range(first, steps):
            t, s = times[k], times[k + 1]
            x = chain[:, k]
            t_vec = torch.full((batch,), t, device=chain.device, dtype=chain.dtype)
            x0, eps = self._x0_eps_for_step(model_fn(x, t_vec, cond).float(), x, t)
            mean, std = self.ddim_mean_std(x0, eps, t, s, noise.eta)
            out.append(step_logprob(chain[:, k + 1], mean, max(std, noise.min_std), noise))
        return torch.stack(out, dim=1)


Generators = torch.Generator | Sequence[torch.Generator] | None


def gaussian_noise(
    shape: tuple[int, ...], generator: Generators, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """N(0, I) noise of ``shape`` from one generator, or from G generators that each fill ``shape[0] / G`` rows."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    groups = len(generator)
    if groups == 0 or shape[0] % groups:
        raise ValueError(f"gaussian_noise: {groups} generators cannot split {shape[0]} rows evenly")
    block = (shape[0] // groups, *shape[1:])
    return torch.cat([torch.randn(block, generator=g, device=device, dtype=dtype) for g in generator])


def posterior_std(path: Path, t: float, s: float) -> float:
    """Std of q(x_s | x_t, x0) for s < t: sqrt(sigma_{t|s}^2 sigma_s^2 / sigma_t^2), computed in float64."""
    a_t, s_t = path.coeffs(t)
    a_s, s_s = path.coeffs(s)
    a_ts = a_t / a_s
    var_ts = max(s_t * s_t - a_ts * a_ts * s_s * s_s, 0.0)
    return math.sqrt(var_ts * s_s * s_s) / s_t


def _check_eta(eta: float, what: str) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"{what}: eta must be in [0, 1] (1 = DDPM variance), got {eta}")


def _check_noise(noise: NoiseConfig) -> None:
    _check_eta(noise.eta, "NoiseConfig.eta")
    if noise.min_std <= 0.0 or noise.logprob_std_floor <= 0.0:
        raise ValueError(
            f"NoiseConfig.min_std and logprob_min_std must be > 0 so that per-step log-probabilities are finite, "
            f"got {noise.min_std} and {noise.logprob_min_std}"
        )
    if noise.randn_clip is not None and noise.randn_clip <= 0.0:
        raise ValueError(f"NoiseConfig.randn_clip must be > 0 or None, got {noise.randn_clip}")
    if noise.logprob_clamp is not None and not noise.logprob_clamp[0] < noise.logprob_clamp[1]:
        raise ValueError(f"NoiseConfig.logprob_clamp must be (low, high) with low < high, got {noise.logprob_clamp}")
    if noise.reduction not in ("sum", "mean"):
        raise ValueError(f"NoiseConfig.reduction must be 'sum' or 'mean', got {noise.reduction!r}")
