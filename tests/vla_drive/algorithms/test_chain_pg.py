"""DiffGRPO and DPPO: per-step log-probabilities with split floors, the denoising discount, the clip schedule,
the BC term on chains of the frozen imitation policy, DiPOD, and each loss against the formula on a fixed batch."""

from __future__ import annotations

import math

import pytest
import torch

from tests.vla_drive.algorithms.formulas import FixedNoise, chain_logprobs, denoising_losses, ppo_term
from tests.vla_drive.algorithms.helpers import (
    call_of,
    make_algorithm,
    perturb_policy,
    random_cond,
    rollouts,
    tiny_model,
)
from vla_drive.algorithms.base import UpdateContext
from vla_drive.model.types import Guidance, SampleRequest
from vla_drive.train.rl import prepare_policy


def _prepared(name: str, **settings):
    model = tiny_model()
    algorithm = make_algorithm(name, samples_per_scene=4, **settings)
    prepare_policy(model, algorithm, seed=0)
    prepared = rollouts(model, algorithm, random_cond(model, scenes=3))
    return model, algorithm, prepared


def test_defaults_are_the_public_ones():
    grpo = make_algorithm("diffgrpo").config
    assert (grpo.samples_per_scene, grpo.rollout_steps, grpo.eta, grpo.sampling_std, grpo.logprob_std) == (
        8,
        5,
        1.0,
        0.04,
        0.1,
    )
    assert (grpo.randn_clip, grpo.logprob_min, grpo.logprob_max, grpo.gamma_denoise, grpo.bc_weight) == (
        5.0,
        -5.0,
        2.0,
        0.6,
        0.1,
    )
    assert grpo.dipod_lambda == 0.0 and grpo.update_epochs == 1
    dppo = make_algorithm("dppo").config
    assert (dppo.clip, dppo.clip_base, dppo.clip_rate, dppo.gamma_denoise) == (0.01, 0.01, 3.0, 0.99)
    assert (dppo.sampling_std, dppo.logprob_std, dppo.randn_clip, dppo.update_epochs, dppo.target_kl) == (
        0.1,
        0.1,
        3.0,
        5,
        1.0,
    )


def test_denoising_discount_and_clip_schedule():
    algorithm = make_algorithm("dppo", rollout_steps=6, trained_steps=4, clip=0.2, clip_base=0.01, clip_rate=3.0)
    torch.testing.assert_close(algorithm.step_discount("cpu"), torch.tensor([0.99**3, 0.99**2, 0.99, 1.0]))
    u = torch.arange(4) / 3
    expected = 0.01 + (0.2 - 0.01) * (torch.exp(3.0 * u) - 1) / (math.exp(3.0) - 1)
    torch.testing.assert_close(algorithm.clip_schedule("cpu"), expected)
    assert float(algorithm.clip_schedule("cpu")[0]) == pytest.approx(0.01)  # the noisiest step: the base clip
    assert float(algorithm.clip_schedule("cpu")[-1]) == pytest.approx(0.2)  # the cleanest: the full clip


def test_rollout_chains_keep_their_stored_logprobs_and_noise_clip():
    model, algorithm, prepared = _prepared("diffgrpo", rollout_steps=3, sampling_std=0.1, logprob_std=0.1)
    batch = prepared.batch
    assert batch.sample.chain.shape == (12, 4, 8, 3) and batch.sample.chain.dtype == torch.float32
    with torch.no_grad():
        logp = algorithm.policy_logprobs(model, batch, torch.arange(12))
        formula = chain_logprobs(
            model.head, batch.sample.chain, batch.sample_cond(torch.arange(12)), "policy", 1.0, 0.1, (-5.0, 2.0), 3
        )
    torch.testing.assert_close(logp, batch.sample.step_logp, atol=1e-5, rtol=1e-5)  # equal floors: stored = recomputed
    torch.testing.assert_close(logp, formula, atol=1e-4, rtol=1e-4)


def test_reference_chains_come_from_the_frozen_imitation_policy():
    model, algorithm, prepared = _prepared("diffgrpo", rollout_steps=3)
    perturb_policy(model, std=0.5)
    batch = prepared.batch
    generator = torch.Generator().manual_seed(4)
    algorithm.sample_reference(batch, UpdateContext(call_of(model), None, generator))
    noise = algorithm.config.noise()
    with torch.no_grad(), model.head.adapters_disabled():  # the base alone: the imitation policy
        expected = model(SampleRequest(batch.cond, 1, 3, None, noise, True, torch.Generator().manual_seed(4))).chain
    assert batch.extras["reference_chain"].shape == (3, 4, 8, 3)
    torch.testing.assert_close(batch.extras["reference_chain"], expected)


