"""The typed model requests (every pass an algorithm needs, run by ``DrivingVLA.forward``) and the split stochastic
sampling settings: clipped noise, the log-probabilities' own floor / clamp / mean, the last K' steps, float32
chains, stored log-probs reproduced, and the same numbers in ``prepare`` and under the loss's autocast (bf16)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.vla_drive.algorithms.helpers import random_cond, tiny_model
from vla_drive.model.diffusion import Diffusion
from vla_drive.model.types import (
    ChainLogProbRequest,
    FlowLikelihoodRequest,
    Guidance,
    HeadLossRequest,
    NoiseConfig,
    SampleRequest,
)

POLICY = Guidance("none", branch="policy")


@pytest.fixture(scope="module")
def model():
    model = tiny_model()
    model.head.add_branches(["policy"], seed=0)
    with torch.no_grad():  # a policy that differs from the base
        for _, layer in model.head.lora_layers():
            layer.lora_B["policy"].normal_(std=0.05, generator=torch.Generator().manual_seed(1))
    return model


def _linear_model_fn(x, t, _):
    return 0.5 * x + 0.1  # an x0 prediction that depends on x: every step's mean is non-trivial


def test_sampler_noise_is_clipped_and_logprobs_follow_their_own_settings():
    diffusion = Diffusion("vp_cosine", "x0", "ddim")
    noise = NoiseConfig(
        eta=1.0, min_std=0.02, logprob_min_std=0.3, randn_clip=0.5, logprob_clamp=(-1.0, 0.5), reduction="mean"
    )
    generator = torch.Generator().manual_seed(0)
    out = diffusion.sample(
        _linear_model_fn, None, (4, 8, 3), 4, stochastic=noise, return_chain=True, generator=generator
    )
    assert out.chain.dtype == torch.float32 and out.step_logp.shape == (4, 4)
    times = diffusion.time_grid(4)
    for k in range(4):
        x = out.chain[:, k]
        x0, eps = diffusion.to_x0_eps(_linear_model_fn(x, None, None), x, times[k])
        mean, std = diffusion.ddim_mean_std(x0, eps, times[k], times[k + 1], 1.0)
        sampling_std = max(std, 0.02)
        assert float(((out.chain[:, k + 1] - mean) / sampling_std).abs().max()) <= 0.5 + 1e-4  # the randn clip
        z = (out.chain[:, k + 1] - mean) / max(std, 0.3)
        per_dim = (-0.5 * z**2 - math.log(max(std, 0.3)) - 0.5 * math.log(2 * math.pi)).clamp(-1.0, 0.5)
        torch.testing.assert_close(out.step_logp[:, k], per_dim.flatten(1).mean(1), atol=1e-5, rtol=1e-5)
    recomputed = diffusion.chain_logprob(_linear_model_fn, out.chain, None, noise)
    torch.testing.assert_close(recomputed, out.step_logp, atol=1e-6, rtol=1e-6)
    last = diffusion.chain_logprob(_linear_model_fn, out.chain, None, noise, last_steps=2)
    torch.testing.assert_close(last, out.step_logp[:, 2:], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="last_steps must be in"):
        diffusion.chain_logprob(_linear_model_fn, out.chain, None, noise, last_steps=5)


def test_stored_step_logprobs_are_reproduced_through_the_forward(model):
    cond = random_cond(model)
    noise = NoiseConfig(min_std=0.04, logprob_min_std=0.04, randn_clip=5.0, logprob_clamp=(-5.0, 2.0), reduction="mean")
    with torch.no_grad():
        out = model(SampleRequest(cond, 4, 5, POLICY, noise, True, torch.Generator().manual_seed(0)))
        logp = model(ChainLogProbRequest(out.chain, cond.repeat(4), noise, "policy"))
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, out.step_logp, atol=1e-5, rtol=1e-5)


def test_tiled_pairs_give_the_loss_of_each_pair(model):
    cond = random_cond(model)
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 8, 3, generator=generator)
    t = torch.rand(3, 4, generator=generator)
    eps = torch.randn(3, 4, 8, 3, generator=generator)
    with torch.no_grad():
        tiled = model(HeadLossRequest(x0, cond, ("policy", None), t=t, eps=eps))
        assert tiled.shape == (2, 3, 4)
        for j in range(4):
            single = model(HeadLossRequest(x0, cond, ("policy", None), t=t[:, j], eps=eps[:, j]))
            torch.testing.assert_close(tiled[:, :, j], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
def test_prepare_and_loss_compute_the_same_numbers_under_autocast(model, weights):
    """``prepare`` runs without autocast, the trainer's loss under it (bf16 mixed precision), or with bf16 weights
    (DeepSpeed bf16): the comparable requests give bit-identical results, so every ratio is exactly 1 at the old
    weights."""
    import copy

    local = copy.deepcopy(model)
    if weights == "bfloat16":
        local.head.to(torch.bfloat16)
    cond = random_cond(local)
    noise = NoiseConfig(min_std=0.1, reduction="mean", logprob_clamp=(-5.0, 2.0))
    with torch.no_grad():
        out = local(SampleRequest(cond, 2, 4, POLICY, noise, True, torch.Generator().manual_seed(0)))
    generator = torch.Generator().manual_seed(3)
    t, eps = torch.rand(6, 3, generator=generator), torch.randn(6, 3, 8, 3, generator=generator)
    requests = [
        ChainLogProbRequest(out.chain, cond.repeat(2), noise, "policy", last_steps=3),
        HeadLossRequest(out.x0, cond.repeat(2), ("policy",), t=t, eps=eps, exact=True),
    ]
    with torch.no_grad():
        old = [local(request) for request in requests]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new = [local(request) for request in requests]
    for before, after in zip(old, new, strict=True):
        assert torch.equal(before, after), f"max difference {float((before.float() - after.float()).abs().max())}"
        assert torch.equal(torch.exp(after.float() - before.float()), torch.ones_like(after.float()))


def test_flow_likelihoods_are_identical_in_prepare_and_under_autocast():
    model = tiny_model("coupled_flow")
    cond = random_cond(model)
    with torch.no_grad():
        out = model(SampleRequest(cond, 2, 3, None, None, False, torch.Generator().manual_seed(0)))
        request = FlowLikelihoodRequest(out.pair, cond.repeat(2), steps=3)
        z_old, logp_old = model(request)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_new, logp_new = model(request)
    assert torch.equal(logp_old, logp_new) and torch.equal(z_old, z_new)
    torch.testing.assert_close(z_old, out.latent, atol=1e-4, rtol=1e-4)


def test_new_branches_start_as_the_base_and_only_they_train(model):
    fresh = tiny_model()
    cond = random_cond(fresh)
    base = fresh.head.sample(cond, 2, generator=torch.Generator().manual_seed(4)).x0
    fresh.head.add_branches(["policy"], seed=7)
    assert fresh.head.config.branches == ("pos", "neg", "policy")
    policy = fresh.head.sample(cond, 2, guidance=POLICY, generator=torch.Generator().manual_seed(4)).x0
    torch.testing.assert_close(policy, base)
    fresh.head.train_only(["policy"])
    trainable = {name for name, p in fresh.head.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith(".policy") for name in trainable)
    again = tiny_model()
    again.head.add_branches(["policy"], seed=7)  # the same seed draws the same adapters (every rank alike)
    for (_, a), (_, b) in zip(fresh.head.lora_layers(), again.head.lora_layers(), strict=True):
        assert torch.equal(a.lora_A["policy"], b.lora_A["policy"])
