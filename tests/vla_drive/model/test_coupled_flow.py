"""GenPO's coupled flow (algorithms.md 7.5): exact inverse in float64, log-det = 2dK log p, exact log-likelihood,
trajectory = (x + y) / 2, its imitation loss, and loading by head kind."""

from __future__ import annotations

import math

import pytest
import torch

from vla_drive.model.coupled_flow import CoupledFlowError, CoupledFlowHead
from vla_drive.model.head import HeadConfig
from vla_drive.model.heads import build_head
from vla_drive.model.types import Cond, Guidance, NoiseConfig


def _head(mixing: float = 0.9, seed: int = 0) -> CoupledFlowHead:
    torch.manual_seed(seed)
    config = HeadConfig(
        kind="coupled_flow", hidden_size=32, depth=2, num_heads=4, cond_dim=16, sample_steps=4, mixing=mixing
    )
    head = build_head(config)
    with torch.no_grad():  # a non-trivial velocity field (a fresh adaLN-Zero head outputs exactly 0)
        torch.nn.init.normal_(head.final_out.weight, std=0.5)
        for block in head.blocks:
            torch.nn.init.normal_(block.modulation.weight, std=0.1)
    return head


def _cond(rows: int = 3, seed: int = 0, dtype=torch.float32) -> Cond:
    generator = torch.Generator().manual_seed(seed)
    return Cond(
        torch.randn(rows, 5, 16, generator=generator, dtype=dtype),
        torch.ones(rows, 5, dtype=torch.bool),
        torch.randn(rows, 8, generator=generator, dtype=dtype),
    )


def test_build_head_picks_the_coupled_flow_by_kind():
    assert isinstance(_head(), CoupledFlowHead)
    assert not isinstance(build_head(HeadConfig(cond_dim=16, hidden_size=32, num_heads=4)), CoupledFlowHead)
    with pytest.raises(ValueError, match="mixing must be in \\(0, 1\\)"):
        HeadConfig(kind="coupled_flow", mixing=1.0)


@torch.no_grad()
def test_inverse_of_forward_is_the_identity_in_float64():
    head = _head().double()
    cond = _cond(dtype=torch.float64)
    velocity = head._velocity(cond, None)
    z = torch.randn(3 * 2, 2, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pair = head.flow(z, velocity, steps=5)
    assert (pair - z).abs().max() > 0.1, "the flow must actually move the latent for the test to mean anything"
    back = head.inverse(pair, velocity, steps=5)
    assert float((back - z).abs().max()) < 1e-5


def test_log_det_is_2dK_log_p_and_matches_the_jacobian():
    head = _head(mixing=0.8).double()
    cond = _cond(rows=1, dtype=torch.float64)
    velocity = head._velocity(cond, None)
    steps = 3
    z = torch.randn(1, 2, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    jacobian = torch.autograd.functional.jacobian(
        lambda v: head.flow(v.view(1, 2, 8, 3), velocity, steps).flatten(), z.flatten()
    )
    sign, logabsdet = torch.linalg.slogdet(jacobian)
    expected = 2 * 24 * steps * math.log(0.8)
    assert head.log_det(steps) == pytest.approx(expected)
    assert float(sign) > 0 and float(logabsdet) == pytest.approx(expected, abs=1e-8)


def test_log_likelihood_is_the_change_of_variables_and_sampling_stores_the_latent():
    head = _head()
    cond = _cond()
    out = head.sample(cond, 2, steps=4, generator=torch.Generator().manual_seed(3))
    assert out.pair.shape == (6, 2, 8, 3) and out.latent.shape == (6, 2, 8, 3)
    torch.testing.assert_close(out.x0, (out.pair[:, 0] + out.pair[:, 1]) / 2)
    torch.testing.assert_close(out.traj, out.x0)  # no normaliser attached: model space is env space
    z, logp = head.log_likelihood(out.pair, cond.repeat(2), steps=4)
    torch.testing.assert_close(z, out.latent, atol=1e-4, rtol=1e-4)
    expected = -0.5 * (out.latent**2).flatten(1).sum(1) - 24 * math.log(2 * math.pi) - 2 * 24 * 4 * math.log(0.9)
    torch.testing.assert_close(logp, expected, atol=1e-3, rtol=1e-4)
    assert logp.dtype == torch.float32


def test_per_scene_generators_make_samples_independent_of_the_batch():
    head = _head()
    cond = _cond()
    full = head.sample(cond, 2, generator=[torch.Generator().manual_seed(s) for s in range(3)])
    alone = head.sample(cond.select(torch.tensor([1])), 2, generator=[torch.Generator().manual_seed(1)])
    torch.testing.assert_close(full.pair[2:4], alone.pair, atol=1e-5, rtol=1e-5)


def test_imitation_loss_is_the_nll_per_dimension_of_the_diagonal_pair_and_trains():
    head = _head()
    cond = _cond()
    x0 = torch.randn(3, 8, 3, generator=torch.Generator().manual_seed(4))
    _, logp = head.log_likelihood(torch.stack([x0, x0], 1), cond, steps=head.config.sample_steps)
    torch.testing.assert_close(head.imitation_loss(x0, cond), -logp / 48)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = head.imitation_loss(x0, cond).mean()
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first - 0.1, f"the exact NLL should fall: {first:.3f} -> {float(loss.detach()):.3f}"


def test_branches_start_as_the_base_and_guidance_selects_them():
    head = _head()
    head.add_branches(["policy"], seed=0)
    cond = _cond()
    base = head.sample(cond, 2, generator=torch.Generator().manual_seed(5))
    policy = head.sample(
        cond, 2, guidance=Guidance("none", branch="policy"), generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(policy.pair, base.pair)


def test_what_a_flow_does_not_have_is_refused_clearly():
    head = _head()
    with pytest.raises(CoupledFlowError, match="stochastic chains are the diffusion head's"):
        head.sample(_cond(), 1, stochastic=NoiseConfig())
    with pytest.raises(CoupledFlowError, match=r"needs model\.head\.kind 'diffusion'"):
        head.denoise_loss_branches(torch.zeros(3, 8, 3), _cond(), ("policy",))