@pytest.mark.parametrize("dipod", [0.0, 0.05])
def test_diffgrpo_loss_is_reinforce_with_discount_bc_and_dipod(dipod):
    model, algorithm, prepared = _prepared("diffgrpo", rollout_steps=3, dipod_lambda=dipod, bc_weight=0.3)
    perturb_policy(model)
    batch = prepared.batch
    rows = torch.tensor([1, 4, 6, 9, 10])
    generator = torch.Generator().manual_seed(5)
    t, eps = torch.rand(5, generator=generator), torch.randn(5, 8, 3, generator=generator)
    loss, metrics = algorithm.loss(FixedNoise(model, [(t, eps)]), batch, rows)
    with torch.no_grad():
        cond = batch.sample_cond(rows)
        logp = chain_logprobs(model.head, batch.sample.chain[rows], cond, "policy", 1.0, 0.1, (-5.0, 2.0), 3)
        discount = torch.tensor([0.6**2, 0.6, 1.0])
        pg = -(logp * batch.extras["advantage"][rows, None] * discount).mean()
        scenes = torch.unique(batch.group_index[rows])
        reference = batch.extras["reference_chain"][scenes]
        bc = -chain_logprobs(
            model.head, reference, batch.cond.select(scenes), "policy", 1.0, 0.1, (-5.0, 2.0), 3
        ).mean()
        expected = pg + 0.3 * bc
        if dipod:
            expected = (
                expected + dipod * denoising_losses(model.head, batch.sample.x0[rows], cond, "policy", t, eps).mean()
            )
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert ("dipod_loss" in metrics) == bool(dipod)


def test_dppo_loss_is_the_clipped_surrogate_over_the_last_steps():
    model, algorithm, prepared = _prepared(
        "dppo", rollout_steps=4, trained_steps=2, clip=0.05, clip_base=0.01, minibatches=2, bc_weight=0.2
    )
    batch = prepared.batch
    old = batch.extras["old_logp"].clone()
    assert old.shape == (12, 2)
    perturb_policy(model, std=0.2)
    rows = prepared.layout[0][1]
    loss, metrics = algorithm.loss(model, batch, rows)
    with torch.no_grad():
        cond = batch.sample_cond(rows)
        new = chain_logprobs(model.head, batch.sample.chain[rows], cond, "policy", 1.0, 0.1, (-5.0, 2.0), 2)
        ratio = torch.exp(new - old[rows])
        advantage = batch.extras["advantage"][rows, None] * torch.tensor([0.99, 1.0])
        pg = ppo_term(ratio, advantage, algorithm.clip_schedule("cpu")).mean()
        scenes = torch.unique(batch.group_index[rows])
        reference = batch.extras["reference_chain"][scenes]
        bc = -chain_logprobs(
            model.head, reference, batch.cond.select(scenes), "policy", 1.0, 0.1, (-5.0, 2.0), 2
        ).mean()
    assert float(loss.detach()) == pytest.approx(float(pg + 0.2 * bc), rel=1e-4, abs=1e-6)
    kl = ((ratio - 1) - torch.log(ratio)).mean()
    assert metrics["approx_kl"] == pytest.approx(float(kl), rel=1e-3, abs=1e-7) and metrics["approx_kl"] > 0


def test_target_kl_stops_the_iteration_on_every_rank_alike():
    algorithm = make_algorithm("dppo", target_kl=0.1)
    algorithm.begin_iteration()
    algorithm.after_step({"approx_kl": 0.05})
    assert not algorithm.stop_requested()
    algorithm.after_step({"approx_kl": 0.2})  # the trainer's metrics are the mean over ranks
    assert algorithm.stop_requested()
    algorithm.begin_iteration()
    assert not algorithm.stop_requested()
    assert make_algorithm("fpo").update_spec().target_kl is None


def test_policy_sampling_uses_the_policy_branch():
    algorithm = make_algorithm("dppo")
    spec = algorithm.rollout_spec()
    assert spec.guidance == Guidance("none", branch="policy") and spec.return_chain and spec.stochastic is not None
    noise = spec.stochastic
    assert (noise.min_std, noise.logprob_std_floor, noise.randn_clip, noise.logprob_clamp, noise.reduction) == (
        0.1,
        0.1,
        3.0,
        (-5.0, 2.0),
        "mean",
    )
