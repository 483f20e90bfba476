"""GenPO: old log-likelihoods from the exact inverse, the log-ratio 1/2|z_old|^2 - 1/2|z|^2 (0 at the old weights),
the loss with entropy and compression against the formula, and the KL-adaptive learning rate."""

from __future__ import annotations

import pytest
import torch

from tests.vla_drive.algorithms.formulas import flow_inverse, flow_log_likelihood, ppo_term
from tests.vla_drive.algorithms.helpers import make_algorithm, perturb_policy, random_cond, rollouts, tiny_model
from vla_drive.train.rl import prepare_policy


def _prepared(**settings):
    model = tiny_model("coupled_flow")
    algorithm = make_algorithm("genpo", samples_per_scene=4, rollout_steps=3, minibatches=2, **settings)
    prepare_policy(model, algorithm, seed=0)
    return model, algorithm, rollouts(model, algorithm, random_cond(model, scenes=3))


def test_defaults_are_the_public_ones():
    config = make_algorithm("genpo").config
    assert (config.rollout_steps, config.clip, config.compression_coef, config.desired_kl) == (5, 0.2, 0.01, 0.01)
    assert tiny_model("coupled_flow").head.config.mixing == 0.9


def test_old_logprobs_are_exact_likelihoods_of_the_stored_pairs():
    model, algorithm, prepared = _prepared()
    batch = prepared.batch
    rows = torch.arange(12)
    with torch.no_grad():
        z = flow_inverse(model.head, batch.sample.pair, batch.sample_cond(rows), "policy", 3, 0.9)
        formula = flow_log_likelihood(model.head, batch.sample.pair, batch.sample_cond(rows), "policy", 3, 0.9)
    torch.testing.assert_close(z, batch.sample.latent, atol=1e-4, rtol=1e-4)  # inverse(forward(z)) = z
    torch.testing.assert_close(batch.extras["old_logp"], formula, atol=1e-3, rtol=1e-5)
    for minibatch in prepared.layout[0]:
        _, metrics = algorithm.loss(model, batch, minibatch)
        assert metrics["approx_kl"] == 0.0 and metrics["ratio_mean"] == 1.0 and metrics["kl"] == 0.0


def test_loss_is_clipped_ppo_with_entropy_and_compression():
    model, algorithm, prepared = _prepared(entropy_coef=0.01, compression_coef=0.1, clip=0.1)
    batch = prepared.batch
    perturb_policy(model, std=0.3)
    rows = prepared.layout[0][0]
    torch.manual_seed(11)  # the compression loss draws fresh pairs from the global generator
    loss, metrics = algorithm.loss(model, batch, rows)
    with torch.no_grad():
        cond = batch.sample_cond(rows)
        logp = flow_log_likelihood(model.head, batch.sample.pair[rows], cond, "policy", 3, 0.9)
        log_ratio = logp - batch.extras["old_logp"][rows]
        pg = ppo_term(torch.exp(log_ratio), batch.extras["advantage"][rows], 0.1).mean()
        torch.manual_seed(11)
        fresh = model.head.sample(cond, 1, steps=3, guidance=algorithm.rollout_spec().guidance).pair
        compression = (fresh[:, 0] - fresh[:, 1]).flatten(1).norm(dim=1).mean()
    expected = pg + 0.01 * logp.mean() + 0.1 * compression
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-5)
    assert metrics["kl"] == pytest.approx(float(-log_ratio.mean()), rel=1e-3)
    assert metrics["entropy"] == pytest.approx(float(-logp.mean()), rel=1e-4)


def test_the_learning_rate_follows_the_kl_within_its_bounds():
    algorithm = make_algorithm("genpo", desired_kl=0.01, lr_min=1e-5, lr_max=1e-3)
    assert algorithm.lr_scale() == 1.0
    algorithm.after_step({"kl": 0.05, "lr": 1e-4})  # above 2 x desired: / 1.5
    assert algorithm.lr_scale() == pytest.approx(1 / 1.5)
    algorithm.after_step({"kl": 0.01, "lr": 1e-4 / 1.5})  # within the band: unchanged
    assert algorithm.lr_scale() == pytest.approx(1 / 1.5)
    for _ in range(20):  # far below: x 1.5 each step up to lr_max
        algorithm.after_step({"kl": 0.0, "lr": 1e-4 * algorithm.lr_scale()})
    assert 1e-4 * algorithm.lr_scale() == pytest.approx(1e-3)
    for _ in range(40):
        algorithm.after_step({"kl": 1.0, "lr": 1e-4 * algorithm.lr_scale()})
    assert 1e-4 * algorithm.lr_scale() == pytest.approx(1e-5)
    restored = make_algorithm("genpo")
    restored.load_state_dict(algorithm.state_dict())  # the scale travels with every checkpoint
    assert restored.lr_scale() == algorithm.lr_scale()
