"""Two-frame extended comfort in RL rewards: each scene's previous frame and the policy's plan there.

NAVSIM v2 scores extended comfort (EC) of a plan against the plan the agent made at the scene 0.5 s earlier in the
same log. For the EPDMS reward of RL rollouts, every sample of a scene is compared with the current policy's own
deterministic plan at the scene's previous frame: one extra sample per scene and iteration, from noise seeded by the
previous scene's token. A scene whose previous frame is not among the training scenes keeps EC NaN and is scored as
the official code scores a scene without a previous frame (EC left out of the score).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.pdm.two_frame import MAX_FRAME_GAP_US
from vla_drive.algorithms.base import RolloutSpec
from vla_drive.model.seeding import scene_generators
from vla_drive.model.vla import DrivingVLA

Plans = list[tuple[str, np.ndarray] | None]  # per scene: (previous token, its plan [8, 3]) or None


def previous_frame_tokens(scenes: SceneLoader) -> dict[str, str]:
    """token -> the token of the scene of the same log whose current frame is 0 < gap <= 0.55 s earlier (the
    closest), the pairing of NAVSIM's one-stage scorer."""
    by_log: dict[str, list[tuple[int, str]]] = defaultdict(list)
    current = scenes.scene_filter.current_index
    for token in scenes.tokens:
        frame = scenes.log_frames(token)[current]
        by_log[frame.log_name].append((frame.frame.timestamp_us, token))
    previous = {}
    for frames in by_log.values():
        frames.sort()
        for (earlier_us, earlier), (later_us, later) in pairwise(frames):
            if 0 < later_us - earlier_us <= MAX_FRAME_GAP_US:
                previous[later] = earlier
    return previous


class PreviousPlans:
    """The policy's deterministic plans at the previous frames of training scenes (see the module doc)."""

    def __init__(self, scenes: SceneLoader, dataset: Any, collate_fn: Callable, seed: int) -> None:
        self.index = {token: i for i, token in enumerate(dataset.tokens)}
        self.previous = {t: p for t, p in previous_frame_tokens(scenes).items() if t in self.index and p in self.index}
        self.dataset, self.collate_fn, self.seed = dataset, collate_fn, seed

    @torch.no_grad()
    def plans(self, model: DrivingVLA, tokens: Sequence[str], spec: RolloutSpec, call: Callable | None = None) -> Plans:
        """The plans at the previous frames of ``tokens``. Every scene costs one sample, also one without a previous
        frame (its own, discarded), so that every rank runs the same forwards (ZeRO-3)."""
        call = call or (lambda fn: fn(model))
        previous = [self.previous.get(token) for token in tokens]
        rows = [previous_token or token for token, previous_token in zip(tokens, previous, strict=True)]
        batch = self.collate_fn([self.dataset[self.index[token]] for token in rows])
        if hasattr(batch, "cond"):  # cached features
            cond = batch.cond.to(model.device)
        else:
            cond = call(lambda module: module.encode(batch))
        generators = scene_generators(rows, self.seed, device=cond.tokens.device)
        out = call(lambda module: module.sample(cond, 1, spec.steps, guidance=spec.guidance, generator=generators))
        trajectories = out.traj.float().cpu().numpy()
        return [(p, trajectories[i]) if p is not None else None for i, p in enumerate(previous)]
