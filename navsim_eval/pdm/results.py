"""The scorer's output: one row per candidate trajectory, with the official metric column names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Official CSV columns (navsim run_pdm_score.py v1.1 and run_pdm_score_one_stage.py v2), without token/valid.
V1_COLUMNS = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "ego_progress",
    "time_to_collision_within_bound",
    "comfort",
    "driving_direction_compliance",
    "score",
)
V2_COLUMNS = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
    "ego_progress",
    "time_to_collision_within_bound",
    "lane_keeping",
    "history_comfort",
    "two_frame_extended_comfort",
    "score",
)
METRIC_COLUMNS = {"v1": V1_COLUMNS, "v2": V2_COLUMNS}


@dataclass
class ScoreTable:
    """Scores of K candidates of one scene.

    ``columns`` maps each official metric name to a float array [K]; ``valid`` marks candidates that could be
    scored (an invalid row has score 0 and a ``reason``). ``diagnostics`` holds per-candidate extras such as
    ``first_collision_step`` (-1 = none), ``at_fault_token`` ('' = none), ``first_ttc_step`` and ``progress_raw``.
    """

    token: str
    version: str
    columns: dict[str, np.ndarray]
    valid: np.ndarray
    reasons: list[str]
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    simulated_states: np.ndarray | None = None  # [K, 41, 11] (NaN rows for invalid candidates)
    log_name: str = ""
    t0_us: int = 0
    # The columns the score was aggregated from: the displayed ones, except for the pre-fix human filter, whose
    # score ignored the filter. Needed to fold in extended comfort later.
    aggregation_columns: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def score(self) -> np.ndarray:
        return self.columns["score"]

    def rows(self) -> list[dict]:
        """One dict per candidate: token, candidate index, valid, reason, every metric and diagnostic."""
        rows = []
        for k in range(len(self)):
            row = {"token": self.token, "candidate": k, "valid": bool(self.valid[k]), "reason": self.reasons[k]}
            row.update({name: float(values[k]) for name, values in self.columns.items()})
            row.update({name: _scalar(values[k]) for name, values in self.diagnostics.items()})
            rows.append(row)
        return rows


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value
