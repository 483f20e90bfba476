"""AWR and RWR: the weights as irom-lab/dppo defines them and the weighted denoising loss, against the formula."""

from __future__ import annotations

import math

import pytest
import torch

from tests.vla_drive.algorithms.formulas import FixedNoise, denoising_losses
from tests.vla_drive.algorithms.helpers import make_algorithm, perturb_policy, random_cond, rollouts, tiny_model
from vla_drive.algorithms.advantages import group_advantage
from vla_drive.train.rl import prepare_policy


@pytest.fixture(params=["awr", "rwr"])
def setup(request):
    model = tiny_model()
    algorithm = make_algorithm(request.param, samples_per_scene=4, rollout_steps=3, beta=2.0, max_weight=3.0)
    prepare_policy(model, algorithm, seed=0)
    perturb_policy(model)
    prepared = rollouts(model, algorithm, random_cond(model, scenes=3))
    return request.param, model, algorithm, prepared.batch


def test_weights_are_capped_exponentials_of_the_right_signal(setup):
    name, _, _, batch = setup
    if name == "awr":
        signal, _ = group_advantage(batch.reward, batch.group_index)
    else:  # the reward standardised over all of the rank's rollouts, no per-scene baseline
        signal = (batch.reward - batch.reward.mean()) / (batch.reward.std(unbiased=False) + 1e-3)
        assert float(signal.view(3, 4).mean(1).abs().max()) > 1e-3, "RWR keeps the differences between scenes"
    expected = torch.exp(2.0 * signal).clamp(max=3.0)
    torch.testing.assert_close(batch.extras["weight"], expected)
    assert float(batch.extras["weight"].max()) <= 3.0
    defaults = make_algorithm(name).config
    assert (defaults.beta, defaults.max_weight) == (10.0, 100.0)
    assert defaults.update_epochs == (16 if name == "rwr" else 1)


def test_loss_is_the_weighted_denoising_loss_of_the_policy_branch(setup):
    _, model, algorithm, batch = setup
    rows = torch.tensor([0, 5, 7, 2, 11])
    generator = torch.Generator().manual_seed(9)
    t, eps = torch.rand(5, generator=generator), torch.randn(5, 8, 3, generator=generator)
    loss, metrics = algorithm.loss(FixedNoise(model, [(t, eps)]), batch, rows)
    with torch.no_grad():
        losses = denoising_losses(model.head, batch.sample.x0[rows], batch.sample_cond(rows), "policy", t, eps)
    expected = (batch.extras["weight"][rows] * losses).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert metrics["weight_mean"] == pytest.approx(float(batch.extras["weight"][rows].mean()), rel=1e-6)


def test_failed_samples_get_no_weight():
    model = tiny_model()
    algorithm = make_algorithm("awr", samples_per_scene=4, rollout_steps=2)
    prepare_policy(model, algorithm, seed=0)
    prepared = rollouts(model, algorithm, random_cond(model, scenes=2))
    batch = prepared.batch
    batch.reward[:4] = float("nan")
    batch = algorithm.prepare(batch)
    assert torch.equal(batch.extras["weight"][:4], torch.zeros(4)) and bool((batch.extras["weight"][4:] > 0).all())
    loss, _ = algorithm.loss(model, batch, torch.arange(4))
    assert float(loss.detach()) == 0.0 and math.isfinite(float(loss.detach()))
