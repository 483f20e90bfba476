"""Paths, target conversions, step grids and samplers, checked against a Gaussian mixture with an exact denoiser."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from vla_drive.model.diffusion import Diffusion, DiffusionSample, ModelFn, guidance_combine, make_path, posterior_std
from vla_drive.model.types import NoiseConfig

PATHS = ("vp_cosine", "vp_linear", "flow")
TARGETS = ("eps", "v", "x0")
SHAPE = (8, 3)


class GaussianMixture:
    """x0 ~ sum_i w_i N(mu_i, s_i^2 I) over [8, 3]; E[x0 | x_t] is closed-form on every Gaussian path."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.weights = torch.tensor([0.3, 0.7], dtype=dtype)
        self.means = torch.stack([torch.full(SHAPE, 1.5, dtype=dtype), torch.full(SHAPE, -1.0, dtype=dtype)])
        self.means[1, :, 2] = 0.5
        self.stds = torch.tensor([0.3, 0.5], dtype=dtype)

    def posterior_mean(self, diffusion: Diffusion, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = diffusion.alpha_sigma(t, x)  # [B, 1, 1]
        alpha, sigma = alpha[..., None], sigma[..., None]  # broadcast against the component axis
        xs = x[:, None]  # [B, 1, 8, 3]
        mu, s2 = self.means[None], self.stds.square().view(1, -1, 1, 1)
        var = alpha**2 * s2 + sigma**2  # marginal variance per component
        dims = x[0].numel()
        log_w = (
            torch.log(self.weights)[None]
            - 0.5 * ((xs - alpha * mu) ** 2 / var).flatten(2).sum(2)
            - 0.5 * dims * torch.log(var.flatten(1))
        )
        resp = torch.softmax(log_w, dim=1)[..., None, None]
        comp_mean = mu + alpha * s2 / var * (xs - alpha * mu)
        return (resp * comp_mean).sum(1)

    def model_fn(self, diffusion: Diffusion) -> ModelFn:
        """An exact model in the diffusion's target space."""

        def fn(x: torch.Tensor, t: torch.Tensor, _cond: object) -> torch.Tensor:
            x0 = self.posterior_mean(diffusion, x, t)
            return diffusion.convert(x0, x, t, "x0", diffusion.target_name)

        return fn


def _valid(path: str, target: str) -> bool:
    return not (path == "flow" and target == "eps")


def _samplers(path: str) -> list[str]:
    return ["ddim", "dpmpp_2m", "euler"] if path == "flow" else ["ddim", "dpmpp_2m"]


@pytest.mark.parametrize("path", PATHS)
def test_target_conversions_round_trip(path: str) -> None:
    diffusion = Diffusion(path=path, target="v")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, *SHAPE, generator=g, dtype=torch.float64)
    eps = torch.randn(16, *SHAPE, generator=g, dtype=torch.float64)
    t = torch.linspace(0.01, 0.99, 16, dtype=torch.float64)
    x_t = diffusion.forward_noise(x0, t, eps)
    for kind in TARGETS:
        pred = diffusion.from_x0_eps(x0, eps, t, kind)
        back_x0, back_eps = diffusion.to_x0_eps(pred, x_t, t, kind)
        torch.testing.assert_close(back_x0, x0, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(back_eps, eps, rtol=1e-9, atol=1e-9)
        for other in TARGETS:  # eps <-> x0 <-> v, both ways
            there = diffusion.convert(pred, x_t, t, kind, other)
            torch.testing.assert_close(there, diffusion.from_x0_eps(x0, eps, t, other), rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(diffusion.convert(there, x_t, t, other, kind), pred, rtol=1e-9, atol=1e-9)
    # scalar t takes the same route
    pred = diffusion.from_x0_eps(x0, eps, 0.3, "v")
    torch.testing.assert_close(diffusion.to_x0_eps(pred, diffusion.forward_noise(x0, 0.3, eps), 0.3, "v")[0], x0)


@pytest.mark.parametrize("path", PATHS)
def test_paths_endpoints_velocity_and_lambda_inverse(path: str) -> None:
    p = make_path(path)
    assert p.coeffs(0.0) == (1.0, 0.0)  # t = 0 is data
    alpha1, sigma1 = p.coeffs(1.0)
    assert alpha1 < 1e-2 and sigma1 == pytest.approx(1.0, abs=1e-4)  # t = 1 is (almost) pure noise
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    alpha, sigma = p.alpha_sigma(t)
    if path != "flow":
        torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    torch.testing.assert_close(p.t_from_lambda(torch.log(alpha / sigma)), t)
    # v is the time derivative of x_t up to a positive per-path speed: d x_t / dt = speed(t) * v
    diffusion = Diffusion(path=path, target="v")
    x0, eps, h = torch.randn(*SHAPE, dtype=torch.float64), torch.randn(*SHAPE, dtype=torch.float64), 1e-6
    for tt in (0.2, 0.7):
        dxdt = (diffusion.forward_noise(x0, tt + h, eps) - diffusion.forward_noise(x0, tt - h, eps)) / (2 * h)
        v = diffusion.target(x0, eps, tt)
        speed = (dxdt * v).sum() / (v * v).sum()
        torch.testing.assert_close(dxdt, speed * v, rtol=1e-5, atol=1e-6)
        assert speed > 0
        if path == "flow":
            assert float(speed) == pytest.approx(1.0)


@pytest.mark.parametrize("path", PATHS)
def test_time_grids(path: str) -> None:
    schedules = ("uniform",) if path == "flow" else ("uniform", "logsnr")
    for schedule in schedules:
        d = Diffusion(path=path, target="v", step_schedule=schedule)
        for steps in (1, 2, 5, 10):
            grid = d.time_grid(steps)
            assert len(grid) == steps + 1 and grid[0] == 1.0 and grid[-1] == 0.0
            assert all(a > b for a, b in itertools.pairwise(grid))
        if schedule == "logsnr":
            lam = [d.path.lam(t) for t in d.time_grid(6)[:-1]]
            gaps = [b - a for a, b in itertools.pairwise(lam)]
            assert max(gaps) - min(gaps) < 1e-9  # equal steps in log-SNR before the final jump to t = 0
    with pytest.raises(ValueError, match="steps"):
        Diffusion().time_grid(0)


def test_invalid_combinations_are_refused() -> None:
    with pytest.raises(ValueError, match="singular"):
        Diffusion(path="flow", target="eps")
    with pytest.raises(ValueError, match="euler"):
        Diffusion(path="vp_cosine", sampler="euler")
    with pytest.raises(ValueError, match="logsnr"):
        Diffusion(path="flow", target="v", step_schedule="logsnr")
    with pytest.raises(ValueError, match="unknown diffusion path"):
        Diffusion(path="ve")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampler"):
        Diffusion(sampler="heun")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta"):
        Diffusion(ddim_eta=1.5)
    d, gmm = Diffusion(), GaussianMixture()
    with pytest.raises(ValueError, match="min_std"):
        d.sample(gmm.model_fn(d), None, (2, *SHAPE), 3, stochastic=NoiseConfig(min_std=0.0))


def test_guidance_combine() -> None:
    pos, neg = torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)
    torch.testing.assert_close(guidance_combine(pos, neg, 1.5), 2.5 * pos - 1.5 * neg)
    assert torch.equal(guidance_combine(pos, pos.clone(), 3.0), pos)  # equal branches: exactly pos, any omega
    assert torch.equal(guidance_combine(pos, neg, 0.0), pos)


def _run(d: Diffusion, steps: int, n: int = 64, seed: int = 0, **kw: Any) -> DiffusionSample:
    """Sample the exact mixture model in float64 under a seed."""
    gmm = GaussianMixture()
    return d.sample(
        gmm.model_fn(d),
        None,
        (n, *SHAPE),
        steps,
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.float64,
        **kw,
    )


@pytest.mark.parametrize("path", PATHS)
def test_deterministic_samplers_converge_to_one_ode_solution(path: str) -> None:
    """Every deterministic sampler and every target discretises one probability-flow ODE: with the same initial
    noise their endpoints approach a common limit as the number of steps grows (DDIM at first order, DPM-Solver++
    at second order; medians over samples, since a few samples near the mode boundary flip mode at few steps)."""
    schedule = "uniform" if path == "flow" else "logsnr"
    reference = _run(Diffusion(path=path, target="x0", sampler="dpmpp_2m", step_schedule=schedule), 400).x0

    def error(d: Diffusion, steps: int) -> tuple[float, float]:
        per_sample = (_run(d, steps).x0 - reference).flatten(1).abs().max(1).values
        return float(per_sample.median()), float(per_sample.max())

    for target in TARGETS:
        if not _valid(path, target):
            continue
        for sampler in _samplers(path):
            d = Diffusion(path=path, target=target, sampler=sampler, step_schedule=schedule)
            (m5, _), (m20, _), (m100, max100) = error(d, 5), error(d, 20), error(d, 100)
            assert m100 < m20 < m5, (target, sampler, m5, m20, m100)
            if sampler == "dpmpp_2m":
                assert m20 < 0.03 and max100 < 0.01, (target, sampler, m20, max100)
            else:
                assert 2.5 < m20 / m100 < 8.0 and max100 < 0.07, (target, sampler, m20, m100, max100)


def _mixture_fit(x0: torch.Tensor) -> tuple[float, list[float]]:
    """Fraction of samples nearer the first component, and each component's spread about its mean."""
    gmm = GaussianMixture()
    first = (x0 - gmm.means[0]).flatten(1).norm(dim=1) < (x0 - gmm.means[1]).flatten(1).norm(dim=1)
    spreads = [float((x0[sel] - gmm.means[c]).std()) for c, sel in ((0, first), (1, ~first))]
    return float(first.double().mean()), spreads


@pytest.mark.parametrize("path", PATHS)
def test_ode_samples_follow_the_mixture(path: str) -> None:
    """Deterministic endpoints reproduce the mixture's weights and component spreads."""
    sampler = "euler" if path == "flow" else "dpmpp_2m"
    weight, spreads = _mixture_fit(_run(Diffusion(path=path, target="v", sampler=sampler), 50, n=1000, seed=1).x0)
    assert weight == pytest.approx(0.3, abs=0.04)
    assert spreads == pytest.approx([0.3, 0.5], rel=0.04)


@pytest.mark.parametrize("path", PATHS)
def test_stochastic_samples_approach_the_mixture(path: str) -> None:
    """Ancestral (DDPM) and floored stochastic sampling under-disperse at few steps (plug-in posterior means) and
    approach the mixture as the steps grow."""
    d = Diffusion(path=path, target="v", sampler="ddpm")
    coarse = _mixture_fit(_run(d, 20, n=1000, seed=1).x0)[1]
    fine_weight, fine = _mixture_fit(_run(d, 200, n=1000, seed=1).x0)
    floored = _mixture_fit(_run(d, 200, n=1000, seed=1, stochastic=NoiseConfig(eta=1.0, min_std=1e-3)).x0)[1]
    assert fine_weight == pytest.approx(0.3, abs=0.05)
    for c, true in enumerate((0.3, 0.5)):
        assert abs(fine[c] - true) < abs(coarse[c] - true)
        assert fine[c] == pytest.approx(true, rel=0.08)
        assert floored[c] == pytest.approx(fine[c], rel=0.03)


@pytest.mark.parametrize("path", PATHS)
def test_ddpm_equals_ddim_eta_one_and_flow_ddim_equals_euler(path: str) -> None:
    target = "v"
    a = _run(Diffusion(path=path, target=target, sampler="ddpm"), 7, seed=3).x0
    b = _run(Diffusion(path=path, target=target, sampler="ddim", ddim_eta=1.0), 7, seed=3).x0
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    if path == "flow":
        euler = _run(Diffusion(path=path, target=target, sampler="euler"), 7).x0
        ddim = _run(Diffusion(path=path, target=target, sampler="ddim"), 7).x0
        torch.testing.assert_close(euler, ddim, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", PATHS)
def test_stochastic_chain_and_logprob_recomputation(path: str) -> None:
    target = "x0" if path == "flow" else "eps"
    d = Diffusion(path=path, target=target)
    gmm = GaussianMixture()
    noise = NoiseConfig(eta=1.0, min_std=0.05)
    out = _run(d, 5, n=32, seed=4, stochastic=noise, return_chain=True)
    assert out.chain is not None and out.step_logp is not None
    assert out.chain.shape == (32, 6, *SHAPE) and out.step_logp.shape == (32, 5)
    assert torch.equal(out.chain[:, -1], out.x0)
    recomputed = d.chain_logprob(gmm.model_fn(d), out.chain, None, noise)
    torch.testing.assert_close(recomputed, out.step_logp, rtol=0, atol=1e-5)
    # the last step has no posterior noise, so its std is exactly the floor
    assert posterior_std(d.path, d.time_grid(5)[-2], 0.0) == 0.0
    # a different floor gives different log-probs (the floor is part of the policy)
    other = d.chain_logprob(gmm.model_fn(d), out.chain, None, NoiseConfig(eta=1.0, min_std=0.2))
    assert not torch.allclose(other[:, -1], out.step_logp[:, -1])
    # per-step log-density of a Gaussian step: -0.5 * sum z^2 - D log(std sqrt(2 pi)), with z ~ N(0, 1)
    dims = math.prod(SHAPE)
    std_last = noise.min_std
    z2 = -2 * (out.step_logp[:, -1] + dims * math.log(std_last * math.sqrt(2 * math.pi)))
    assert float(z2.mean() / dims) == pytest.approx(1.0, abs=0.15)


def test_determinism_under_a_seed() -> None:
    d = Diffusion(path="vp_linear", target="eps", sampler="ddpm")
    a, b, c = _run(d, 6, seed=7), _run(d, 6, seed=7), _run(d, 6, seed=8)
    assert torch.equal(a.x0, b.x0)
    assert not torch.equal(a.x0, c.x0)
    s1 = _run(d, 6, seed=7, stochastic=NoiseConfig())
    s2 = _run(d, 6, seed=7, stochastic=NoiseConfig())
    assert torch.equal(s1.x0, s2.x0) and torch.equal(s1.step_logp, s2.step_logp)


@pytest.mark.parametrize("path", PATHS)
def test_sampler_temperature(path: str) -> None:
    """Temperature 1 is the sampler as it was (bit for bit, every sampler and the stochastic chain); 0 makes every
    sampler's output independent of the seed; values between move the samples towards the noise-free plan."""
    for sampler in [*_samplers(path), *(["ddpm"] if path != "flow" else [])]:
        target = "v" if path == "flow" else "eps"
        d = Diffusion(path=path, target=target, sampler=sampler)
        for stochastic in (None, NoiseConfig()):
            today = _run(d, 6, seed=3, stochastic=stochastic)
            tempered = _run(d, 6, seed=3, stochastic=stochastic, temperature=1.0)
            assert torch.equal(today.x0, tempered.x0), (sampler, stochastic)
            if stochastic is not None:
                assert torch.equal(today.step_logp, tempered.step_logp)
            cold = [_run(d, 6, seed=seed, stochastic=stochastic, temperature=0.0).x0 for seed in (3, 4)]
            assert torch.equal(cold[0], cold[1]), f"{sampler}: temperature 0 still depends on the seed"
            warm = _run(d, 6, seed=3, stochastic=stochastic, temperature=0.5).x0
            assert not torch.equal(warm, today.x0) and not torch.equal(warm, cold[0])
    with pytest.raises(ValueError, match="temperature: expected a finite number >= 0"):
        _run(Diffusion(path=path, target="x0"), 2, temperature=-1.0)
