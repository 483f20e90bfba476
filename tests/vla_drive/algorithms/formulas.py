"""The algorithms' quantities written out again from their equations (algorithms.md), independently of the
package's sampler and loss code: only the network call ``head.predict`` is shared. The loss tests compare each
algorithm's loss with these on a fixed batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vla_drive.model.types import Cond, HeadLossRequest

LOGSNR_MIN = -10.0  # the head's truncated cosine path: log-SNR(1) = -10


def alpha_sigma(t: float | Tensor) -> tuple:
    """The vp_cosine path: alpha = cos(pi/2 u t), sigma = sin(pi/2 u t), u such that log-SNR(1) = -10."""
    u = (2.0 / math.pi) * math.atan(math.exp(-LOGSNR_MIN / 2.0))
    angle = 0.5 * math.pi * u * t
    if isinstance(angle, Tensor):
        return torch.cos(angle), torch.sin(angle)
    return math.cos(angle), math.sin(angle)


def regression_target(target: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """What a head with ``target`` regresses on at x_t = alpha x0 + sigma eps (v = alpha eps - sigma x0)."""
    if target == "x0":
        return x0
    if target == "eps":
        return eps
    return alpha * eps - sigma * x0


def to_x0_eps(target: str, x: Tensor, pred: Tensor, alpha: float, sigma: float) -> tuple[Tensor, Tensor]:
    """(x0, eps) from a prediction at x = alpha x0 + sigma eps, with alpha^2 + sigma^2 = 1 on the cosine path."""
    if target == "x0":
        return pred, (x - alpha * pred) / sigma
    if target == "eps":
        return (x - sigma * pred) / alpha, pred
    return alpha * x - sigma * pred, sigma * x + alpha * pred


def denoising_losses(head, x0: Tensor, cond: Cond, branch: str | None, t: Tensor, eps: Tensor) -> Tensor:
    """Per-sample MSE [B] of the head's prediction against its target at x_t = alpha x0 + sigma eps."""
    alpha, sigma = alpha_sigma(t.double())
    alpha, sigma = alpha[:, None, None], sigma[:, None, None]
    x_t = (alpha * x0.double() + sigma * eps.double()).float()
    pred = head.predict(x_t, t, cond, branch)
    goal = regression_target(head.config.target, x0.double(), eps.double(), alpha, sigma).float()
    return (pred.float() - goal).square().flatten(1).mean(1)


def chain_logprobs(
    head,
    chain: Tensor,
    cond: Cond,
    branch: str | None,
    eta: float,
    logprob_std: float,
    clamp: tuple[float, float],
    last_steps: int,
) -> Tensor:
    """log N(x_{k+1}; DDIM-eta mean, max(eta posterior std, floor)^2) per dimension, clamped, averaged: [B, K']."""
    steps = chain.shape[1] - 1
    out = []
    for k in range(steps - last_steps, steps):
        t, s = 1.0 - k / steps, 1.0 - (k + 1) / steps
        a_t, s_t = alpha_sigma(t)
        a_s, s_s = alpha_sigma(s)
        x = chain[:, k]
        pred = head.predict(x, torch.full((x.shape[0],), t), cond, branch).float()
        x0, eps = to_x0_eps(head.config.target, x, pred, a_t, s_t)
        posterior = math.sqrt(max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0) * s_s**2) / s_t
        std = eta * posterior
        mean = a_s * x0 + math.sqrt(max(s_s**2 - std**2, 0.0)) * eps
        scale = max(std, logprob_std)
        per_dim = -0.5 * ((chain[:, k + 1] - mean) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
        out.append(per_dim.clamp(*clamp).flatten(1).mean(1))
    return torch.stack(out, dim=1)


def flow_inverse(head, pair: Tensor, cond: Cond, branch: str | None, steps: int, p: float) -> Tensor:
    """GenPO's inverse coupled steps: undo the mixing, then y -= dt v(x), x -= dt v(y), from step K-1 down to 0."""
    x, y = pair[:, 0].float(), pair[:, 1].float()
    dt = 1.0 / steps
    for k in reversed(range(steps)):
        t = torch.full((x.shape[0],), 1.0 - k / steps)
        y = (y - (1 - p) * x) / p
        x = (x - (1 - p) * y) / p
        y = y - dt * head.predict(x, t, cond, branch).float()
        x = x - dt * head.predict(y, t, cond, branch).float()
    return torch.stack([x, y], dim=1)


def flow_log_likelihood(head, pair: Tensor, cond: Cond, branch: str | None, steps: int, p: float) -> Tensor:
    """log N(F^-1(pair); 0, I) - 2 d K log p."""
    z = flow_inverse(head, pair, cond, branch, steps, p)
    dims = z[0].numel()
    return -0.5 * z.square().flatten(1).sum(1) - 0.5 * dims * math.log(2 * math.pi) - dims * steps * math.log(p)


def ppo_term(ratio: Tensor, advantage: Tensor, clip) -> Tensor:
    return torch.maximum(-advantage * ratio, -advantage * ratio.clamp(1 - clip, 1 + clip))


class FixedNoise(torch.nn.Module):
    """The model with the (t, eps) of every denoising-loss request that leaves them unset taken from ``t``, ``eps``
    (in request order), so a loss that draws fresh noise can be compared with a formula."""

    def __init__(self, model: torch.nn.Module, draws: list[tuple[Tensor, Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.draws = list(draws)

    def forward(self, request):
        if isinstance(request, HeadLossRequest) and request.t is None:
            t, eps = self.draws.pop(0)
            request.t, request.eps = t, eps
        return self.model(request)
