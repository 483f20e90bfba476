"""GenPO's coupled flow (Ding et al., NeurIPS 2025): an exactly invertible flow over the doubled action (x, y).

The velocity field is the DiT trunk of :class:`~vla_drive.model.head.TrajectoryHead` (same blocks, same condition
handling, same LoRA branches), applied to one half to move the other. With K steps, dt = 1 / K and the mixing
p in (0, 1), step k maps (x, y) to

    x~ = x + dt v(y, t_k);   y~ = y + dt v(x~, t_k);   x' = p x~ + (1 - p) y~;   y' = p y~ + (1 - p) x'

and runs backwards exactly (``inverse``). The two coupling updates preserve volume and each mixing step scales it
by p^(2d) (d = 8 x 3 per half), so log |det dF/dz| = 2 d K log p is a constant and the exact log-likelihood of a
pair is log N(F^-1(pair); 0, I) - 2 d K log p. The trajectory is (x + y) / 2. GenPO runs its time from 0 (noise) to
1 (action); the trunk is fed t = 1 - k / K so that, as everywhere in this package, t = 1 is noise.

Imitation trains the exact negative log-likelihood of the logged trajectory on the diagonal pair (a, a)
(:meth:`CoupledFlowHead.imitation_loss`, nats per dimension).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from vla_drive.model.diffusion import Generators, gaussian_noise
from vla_drive.model.head import HeadConfig, TrajectoryHead
from vla_drive.model.types import Cond, Guidance, NoiseConfig, SampleOut

Velocity = Callable[[Tensor, float], Tensor]


class CoupledFlowError(ValueError):
    """A request that the coupled-flow head cannot serve (it has no denoising loss and no stochastic chain)."""


class CoupledFlowHead(TrajectoryHead):
    """The invertible coupled flow on the DiT trunk; ``sample`` / ``inverse`` / ``log_likelihood`` / ``log_det``."""

    def __init__(self, config: HeadConfig) -> None:
        if config.kind != "coupled_flow":
            raise ValueError(f"CoupledFlowHead: HeadConfig.kind must be 'coupled_flow', got {config.kind!r}")
        super().__init__(config)

    @property
    def half_dim(self) -> int:
        """d: the dimension of one half of the pair (poses x pose dims)."""
        return self.config.poses * self.config.pose_dim

    def log_det(self, steps: int) -> float:
        """log |det dF/dz| = 2 d K log p (the coupling updates preserve volume; each mixing step scales by p^2d)."""
        return 2.0 * self.half_dim * steps * math.log(self.config.mixing)

    def _state_dtype(self) -> torch.dtype:
        return torch.promote_types(self.pos_embed.dtype, torch.float32)

    def _velocity(self, cond: Cond, guidance: Guidance | None) -> Velocity:
        model_fn, _ = self._guided_model(cond, guidance)  # the condition context is computed once
        return lambda half, t: model_fn(half, t, None)

    def flow(self, z: Tensor, velocity: Velocity, steps: int) -> Tensor:
        """F: latents [R, 2, H, D] to pairs (x, y), K coupled steps."""
        p, dt = self.config.mixing, 1.0 / steps
        x, y = z[:, 0], z[:, 1]
        for k in range(steps):
            t = 1.0 - k / steps
            x = x + dt * velocity(y, t).to(x.dtype)
            y = y + dt * velocity(x, t).to(y.dtype)
            x = p * x + (1.0 - p) * y
            y = p * y + (1.0 - p) * x
        return torch.stack([x, y], dim=1)

    def inverse(self, pair: Tensor, velocity: Velocity, steps: int) -> Tensor:
        """F^-1: pairs [R, 2, H, D] back to their latents, the steps undone in reverse order."""
        p, dt = self.config.mixing, 1.0 / steps
        x, y = pair[:, 0], pair[:, 1]
        for k in reversed(range(steps)):
            t = 1.0 - k / steps
            y = (y - (1.0 - p) * x) / p
            x = (x - (1.0 - p) * y) / p
            y = y - dt * velocity(x, t).to(y.dtype)
            x = x - dt * velocity(y, t).to(x.dtype)
        return torch.stack([x, y], dim=1)

    def log_likelihood(
        self, pair: Tensor, cond: Cond, steps: int, guidance: Guidance | None = None
    ) -> tuple[Tensor, Tensor]:
        """(z = F^-1(pair), exact log pi(pair | cond) [R] in float32); one condition row per pair (or r per row)."""
        z = self.inverse(pair.to(self._state_dtype()), self._velocity(cond, guidance), steps)
        dims = z[0].numel()
        log_normal = -0.5 * z.float().square().flatten(1).sum(1) - 0.5 * dims * math.log(2.0 * math.pi)
        return z, log_normal - self.log_det(steps)

    def imitation_loss(self, x0: Tensor, cond: Cond, branch: str | None = None) -> Tensor:
        """The exact negative log-likelihood [B] of the diagonal pair (x0, x0), in nats per dimension."""
        pair = torch.stack([x0, x0], dim=1)
        guidance = Guidance("none", branch=branch) if branch not in (None, "base") else None
        _, logp = self.log_likelihood(pair, cond, self.config.sample_steps, guidance)
        return -logp / pair[0].numel()

    def sample(
        self,
        cond: Cond,
        n: int = 1,
        steps: int | None = None,
        guidance: Guidance | None = None,
        stochastic: NoiseConfig | None = None,
        return_chain: bool = False,
        generator: Generators = None,
        temperature: float = 1.0,
    ) -> SampleOut:
        """n pairs per condition row from z ~ N(0, I) scaled by ``temperature`` (exact, no stochastic chain);
        ``x0`` = (x + y) / 2."""
        if stochastic is not None or return_chain:
            raise CoupledFlowError(
                "the coupled-flow head samples exactly from its latent; stochastic chains are the diffusion head's"
            )
        if n < 1:
            raise ValueError(f"CoupledFlowHead.sample: n must be >= 1, got {n}")
        steps = self.config.sample_steps if steps is None else steps
        was_training = self.training
        self.eval()
        try:
            shape = (cond.batch_size * n, 2, self.config.poses, self.config.pose_dim)
            z = gaussian_noise(shape, generator, cond.tokens.device, self._state_dtype())
            if temperature != 1.0:
                z = z * temperature
            pair = self.flow(z, self._velocity(cond, guidance), steps)
        finally:
            self.train(was_training)
        x0 = pair.mean(dim=1)
        traj = self.normalizer.denormalize(x0) if self.normalizer is not None else x0
        return SampleOut(traj=traj, x0=x0, pair=pair, latent=z)

    # ------------------------------------------------------------------------------- what a flow does not have
    def denoise_loss(self, *args, **kwargs) -> Tensor:
        raise CoupledFlowError(
            "the coupled-flow head has no denoising loss (imitation trains its exact likelihood); this algorithm "
            "needs model.head.kind 'diffusion'"
        )

    def denoise_loss_branches(self, *args, **kwargs) -> Tensor:
        return self.denoise_loss()

    def chain_logprob(self, *args, **kwargs) -> Tensor:
        raise CoupledFlowError(
            "the coupled-flow head has no stochastic denoising chain; this algorithm needs model.head.kind 'diffusion'"
        )
