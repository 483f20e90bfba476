"""DIPOLE's invariants (algorithms.md 7.5): group advantages, dichotomous weights, guided = base at init."""

from __future__ import annotations

import math

import pytest
import torch

from vla_drive.algorithms.advantages import group_advantage, normalised_advantage
from vla_drive.algorithms.base import RolloutBatch
from vla_drive.algorithms.dipole import Dipole, DipoleConfig
from vla_drive.model.head import HeadConfig, TrajectoryHead
from vla_drive.model.types import Cond, Guidance, SampleOut


def test_group_advantage_is_zero_mean_unit_std_per_group():
    rewards = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.2, 0.2, 0.7, 0.3])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    advantage, valid = group_advantage(rewards, groups)
    assert valid.all()
    for g in range(3):
        values = advantage[groups == g]
        assert abs(float(values.mean())) < 1e-6
    assert torch.allclose(advantage[groups == 0].std(unbiased=False), torch.tensor(1.0), atol=1e-4)
    assert torch.equal(advantage[groups == 1], torch.zeros(3))  # equal rewards: no preference, no NaN


def test_group_advantage_handles_k1_and_failed_samples():
    advantage, valid = group_advantage(torch.tensor([0.7]), torch.tensor([0]))
    assert advantage.tolist() == [0.0] and valid.tolist() == [True]
    rewards = torch.tensor([0.2, float("nan"), 0.8, float("nan"), float("nan")])
    advantage, valid = group_advantage(rewards, torch.tensor([0, 0, 0, 1, 1]))
    assert valid.tolist() == [True, False, True, False, False]
    assert torch.isfinite(advantage).all()
    assert advantage[1] == 0 and advantage[3] == 0
    assert advantage[0] == pytest.approx(-1.0, abs=1e-4) and advantage[2] == pytest.approx(1.0, abs=1e-4)


