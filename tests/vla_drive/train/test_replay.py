"""Replay of recent rollouts: concatenation, capacity, and the checkpointed state round trip."""

from __future__ import annotations

import io

import pytest
import torch

from vla_drive.algorithms.base import RolloutBatch
from vla_drive.algorithms.dipole import Dipole, DipoleConfig
from vla_drive.model.types import Cond, SampleOut
from vla_drive.train.replay import ReplayBuffer, concat_rollouts


def _batch(scenes: int, k: int, width: int, seed: int, logged: bool = False) -> RolloutBatch:
    generator = torch.Generator().manual_seed(seed)
    n = scenes * k
    batch = RolloutBatch(
        cond=Cond(
            torch.randn(scenes, width, 4, generator=generator),
            torch.ones(scenes, width, dtype=torch.bool),
            torch.randn(scenes, 8, generator=generator),
        ),
        sample=SampleOut(traj=torch.randn(n, 8, 3, generator=generator), x0=torch.randn(n, 8, 3, generator=generator)),
        reward=torch.rand(n, generator=generator),
        group_index=torch.arange(scenes).repeat_interleave(k),
        tokens=[f"t{seed}-{i}" for i in range(scenes)],
        reward_terms={"ego_progress": torch.rand(n, generator=generator)},
        logged=torch.arange(n) % k == k - 1 if logged else None,
    )
    return Dipole(DipoleConfig(samples_per_scene=k)).prepare(batch)


def test_concat_offsets_groups_pads_tokens_and_keeps_per_sample_extras():
    first, second = _batch(2, 3, width=5, seed=0, logged=True), _batch(1, 3, width=7, seed=1)
    merged = concat_rollouts([first, second])
    assert merged.num_samples == 9 and merged.tokens == first.tokens + second.tokens
    assert merged.group_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert merged.cond.tokens.shape == (3, 7, 4)
    assert merged.cond.mask[:2, 5:].any().item() is False, "padding of the narrower batch is masked out"
    assert torch.equal(merged.cond.tokens[2], second.cond.tokens[0])
    assert torch.equal(merged.sample.x0, torch.cat([first.sample.x0, second.sample.x0]))
    weights = torch.cat([first.extras["weight_pos"], second.extras["weight_pos"]])
    assert torch.equal(merged.extras["weight_pos"], weights)
    assert merged.logged.tolist() == [False, False, True] * 2 + [False] * 3
    # the condition of every sample is still its own scene's
    rows = torch.arange(9)
    assert torch.equal(
        merged.sample_cond(rows).ego,
        torch.cat([first.cond.ego.repeat_interleave(3, 0), second.cond.ego.repeat_interleave(3, 0)]),
    )


def test_buffer_replays_the_last_r_iterations():
    buffer = ReplayBuffer(2)
    batches = [_batch(2, 2, width=3, seed=s) for s in range(4)]
    assert buffer.with_replay(batches[0]) is batches[0], "nothing to replay in the first iteration"
    merged = buffer.with_replay(batches[1])
    assert merged.tokens == batches[1].tokens + batches[0].tokens
    merged = buffer.with_replay(batches[2])
    assert merged.tokens == batches[2].tokens + batches[1].tokens + batches[0].tokens
    merged = buffer.with_replay(batches[3])
    assert merged.tokens == batches[3].tokens + batches[2].tokens + batches[1].tokens, "only the last 2 are kept"
    assert ReplayBuffer(0).with_replay(batches[0]) is batches[0]


def test_state_round_trip_through_torch_save_replays_the_same_samples():
    buffer = ReplayBuffer(3)
    for seed in range(3):
        buffer.with_replay(_batch(2, 2, width=3 + seed, seed=seed))
    stream = io.BytesIO()
    torch.save(buffer.state_dict(), stream)
    stream.seek(0)
    restored = ReplayBuffer(3)
    restored.load_state_dict(torch.load(stream, weights_only=True))
    current = _batch(1, 2, width=4, seed=9)
    a, b = buffer.with_replay(current), restored.with_replay(current)
    assert a.tokens == b.tokens
    for name in ("reward", "group_index"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.equal(a.sample.x0, b.sample.x0) and torch.equal(a.cond.tokens, b.cond.tokens)
    assert torch.equal(a.extras["weight_neg"], b.extras["weight_neg"])


def test_state_of_another_capacity_is_refused():
    state = ReplayBuffer(2).state_dict()
    with pytest.raises(ValueError, match="replay_iterations=3"):
        ReplayBuffer(3).load_state_dict(state)
