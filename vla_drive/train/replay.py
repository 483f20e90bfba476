"""Replay of recent rollouts: the prepared rollouts of the last R iterations join each update (off-policy reuse).

Rewards never change once scored and weighted denoising regression (DIPOLE, AWR, RWR: the algorithms whose update
spec allows replay) accepts off-policy samples, so the samples of earlier iterations (with the advantages and
weights computed in their own groups) add data at no sampling or scoring cost. The buffer is per rank and travels
with every checkpoint (``Trainer(rank_state=...)``), so a resumed run replays exactly what the uninterrupted run
would have.

Memory: one iteration keeps its scenes' condition tokens ([S, M, C]) and S x K trajectories; with a multi-billion
VLM (C = 2048, M ~ 1,000 tokens) that is ~8 MB per scene in float32, so keep R small on big backbones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vla_drive.algorithms.base import RolloutBatch
from vla_drive.model.types import Cond, SampleOut


class ReplayBuffer:
    """The prepared rollouts of the last ``iterations`` RL iterations of this rank (0 = replay off)."""

    def __init__(self, iterations: int) -> None:
        if iterations < 0:
            raise ValueError(f"ReplayBuffer: iterations must be >= 0, got {iterations}")
        self.iterations = iterations
        self._batches: deque[RolloutBatch] = deque(maxlen=iterations or None)

    def __len__(self) -> int:
        return len(self._batches)

    def with_replay(self, current: RolloutBatch) -> RolloutBatch:
        """``current`` followed by the buffered rollouts (oldest last); then ``current`` joins the buffer."""
        if not self.iterations:
            return current
        merged = concat_rollouts([current, *reversed(self._batches)]) if self._batches else current
        self._batches.append(_detached_cpu(current))
        return merged

    def state_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "batches": [_to_state(batch) for batch in self._batches]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["iterations"]) != self.iterations:
            raise ValueError(
                f"ReplayBuffer: the checkpoint replays {state['iterations']} iterations, this run "
                f"algorithm.replay_iterations={self.iterations}"
            )
        self._batches.clear()
        self._batches.extend(_from_state(batch) for batch in state["batches"])


def concat_rollouts(batches: Sequence[RolloutBatch]) -> RolloutBatch:
    """One batch of several: scenes and samples in order, group indices offset, condition tokens padded to the
    widest; per-sample tensors of ``extras`` concatenated (other extras are dropped)."""
    if any(batch.inputs is not None for batch in batches):
        raise ValueError("concat_rollouts: rollouts that re-encode raw inputs (a training backbone) cannot be merged")
    device = batches[0].reward.device
    width = max(batch.cond.tokens.shape[1] for batch in batches)
    tokens, masks, egos, groups, offset = [], [], [], [], 0
    for batch in batches:
        cond = batch.cond.to(device)
        pad = width - cond.tokens.shape[1]
        tokens.append(torch.nn.functional.pad(cond.tokens, (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(cond.mask, (0, pad), value=False))
        egos.append(cond.ego)
        groups.append(batch.group_index.to(device) + offset)
        offset += cond.tokens.shape[0]
    samples = [batch.sample for batch in batches]
    sample = SampleOut(
        traj=torch.cat([s.traj.to(device) for s in samples]),
        x0=torch.cat([s.x0.to(device) for s in samples]),
        chain=_cat_optional([s.chain for s in samples], device),
        step_logp=_cat_optional([s.step_logp for s in samples], device),
        pair=_cat_optional([s.pair for s in samples], device),
        latent=_cat_optional([s.latent for s in samples], device),
    )
    logged = None
    if any(batch.logged is not None for batch in batches):
        parts = [
            batch.logged if batch.logged is not None else torch.zeros(batch.num_samples, dtype=torch.bool)
            for batch in batches
        ]
        logged = torch.cat([part.to(device) for part in parts])
    shared_terms = set.intersection(*(set(batch.reward_terms) for batch in batches))
    extras = {
        name: torch.cat([batch.extras[name].to(device) for batch in batches])
        for name in batches[0].extras
        if all(_per_sample(batch, name) for batch in batches)
    }
    return RolloutBatch(
        cond=Cond(torch.cat(tokens), torch.cat(masks), torch.cat(egos)),
        sample=sample,
        reward=torch.cat([batch.reward.to(device) for batch in batches]),
        group_index=torch.cat(groups),
        tokens=[token for batch in batches for token in batch.tokens],
        reward_terms={name: torch.cat([batch.reward_terms[name] for batch in batches]) for name in shared_terms},
        extras=extras,
        logged=logged,
    )


def _per_sample(batch: RolloutBatch, name: str) -> bool:
    value = batch.extras.get(name)
    return isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == batch.num_samples


def _cat_optional(parts: list[Tensor | None], device) -> Tensor | None:
    return torch.cat([p.to(device) for p in parts]) if all(p is not None for p in parts) else None


def _detached_cpu(batch: RolloutBatch) -> RolloutBatch:
    return _from_state(_to_state(batch))


def _to_state(batch: RolloutBatch) -> dict[str, Any]:
    def cpu(value: Tensor | None) -> Tensor | None:
        return None if value is None else value.detach().cpu().clone()

    return {
        "cond": [cpu(batch.cond.tokens), cpu(batch.cond.mask), cpu(batch.cond.ego)],
        "sample": {
            "traj": cpu(batch.sample.traj),
            "x0": cpu(batch.sample.x0),
            "chain": cpu(batch.sample.chain),
            "step_logp": cpu(batch.sample.step_logp),
            "pair": cpu(batch.sample.pair),
            "latent": cpu(batch.sample.latent),
        },
        "reward": cpu(batch.reward),
        "group_index": cpu(batch.group_index),
        "tokens": list(batch.tokens),
        "reward_terms": {name: cpu(value) for name, value in batch.reward_terms.items()},
        "extras": {name: cpu(batch.extras[name]) for name in batch.extras if _per_sample(batch, name)},
        "logged": cpu(batch.logged),
    }


def _from_state(state: dict[str, Any]) -> RolloutBatch:
    return RolloutBatch(
        cond=Cond(*state["cond"]),
        sample=SampleOut(**state["sample"]),
        reward=state["reward"],
        group_index=state["group_index"],
        tokens=list(state["tokens"]),
        reward_terms=dict(state["reward_terms"]),
        extras=dict(state["extras"]),
        logged=state["logged"],
    )
