"""Two-frame extended comfort (EC) for one-stage EPDMS: the plan of a frame against the plan of the frame before.

NAVSIM v2 (``run_pdm_score_one_stage.py``) pairs, within each log, every scene with the scene whose start is at most
0.55 s earlier, compares the agent's simulated states of the two plans over their overlap and writes EC to the
later scene only; a scene without such a predecessor keeps EC = NaN and its score leaves EC out (weight 14, not 16).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from navsim_eval.pdm.comfort import two_frame_extended_comfort
from navsim_eval.pdm.results import ScoreTable
from navsim_eval.pdm.scorer import ScorerConfig, aggregate

MAX_FRAME_GAP_US = 550_000
EC_COLUMN = "two_frame_extended_comfort"


def previous_frames(tables: Sequence[ScoreTable]) -> dict[int, int]:
    """Index of each table's predecessor: same log, started 0 < gap <= 0.55 s earlier (the closest such one)."""
    by_log: dict[str, list[int]] = defaultdict(list)
    for index, table in enumerate(tables):
        by_log[table.log_name].append(index)
    pairs = {}
    for indices in by_log.values():
        indices.sort(key=lambda i: tables[i].t0_us)
        for earlier, later in pairwise(indices):
            gap = tables[later].t0_us - tables[earlier].t0_us
            if 0 < gap <= MAX_FRAME_GAP_US:
                pairs[later] = earlier
    return pairs


def apply_two_frame_comfort(tables: Sequence[ScoreTable], config: ScorerConfig | None = None) -> int:
    """Fill EC and recompute the score of every v2 table that has a predecessor; returns how many got EC.

    Every candidate of the later scene is compared with candidate 0 (the submitted plan) of the earlier one.
    """
    config = config or ScorerConfig()
    filled = 0
    for later, earlier in previous_frames(tables).items():
        current, previous = tables[later], tables[earlier]
        if current.version != "v2" or previous.simulated_states is None or current.simulated_states is None:
            continue
        if not previous.valid[0]:
            continue
        gap_s = (current.t0_us - previous.t0_us) * 1e-6
        valid = current.valid
        ec = np.full(len(current), np.nan)
        reference = np.broadcast_to(previous.simulated_states[:1], current.simulated_states[valid].shape)
        ec[valid] = two_frame_extended_comfort(current.simulated_states[valid], reference, gap_s)
        current.columns[EC_COLUMN] = ec
        columns = dict(current.aggregation_columns or current.columns)
        columns[EC_COLUMN] = ec
        current.columns["score"] = np.where(valid, aggregate(columns, config, "v2"), 0.0)
        filled += 1
    return filled