def _rollouts(head, scenes=3, k=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    cond = Cond(
        torch.randn(scenes, 5, 16, generator=generator),
        torch.ones(scenes, 5, dtype=torch.bool),
        torch.randn(scenes, 8, generator=generator),
    )
    sample = head.sample(cond, k, steps=3, generator=generator)
    rewards = torch.rand(scenes * k, generator=generator)
    return RolloutBatch(
        cond, sample, rewards, torch.arange(scenes).repeat_interleave(k), [f"s{i}" for i in range(scenes)]
    )


@pytest.fixture
def head():
    torch.manual_seed(0)
    return TrajectoryHead(HeadConfig(hidden_size=32, depth=2, num_heads=4, cond_dim=16, sample_steps=3))


def test_dichotomous_weights_are_in_0_1_and_sum_to_1(head):
    batch = Dipole(DipoleConfig(samples_per_scene=4, beta=2.0)).prepare(_rollouts(head))
    pos, neg = batch.extras["weight_pos"], batch.extras["weight_neg"]
    assert ((pos > 0) & (pos < 1)).all() and torch.allclose(pos + neg, torch.ones_like(pos))
    best = int(torch.argmax(batch.reward[:4]))
    assert int(torch.argmax(pos[:4])) == best  # the best sample of a scene leans most to the positive branch
    assert float(pos[best]) == pytest.approx(1 / (1 + math.exp(-2.0 * float(batch.extras["advantage"][best]))))


class _Wrapper(torch.nn.Module):
    """Stands in for DrivingVLA.forward on a bare head."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, request):
        return self.head.denoise_loss_branches(request.x0, request.cond, request.branches, request.t, request.eps)


def test_loss_trains_only_the_adapters_and_moves_pos_towards_good_samples(head):
    head.freeze_base()
    algorithm = Dipole(DipoleConfig(samples_per_scene=4, beta=2.0))
    batch = algorithm.prepare(_rollouts(head))
    # a fresh x0-predicting head samples exactly 0 (its output layer starts at zero): train on spread-out samples
    batch.sample = SampleOut(traj=batch.sample.traj, x0=torch.randn(batch.sample.x0.shape))
    loss, metrics = algorithm.loss(_Wrapper(head), batch, torch.arange(batch.num_samples))
    loss.backward()
    assert metrics["loss"] == pytest.approx(metrics["loss_pos"] + metrics["loss_neg"], rel=1e-5)
    touched = {name for name, p in head.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all(n.endswith((".pos", ".neg")) for n in touched)


def test_all_failed_minibatch_gives_zero_loss(head):
    algorithm = Dipole(DipoleConfig(samples_per_scene=4))
    batch = _rollouts(head)
    batch.reward[:] = float("nan")
    batch = algorithm.prepare(batch)
    loss, metrics = algorithm.loss(_Wrapper(head), batch, torch.arange(batch.num_samples))
    assert float(loss.detach()) == 0.0 and metrics["loss"] == 0.0


def test_zero_initialised_adapters_give_the_base_policy_for_every_omega(head):
    cond = Cond(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 8))
    base = head.sample(cond, 3, steps=4, generator=torch.Generator().manual_seed(1)).x0
    for omega in (0.0, 0.5, 2.0, 5.0):
        guided = head.sample(
            cond, 3, steps=4, guidance=Guidance("dichotomous", omega), generator=torch.Generator().manual_seed(1)
        ).x0
        torch.testing.assert_close(guided, base, atol=1e-5, rtol=1e-5)
    assert isinstance(head.sample(cond, 1, steps=2), SampleOut)


# ------------------------------------------------------------------------------- tuning options (issue 13.7)


def test_zscore_is_blind_to_the_reward_scale_centred_and_raw_are_not():
    rewards = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.3, 0.8, 0.7, 0.3])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    scaled = 10.0 * rewards + 3.0
    for mode, blind in (("zscore", True), ("centred", False), ("raw", False)):
        plain, _ = normalised_advantage(rewards, groups, mode)
        other, _ = normalised_advantage(scaled, groups, mode)
        assert torch.allclose(plain, other, atol=1e-4) == blind, mode
    centred, _ = normalised_advantage(rewards, groups, "centred")
    assert torch.allclose(normalised_advantage(scaled, groups, "centred")[0], 10.0 * centred, atol=1e-5)
    assert torch.equal(normalised_advantage(rewards, groups, "raw")[0], rewards)
    assert torch.equal(normalised_advantage(rewards, groups)[0], group_advantage(rewards, groups)[0])
    with pytest.raises(ValueError, match="expected one of zscore, centred, raw"):
        normalised_advantage(rewards, groups, "rank")


def test_a_member_of_weight_zero_is_as_if_it_were_not_in_its_group():
    rewards = torch.tensor([0.1, 0.5, 0.9, 1.0, 0.2, 0.3, 0.8, 0.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    weights = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    kept = weights > 0
    for mode in ("zscore", "centred"):
        weighted, _ = normalised_advantage(rewards, groups, mode, weights)
        without, _ = normalised_advantage(rewards[kept], groups[kept], mode)
        torch.testing.assert_close(weighted[kept], without)


def _with_logged(batch, k):
    """The batch with a logged trajectory appended to every group of k samples (the layout of collect_rollouts)."""
    scenes = len(batch.tokens)
    rows, logged = [], []
    for s in range(scenes):
        rows += [*range(s * k, (s + 1) * k), s * k]  # the logged member: a copy of the first, other reward
        logged += [False] * k + [True]
    index = torch.tensor(rows)
    reward = batch.reward[index].clone()
    reward[torch.tensor(logged)] = torch.linspace(0.95, 0.99, scenes)
    sample = SampleOut(traj=batch.sample.traj[index], x0=batch.sample.x0[index].clone())
    return RolloutBatch(batch.cond, sample, reward, batch.group_index[index], batch.tokens, logged=torch.tensor(logged))


def test_logged_weight_zero_is_include_logged_false(head):
    k = 4
    rollouts = _rollouts(head, k=k)
    without = Dipole(DipoleConfig(samples_per_scene=k, beta=2.0)).prepare(_rollouts(head, k=k))
    algorithm = Dipole(DipoleConfig(samples_per_scene=k, beta=2.0, include_logged=True, logged_weight=0.0))
    batch = algorithm.prepare(_with_logged(rollouts, k))
    rollout_rows = ~batch.logged
    for name in ("advantage", "weight_pos", "weight_neg"):
        torch.testing.assert_close(batch.extras[name][rollout_rows], without.extras[name])
    # the logged rows add nothing to the loss: moving them leaves it unchanged (same t and noise draws)
    all_rows = torch.arange(batch.num_samples)
    torch.manual_seed(5)
    loss, _ = algorithm.loss(_Wrapper(head), batch, all_rows)
    batch.sample.x0[batch.logged] += 3.0
    torch.manual_seed(5)
    moved, _ = algorithm.loss(_Wrapper(head), batch, all_rows)
    assert float(loss.detach()) == float(moved.detach())
    # at the default weight 1 the logged member counts fully and no weights are stored (today's numbers)
    full = Dipole(DipoleConfig(samples_per_scene=k, beta=2.0, include_logged=True)).prepare(_with_logged(rollouts, k))
    assert "member_weight" not in full.extras
    assert not torch.allclose(full.extras["advantage"][rollout_rows], without.extras["advantage"])


def test_rollout_temperature_reaches_the_rollout_spec():
    assert Dipole(DipoleConfig()).rollout_spec().temperature == 1.0
    assert Dipole(DipoleConfig(rollout_temperature=0.5)).rollout_spec().temperature == 0.5


def test_head_and_coupled_flow_sample_at_temperature_zero_independently_of_the_seed(head):
    from vla_drive.model.coupled_flow import CoupledFlowHead

    cond = Cond(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 8))
    torch.manual_seed(0)
    flow = CoupledFlowHead(HeadConfig(kind="coupled_flow", hidden_size=32, depth=1, num_heads=4, cond_dim=16))
    for model in (head, flow):
        with torch.no_grad():
            for p in model.parameters():  # a trained-looking head: the zero-initialised output layer hides noise
                p.add_(0.05 * torch.randn_like(p))
            draws = [
                model.sample(cond, 2, steps=3, generator=torch.Generator().manual_seed(s), temperature=t).x0
                for s, t in ((1, 0.0), (2, 0.0), (1, 1.0), (2, 1.0))
            ]
        assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[2], draws[3]), type(model).__name__
        default = model.sample(cond, 2, steps=3, generator=torch.Generator().manual_seed(1)).x0
        assert torch.equal(default, draws[2])
