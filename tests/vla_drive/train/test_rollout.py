"""One DIPOLE iteration in one process with real PDM rewards: rollouts, scoring, weights, update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import build_metric_cache_store
from tests.vla_drive.tiny_world import tiny_world
from vla_drive.algorithms.dipole import Dipole, DipoleConfig
from vla_drive.train.rollout import PdmReward, collect_rollouts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    tiny = tiny_world(root, frames_per_log=17, spread=0.5)
    world, model, dataset = tiny.world, tiny.model, tiny.dataset
    scenes = [tiny.loader[t] for t in tiny.loader.tokens]
    caches = [build_metric_cache_from_map(s, load_map(s.map_name, world.maps_root)) for s in scenes]
    store = build_metric_cache_store(root / "cache", caches)
    return model, dataset, store


def test_one_dipole_iteration_with_real_rewards(setup):
    model, dataset, store = setup
    algorithm = Dipole(DipoleConfig(samples_per_scene=4, rollout_steps=3, beta=1.0))
    reward = PdmReward(store.root, "v1", workers=1)
    samples = [dataset[i] for i in range(3)]
    cond = model.encode(model.collate(samples))
    batch, stats = collect_rollouts(
        model, cond, [s.token for s in samples], algorithm.rollout_spec(), reward, torch.Generator().manual_seed(0)
    )
    reward.close()
    assert batch.num_samples == 12 and stats.samples == 12 and stats.failed_samples == 0
    assert torch.all((batch.reward >= 0) & (batch.reward <= 1))
    assert set(batch.reward_terms) >= {"no_at_fault_collisions", "ego_progress"}
    batch = algorithm.prepare(batch)
    model.head.freeze_base()
    before = {n: p.detach().clone() for n, p in model.head.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, metrics = algorithm.loss(model, batch, torch.arange(batch.num_samples))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.head.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith((".pos", ".neg")) for n in changed), "only the dichotomous adapters move"
    assert metrics["loss"] > 0


def test_unscorable_rollouts_are_skipped_not_fatal(setup):
    model, dataset, store = setup
    algorithm = Dipole(DipoleConfig(samples_per_scene=2, rollout_steps=2))
    reward = PdmReward(store.root, "v1", workers=1)
    samples = [dataset[0]]
    cond = model.encode(model.collate(samples))
    batch, stats = collect_rollouts(model, cond, ["no-such-scene"], algorithm.rollout_spec(), reward)
    reward.close()
    assert stats.skipped_scenes == 1 and stats.failed_samples == 2
    assert torch.isnan(batch.reward).all()
    batch = algorithm.prepare(batch)
    loss, _ = algorithm.loss(model, batch, torch.arange(batch.num_samples))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0  # NaN rewards never reach the loss


def test_logged_trajectories_join_their_groups(setup):
    model, dataset, store = setup
    algorithm = Dipole(DipoleConfig(samples_per_scene=3, rollout_steps=2, include_logged=True))
    reward = PdmReward(store.root, "v1", workers=1)
    samples = [dataset[i] for i in range(2)]
    cond = model.encode(model.collate(samples))
    logged = torch.as_tensor(np.stack([s.trajectory for s in samples]), dtype=torch.float32)
    batch, stats = collect_rollouts(
        model, cond, [s.token for s in samples], algorithm.rollout_spec(), reward, logged=logged
    )
    expert = reward([s.token for s in samples], logged.numpy()[:, None])[0]
    reward.close()
    assert batch.num_samples == 8 and stats.samples == 8, "K = 3 rollouts + 1 logged trajectory per scene"
    assert batch.group_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch.logged.tolist() == [False, False, False, True] * 2
    assert torch.allclose(batch.sample.traj[batch.logged], logged)
    assert torch.allclose(batch.sample.x0[batch.logged], model.normalizer.normalize(logged), atol=1e-6)
    np.testing.assert_allclose(batch.reward[batch.logged].numpy(), expert, rtol=1e-6, err_msg="scored like rollouts")
    batch = algorithm.prepare(batch)
    for group in range(2):  # the logged member takes part in the group statistics
        assert abs(float(batch.extras["advantage"][batch.group_index == group].mean())) < 1e-5


def test_logged_trajectories_need_x0_only_algorithms(setup):
    model, dataset, _ = setup
    spec = Dipole(DipoleConfig(samples_per_scene=2, include_logged=True)).rollout_spec()
    cond = model.encode(model.collate([dataset[0]]))
    with pytest.raises(ValueError, match="needs the logged trajectories"):
        collect_rollouts(model, cond, [dataset[0].token], spec, reward=None)
    spec.return_chain = True
    with pytest.raises(ValueError, match="no denoising chain"):
        collect_rollouts(model, cond, [dataset[0].token], spec, reward=None, logged=torch.zeros(1, 8, 3))


def test_v2_rewards_compare_every_sample_with_the_policys_plan_at_the_previous_frame(setup):
    from navsim_eval.pdm.cache_io import MetricCacheStore
    from navsim_eval.pdm.scorer import score
    from navsim_eval.pdm.two_frame import apply_two_frame_comfort
    from vla_drive.train.previous_plans import PreviousPlans, previous_frame_tokens

    model, dataset, store = setup
    loader, tokens = dataset.scenes, dataset.tokens
    assert previous_frame_tokens(loader) == dict(zip(tokens[1:], tokens[:-1], strict=True)), "one log, 2 Hz"
    spec = Dipole(DipoleConfig(samples_per_scene=3, rollout_steps=2, score_version="v2")).rollout_spec()
    plans = PreviousPlans(loader, dataset, model.collate, seed=3)
    picked = [tokens[0], tokens[2]]
    previous = plans.plans(model, picked, spec)
    assert previous[0] is None and previous[1][0] == tokens[1], "the first scene of a log has no previous frame"
    np.testing.assert_array_equal(plans.plans(model, picked, spec)[1][1], previous[1][1])  # seeded by the token

    cond = model.encode(model.collate([dataset[tokens.index(t)] for t in picked]))
    reward = PdmReward(store.root, "v2", workers=1)
    batch, _ = collect_rollouts(model, cond, picked, spec, reward, torch.Generator().manual_seed(0), previous=previous)
    plain, _ = collect_rollouts(model, cond, picked, spec, reward, torch.Generator().manual_seed(0))  # EC off
    reward.close()
    ec = batch.reward_terms["two_frame_extended_comfort"].reshape(2, 3)
    assert torch.isnan(ec[0]).all() and torch.isfinite(ec[1]).all()
    assert torch.isnan(plain.reward_terms["two_frame_extended_comfort"]).all()
    torch.testing.assert_close(batch.reward[:3], plain.reward[:3])  # no previous frame: scored as without one

    caches = MetricCacheStore(store.root)  # the same pair scored directly, as navsim-eval score would
    before = score(caches[tokens[1]], previous[1][1][None].astype(np.float64), "v2")
    after = score(caches[tokens[2]], batch.sample.traj[3:6].double().numpy(), "v2")
    assert apply_two_frame_comfort([before, after]) == 1
    np.testing.assert_allclose(batch.reward[3:6].numpy(), after.score, rtol=1e-6, atol=1e-9)
