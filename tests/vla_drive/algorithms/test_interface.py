"""What every RL algorithm promises through the common interface (algorithms.md 7.3-7.5): the registry names, one
``policy`` branch over the frozen imitation base (DIPOLE: pos / neg), update specs (replay only for the weighted
regression family), group advantages with zero mean and unit std, and a ratio of exactly 1 at the old weights
in every minibatch of the first epoch, in float32 and with bf16 weights under autocast."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.vla_drive.algorithms.helpers import RL_ALGORITHMS, make_algorithm, random_cond, rollouts, tiny_model
from vla_drive.algorithms.registry import ALGORITHMS
from vla_drive.config import ConfigError, load_config
from vla_drive.train.rl import prepare_policy

RATIO_ALGORITHMS = ["dppo", "fpo", "genpo"]


def _kind(name: str) -> str:
    return "coupled_flow" if name == "genpo" else "diffusion"


def test_the_registry_names_every_algorithm():
    assert list(ALGORITHMS) == ["bc", "dipole", "awr", "rwr", "diffgrpo", "dppo", "fpo", "genpo"]


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_update_specs_and_branches(name):
    algorithm = make_algorithm(name)
    spec = algorithm.update_spec()
    assert spec.epochs >= 1 and spec.minibatches >= 1
    if name == "dipole":
        assert algorithm.trainable_branches() == ("pos", "neg") and algorithm.policy_branch is None
    else:
        assert algorithm.trainable_branches() == ("policy",) and algorithm.policy_branch == "policy"
    regression = name in ("dipole", "awr", "rwr")
    assert hasattr(algorithm.config, "replay_iterations") == regression, "replay is for weighted regression only"
    if not regression:  # the loader refuses replay for the others, naming who has it
        with pytest.raises(ConfigError, match=f"not a setting of algorithm '{name}'"):
            load_config("debug-rl", [f"algorithm.name={name}", "algorithm.replay_iterations=2"])


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_prepare_policy_freezes_the_imitation_base_and_records_the_branch(name):
    model = tiny_model(_kind(name))
    algorithm = make_algorithm(name)
    prepare_policy(model, algorithm, seed=0)
    trainable = {n for n, p in model.head.named_parameters() if p.requires_grad}
    branches = algorithm.trainable_branches()
    assert trainable and all(n.rsplit(".", 1)[-1] in branches for n in trainable)
    assert model.config.policy_branch == (algorithm.policy_branch or "")
    assert set(branches) <= set(model.config.head.branches)


def test_an_algorithm_refuses_a_head_of_the_other_kind():
    with pytest.raises(ConfigError, match="trains a coupled_flow head"):
        prepare_policy(tiny_model("diffusion"), make_algorithm("genpo"), seed=0)
    with pytest.raises(ConfigError, match="trains a diffusion head"):
        prepare_policy(tiny_model("coupled_flow"), make_algorithm("fpo"), seed=0)


@pytest.mark.parametrize("name", [n for n in RL_ALGORITHMS if n != "rwr"])
def test_advantages_are_zero_mean_unit_std_per_scene(name):
    model = tiny_model(_kind(name))
    algorithm = make_algorithm(name, samples_per_scene=4, rollout_steps=2)
    prepare_policy(model, algorithm, seed=0)
    batch = rollouts(model, algorithm, random_cond(model, scenes=3)).batch
    advantage = batch.extras["advantage"].view(3, 4)
    torch.testing.assert_close(advantage.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(advantage.std(1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", RATIO_ALGORITHMS)
def test_the_ratio_is_exactly_one_at_the_old_weights_in_every_first_epoch_minibatch(name, weights):
    model = tiny_model(_kind(name))
    algorithm = make_algorithm(name, samples_per_scene=4, rollout_steps=3, minibatches=3)
    prepare_policy(model, algorithm, seed=0)
    with torch.no_grad():  # a policy branch away from the base, so the check is not trivially about zeros
        for _, layer in model.head.lora_layers():
            layer.lora_B["policy"].normal_(std=0.05, generator=torch.Generator().manual_seed(1))
    model = copy.deepcopy(model)
    if weights == "bfloat16":
        model.head.to(torch.bfloat16)
    prepared = rollouts(model, algorithm, random_cond(model, scenes=3))
    for rows in prepared.layout[0]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=weights == "bfloat16"):
            _, metrics = algorithm.loss(model, prepared.batch, rows)
        assert metrics["approx_kl"] == 0.0 and metrics["ratio_mean"] == 1.0 and metrics["clip_fraction"] == 0.0


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_one_update_moves_only_the_trained_branches(name):
    model = tiny_model(_kind(name))
    algorithm = make_algorithm(name, samples_per_scene=4, rollout_steps=2)
    prepare_policy(model, algorithm, seed=0)
    prepared = rollouts(model, algorithm, random_cond(model, scenes=2))
    loss, metrics = algorithm.loss(model, prepared.batch, prepared.layout[0][0])
    assert torch.isfinite(loss) and metrics["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    loss.backward()
    touched = {n for n, p in model.head.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all(n.rsplit(".", 1)[-1] in algorithm.trainable_branches() for n in touched)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_dipole_loss_is_the_dichotomously_weighted_formula():
    from tests.vla_drive.algorithms.formulas import FixedNoise, denoising_losses

    model = tiny_model()
    algorithm = make_algorithm("dipole", samples_per_scene=4, rollout_steps=2, beta=2.0)
    prepare_policy(model, algorithm, seed=0)
    with torch.no_grad():  # branches that differ from each other and from the base
        for _, layer in model.head.lora_layers():
            for seed, branch in enumerate(("pos", "neg")):
                layer.lora_B[branch].normal_(std=0.05, generator=torch.Generator().manual_seed(seed))
    batch = rollouts(model, algorithm, random_cond(model, scenes=3)).batch
    rows = torch.tensor([0, 3, 5, 8, 11])
    generator = torch.Generator().manual_seed(7)
    t, eps = torch.rand(5, generator=generator), torch.randn(5, 8, 3, generator=generator)
    loss, _ = algorithm.loss(FixedNoise(model, [(t, eps)]), batch, rows)
    weight = torch.sigmoid(2.0 * batch.extras["advantage"][rows])
    with torch.no_grad():
        x0, cond = batch.sample.x0[rows], batch.sample_cond(rows)
        expected = (weight * denoising_losses(model.head, x0, cond, "pos", t, eps)).mean() + (
            (1 - weight) * denoising_losses(model.head, x0, cond, "neg", t, eps)
        ).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", RATIO_ALGORITHMS)
def test_ratio_algorithms_refuse_a_head_with_dropout(name):
    model = tiny_model(_kind(name), dropout=0.1)
    with pytest.raises(ConfigError, match=r"dropout 0\.1"):
        prepare_policy(model, make_algorithm(name), seed=0)
