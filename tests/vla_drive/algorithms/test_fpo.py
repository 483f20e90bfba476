"""FPO (+ DiPOD): stored Monte-Carlo pairs, old losses that the loss reproduces exactly at the old weights, and the
ratio of flow-matching losses in both modes against the formula."""

from __future__ import annotations

import pytest
import torch

from tests.vla_drive.algorithms.formulas import FixedNoise, denoising_losses, ppo_term
from tests.vla_drive.algorithms.helpers import make_algorithm, perturb_policy, random_cond, rollouts, tiny_model
from vla_drive.train.rl import prepare_policy


def _prepared(**settings):
    model = tiny_model()
    algorithm = make_algorithm("fpo", samples_per_scene=4, rollout_steps=3, mc_pairs=3, minibatches=2, **settings)
    prepare_policy(model, algorithm, seed=0)
    return model, algorithm, rollouts(model, algorithm, random_cond(model, scenes=3))


def test_defaults_are_the_public_ones():
    config = make_algorithm("fpo").config
    assert (config.mc_pairs, config.clip, config.ratio, config.dipod_lambda) == (8, 0.05, "mean", 0.0)


def test_old_losses_are_the_stored_pairs_losses_and_the_difference_is_zero_at_the_old_weights():
    model, algorithm, prepared = _prepared()
    batch = prepared.batch
    t, eps, old = batch.extras["mc_t"], batch.extras["mc_eps"], batch.extras["old_loss"]
    assert t.shape == (12, 3) and eps.shape == (12, 3, 8, 3) and old.shape == (12, 3)
    assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
    with torch.no_grad():
        for j in range(3):
            formula = denoising_losses(
                model.head, batch.sample.x0, batch.sample_cond(torch.arange(12)), "policy", t[:, j], eps[:, j]
            )
            torch.testing.assert_close(old[:, j], formula, atol=1e-5, rtol=1e-5)
    for rows in prepared.layout[0]:
        _, metrics = algorithm.loss(model, batch, rows)
        assert metrics["approx_kl"] == 0.0 and metrics["ratio_mean"] == 1.0


@pytest.mark.parametrize("mode", ["mean", "per_pair"])
@pytest.mark.parametrize("dipod", [0.0, 0.05])
def test_loss_is_ppo_on_the_ratio_of_flow_matching_losses(mode, dipod):
    model, algorithm, prepared = _prepared(ratio=mode, dipod_lambda=dipod, clip=0.02)
    batch = prepared.batch
    perturb_policy(model, std=0.3)
    rows = prepared.layout[1][0]
    generator = torch.Generator().manual_seed(6)
    fresh = (torch.rand(rows.numel(), generator=generator), torch.randn(rows.numel(), 8, 3, generator=generator))
    loss, metrics = algorithm.loss(FixedNoise(model, [fresh]), batch, rows)
    with torch.no_grad():
        x0, cond = batch.sample.x0[rows], batch.sample_cond(rows)
        t, eps = batch.extras["mc_t"][rows], batch.extras["mc_eps"][rows]
        new = torch.stack([denoising_losses(model.head, x0, cond, "policy", t[:, j], eps[:, j]) for j in range(3)], 1)
        difference = batch.extras["old_loss"][rows] - new
        advantage = batch.extras["advantage"][rows]
        if mode == "mean":
            expected = ppo_term(torch.exp(difference.mean(1)), advantage, 0.02).mean()
        else:
            expected = ppo_term(torch.exp(difference), advantage[:, None], 0.02).mean()
        if dipod:
            expected = expected + dipod * denoising_losses(model.head, x0, cond, "policy", *fresh).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert metrics["clip_fraction"] > 0, "the perturbation should push some ratios out of the clip range"
