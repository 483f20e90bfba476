"""Best-of-N at inference without privileged information: pick one of N sampled trajectories per scene.

The rule is the medoid: the candidate with the smallest mean distance (over the 8 poses' positions) to the other
candidates, i.e. the most typical of what the policy proposes. It needs no map, no other agents and no scorer, so a
leaderboard submission may use it.
"""

from __future__ import annotations

import numpy as np

SELECTION_RULES = ("medoid",)


def select_trajectory(candidates: np.ndarray, rule: str = "medoid") -> np.ndarray:
    """One trajectory [B, 8, 3] chosen from candidates [B, N, 8, 3] by ``rule``."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; expected one of {SELECTION_RULES}")
    candidates = np.asarray(candidates)
    positions = candidates[..., :2]  # [B, N, 8, 2]
    distance = np.linalg.norm(positions[:, :, None] - positions[:, None], axis=-1).mean(axis=-1)  # [B, N, N]
    choice = distance.sum(axis=-1).argmin(axis=-1)  # [B]
    return candidates[np.arange(len(candidates)), choice]
