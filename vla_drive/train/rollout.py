"""RL rollouts: sample K trajectories per scene from the current policy and score them with PDM rewards.

Rewards are computed where the rollouts are: every rank keeps its own persistent scoring pool over a metric-cache
store written once before training. A sample that cannot be scored gets reward NaN (the algorithms skip it); a
scene whose samples all fail is counted and skipped with a warning, never fatal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from navsim_eval.pdm.results import METRIC_COLUMNS
from navsim_eval.pdm.scorer import ScorerConfig
from navsim_eval.pdm.two_frame import apply_two_frame_comfort
from navsim_eval.pool import ScoringPool
from vla_drive.algorithms.base import RolloutBatch, RolloutSpec
from vla_drive.model.types import Cond, SampleOut, SampleRequest
from vla_drive.train.previous_plans import Plans

LOG = logging.getLogger(__name__)


@dataclass
class RolloutStats:
    """What one round of rollouts cost and produced (for logging)."""

    sample_seconds: float = 0.0
    score_seconds: float = 0.0
    scenes: int = 0
    samples: int = 0
    failed_samples: int = 0
    skipped_scenes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class PdmReward:
    """PDMS (v1) or EPDMS (v2) of trajectories, from a persistent scoring pool over a metric-cache store."""

    def __init__(
        self,
        store: str | os.PathLike[str],
        version: str = "v1",
        progress_weight: float = 5.0,
        workers: int = 1,
    ) -> None:
        self.version = version
        self.config = ScorerConfig(progress_weight=progress_weight)
        self.pool = ScoringPool(store, version, workers=workers, config=self.config)

    def __call__(
        self, tokens: Sequence[str], trajectories: np.ndarray, previous: Plans | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
        """Rewards [S*K] (NaN where invalid), sub-metrics [S*K] and the score tables, for [S, K, 8, 3].

        In v2, ``previous`` (per scene: the previous frame's token and the policy's plan there, or None) adds
        two-frame extended comfort of every sample against that plan."""
        tables = self.pool.score(list(zip(tokens, trajectories, strict=True)))
        if self.version == "v2" and previous is not None:
            earlier = [(index, item) for index, item in enumerate(previous) if item is not None]
            planned = self.pool.score([(token, plan[None]) for _, (token, plan) in earlier])
            for (index, _), before in zip(earlier, planned, strict=True):
                apply_two_frame_comfort([before, tables[index]], self.config)
        rewards = np.concatenate([np.where(t.valid, t.score, np.nan) for t in tables])
        terms = {
            name: np.concatenate([np.where(t.valid, t.columns[name], np.nan) for t in tables])
            for name in METRIC_COLUMNS[self.version]
            if name != "score"
        }
        return rewards, terms, tables

    def close(self) -> None:
        self.pool.close()


@torch.no_grad()
def collect_rollouts(
    model,
    cond: Cond,
    tokens: Sequence[str],
    spec: RolloutSpec,
    reward: PdmReward,
    generator: torch.Generator | None = None,
    call=None,
    logged: torch.Tensor | None = None,
    previous: Plans | None = None,
) -> tuple[RolloutBatch, RolloutStats]:
    """K samples for each of the S scenes of ``cond`` with the policy of ``model`` (a DrivingVLA), scored.

    ``call(fn)`` runs ``fn(model)`` as every rank must under ZeRO-3 (``Trainer.call_model``; default: directly).
    With ``spec.include_logged``, ``logged`` holds the S logged human trajectories [S, 8, 3] (ego frame); each joins
    its scene's group as member K + 1, scored and weighted like the rollouts. Training on them keeps the branches
    anchored to the data (DIPOLE's offline-to-online setting draws from data and rollouts alike) and stops the
    drift that regressing only on the policy's own few-step samples causes. ``previous`` (v2 rewards) holds each
    scene's previous-frame plan for two-frame extended comfort (:mod:`vla_drive.train.previous_plans`).
    """
    if spec.include_logged and logged is None:
        raise ValueError("collect_rollouts: spec.include_logged needs the logged trajectories of the scenes")
    if spec.include_logged and spec.return_chain:
        raise ValueError(
            "collect_rollouts: logged trajectories have no denoising chain; include_logged works only "
            "for algorithms that train on x0 (e.g. DIPOLE)"
        )
    stats = RolloutStats(scenes=len(tokens))
    start = time.perf_counter()

    request = SampleRequest(
        cond,
        spec.samples_per_scene,
        spec.steps,
        guidance=spec.guidance,
        stochastic=spec.stochastic,
        return_chain=spec.return_chain,
        generator=generator,
        temperature=spec.temperature,
    )

    def draw(module):
        was_training = module.training
        module.eval()
        try:
            return module(request)  # through the forward: DeepSpeed / DDP wrappers see the pass
        finally:
            module.train(was_training)

    sample = call(draw) if call is not None else draw(model)
    k = spec.samples_per_scene
    is_logged = None
    if spec.include_logged:
        sample, is_logged = _with_logged(model, sample, logged.to(sample.traj.device, torch.float32), len(tokens), k)
        k += 1
    stats.sample_seconds = time.perf_counter() - start

    start = time.perf_counter()
    trajectories = sample.traj.float().cpu().numpy().reshape(len(tokens), k, *sample.traj.shape[1:])
    rewards, terms, tables = reward(tokens, trajectories, previous)
    stats.score_seconds = time.perf_counter() - start
    stats.samples = len(rewards)
    stats.failed_samples = int(np.isnan(rewards).sum())
    for table in tables:
        if not table.valid.any():
            stats.skipped_scenes += 1
            for reason in set(table.reasons):
                stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
    if stats.skipped_scenes:
        LOG.warning(
            "%d of %d scenes had no scorable rollout; they are skipped this iteration (%s)",
            stats.skipped_scenes,
            len(tokens),
            stats.reasons,
        )
    device = cond.tokens.device
    batch = RolloutBatch(
        cond=cond,
        sample=sample,
        reward=torch.as_tensor(rewards, dtype=torch.float32, device=device),
        group_index=torch.arange(len(tokens), device=device).repeat_interleave(k),
        tokens=list(tokens),
        reward_terms={name: torch.as_tensor(values, dtype=torch.float32) for name, values in terms.items()},
        logged=None if is_logged is None else is_logged.to(device),
    )
    return batch, stats


def _with_logged(model, sample: SampleOut, logged: torch.Tensor, scenes: int, k: int) -> tuple[SampleOut, torch.Tensor]:
    """``sample`` with each scene's logged trajectory appended to its K samples, and the mask of logged rows."""
    traj = torch.cat([sample.traj.float().reshape(scenes, k, *sample.traj.shape[1:]), logged[:, None]], dim=1)
    x0_logged = model.normalizer.normalize(logged).to(sample.x0)  # float32 poses; the model's dtype for training
    x0 = torch.cat([sample.x0.reshape(scenes, k, *sample.x0.shape[1:]), x0_logged[:, None]], dim=1)
    mask = torch.zeros(scenes, k + 1, dtype=torch.bool)
    mask[:, -1] = True
    return SampleOut(traj=traj.flatten(0, 1), x0=x0.flatten(0, 1)), mask.flatten()
