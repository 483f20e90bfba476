"""Two-stage pseudo-simulation scoring (NAVSIM v2 navhard / warm-up / private test): ``run_pdm_score.py`` of ``main``.

Read in ``navsim/planning/script/run_pdm_score.py`` and ``pdm_planner/scoring/scene_aggregator.py`` (``main``):

* every token of the split's ``reactive_all_mapping`` is scored in v2 with reactive IDM traffic (both stages),
  the human filter on the stage-one (logged) scenes only;
* two-frame extended comfort (EC) of every (stage-one, previous) pair and every synthetic (now, prev) pair is
  written to both tokens of the pair; each row's score is then ``prod * (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16``;
* the synthetic scenes of an entry are weighted by ``exp(-d^2 / (2 * 0.1))``, ``d`` the distance between the
  planned (not simulated) endpoint of the stage-one scene (its predecessor's for the prev group) and the synthetic
  scene's start, normalised per group (uniform when the sum is ~0 or NaN); stage-one rows weigh 1;
* per entry and column: ``(S1(orig) * wmean S2(now) + S1(prev) * wmean S2(prev)) / 2``, averaged over entries
  (``extended_pdm_score_combined``; only its score is that product, its sub-metric columns are the stage means);
  ``extended_pdm_score_stage_one`` / ``_two`` average the stage-one rows / the weighted group means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from navsim_eval.data.splits import TwoStageEntry
from navsim_eval.geometry import relative_to_absolute_poses
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.comfort import two_frame_extended_comfort
from navsim_eval.pdm.results import V2_COLUMNS, ScoreTable
from navsim_eval.pdm.scorer import ScorerConfig, aggregate
from navsim_eval.vehicle import PACIFICA

SIGMA_SQUARED = 0.1  # [m^2] of the Gaussian weight of a second-stage scene
EC_COLUMN = "two_frame_extended_comfort"
SCORE_COLUMNS = V2_COLUMNS  # the 8 sub-metrics, EC and the score
STAGE_ONE, STAGE_TWO, COMBINED = (
    "extended_pdm_score_stage_one",
    "extended_pdm_score_stage_two",
    "extended_pdm_score_combined",
)


@dataclass
class TwoStageRow:
    """One scored token: its stage (1 or 2), its table, its weight and where its plan starts and ends."""

    token: str
    stage: int
    table: ScoreTable
    start_point: np.ndarray | None = None  # [2] the cache's rear axle at t0
    endpoint: np.ndarray | None = None  # [2] the planned endpoint in the global frame
    weight: float = math.nan

    @property
    def valid(self) -> bool:
        return bool(self.table.valid[0])

    def value(self, column: str) -> float:
        return float(self.table.columns[column][0]) if self.valid else math.nan


@dataclass
class TwoStageResult:
    """Every scored row (in mapping order, stage one first), the summary rows and what could not be aggregated."""

    rows: list[TwoStageRow]
    summary: dict[str, dict[str, float]]  # summary token -> column (e.g. "ego_progress_stage_one") -> value
    missing: list[str] = field(default_factory=list)  # mapping tokens without a valid score
    entries_used: int = 0

    @property
    def valid(self) -> bool:
        """Whether the pseudo closed loop could be aggregated over every entry (the official summary flag)."""
        return not self.missing

    @property
    def combined_score(self) -> float:
        return self.summary[COMBINED]["score"]


def rear_axle(x: float, y: float, heading: float) -> np.ndarray:
    """nuPlan's rear axle of an ego state built from a rear-axle pose (through the box centre and back)."""
    distance = PACIFICA.rear_axle_to_center
    center = (x + distance * np.cos(heading), y + distance * np.sin(heading))
    return np.array([center[0] + -distance * np.cos(heading), center[1] + -distance * np.sin(heading)])


def planned_endpoint(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """The last planned pose in the global frame: float32 poses (as the agent's ``Trajectory`` holds them) mapped
    with the cache's rear axle ``origin`` (x, y, heading)."""
    last = np.asarray(poses, dtype=np.float32)[-1].astype(np.float64)
    return relative_to_absolute_poses(origin, last)[:2]


def pseudo_closed_loop_weights(endpoint: np.ndarray, start_points: np.ndarray) -> np.ndarray:
    """Gaussian weights of second-stage scenes [N] around ``endpoint``, normalised (uniform if the sum is ~0)."""
    squared = (endpoint[0] - start_points[:, 0]) ** 2 + (endpoint[1] - start_points[:, 1]) ** 2
    weights = np.exp(-squared / (2 * SIGMA_SQUARED))
    total = weights.sum()
    if np.isclose(total, 0.0) or np.isnan(total):
        return np.full(len(weights), 1.0 / len(weights))
    return weights / total


def _weighted_mean(rows: Sequence[TwoStageRow], columns: Sequence[str]) -> dict[str, float]:
    weights = np.array([row.weight for row in rows])
    total = weights.sum()
    if not rows or total == 0:
        return dict.fromkeys(columns, math.nan)
    return {c: float((np.array([row.value(c) for row in rows]) * weights).sum() / total) for c in columns}


def _mean(groups: Sequence[dict[str, float]], columns: Sequence[str]) -> dict[str, float]:
    """Column means skipping NaN (pandas ``DataFrame.mean``)."""
    out = {}
    for column in columns:
        values = np.array([group[column] for group in groups], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[column] = float(values.sum() / len(values)) if len(values) else math.nan
    return out


def score_two_stage(
    store: MetricCacheStore,
    trajectories: Mapping[str, np.ndarray],
    entries: Sequence[TwoStageEntry],
    config: ScorerConfig | None = None,
    workers: int = 1,
) -> TwoStageResult:
    """Score a two-stage split (see the module docstring): one trajectory [8, 3] per token of ``entries``.

    Tokens without a trajectory or a metric cache are scored invalid and listed in ``missing``; an entry with
    such a token is left out of the summary (the official run fails there).
    """
    from navsim_eval.pool import invalid_score_table, score_many

    config = replace(config or ScorerConfig(), traffic_agents="reactive")
    stage_one = list(dict.fromkeys(t for e in entries for t in (e.stage_one, e.previous)))
    stage_two = list(dict.fromkeys(t for e in entries for t in e.synthetic_tokens))
    tokens = [*stage_one, *stage_two]
    plans = {t: np.asarray(trajectories[t], dtype=np.float64).reshape(-1, 8, 3)[0] for t in tokens if t in trajectories}
    scorable = [t for t in tokens if t in plans and t in store]
    tables = dict(
        zip(scorable, score_many([(t, plans[t]) for t in scorable], store, "v2", workers, config=config), strict=True)
    )
    rows: dict[str, TwoStageRow] = {}
    for stage, stage_tokens in ((1, stage_one), (2, stage_two)):
        for token in stage_tokens:
            if token not in tables:
                reason = "no trajectory" if token not in plans else "no metric cache"
                rows[token] = TwoStageRow(token, stage, invalid_score_table(token, "v2", 1, reason))
                continue
            row = TwoStageRow(token, stage, tables[token])
            if row.valid:
                ego = store[token].ego
                axle = rear_axle(ego.x, ego.y, ego.heading)
                row.start_point = axle
                row.endpoint = planned_endpoint(np.array([axle[0], axle[1], ego.heading]), plans[token])
            rows[token] = row
    missing = [t for t in tokens if not rows[t].valid]
    complete = [e for e in entries if all(rows[t].valid for t in (e.stage_one, e.previous, *e.synthetic_tokens))]

    for entry in complete:  # EC to both tokens of each pair, then the weights of each synthetic group
        for current, previous in ((entry.stage_one, entry.previous), *entry.pairs):
            comfort = _extended_comfort(rows[current].table, rows[previous].table)
            for token in (current, previous):
                rows[token].table.columns[EC_COLUMN] = np.array([comfort])
        rows[entry.stage_one].weight = rows[entry.previous].weight = 1.0
        for index, anchor in ((0, entry.stage_one), (1, entry.previous)):
            group = [rows[pair[index]] for pair in entry.pairs]
            weights = pseudo_closed_loop_weights(rows[anchor].endpoint, np.array([r.start_point for r in group]))
            for row, weight in zip(group, weights, strict=True):
                row.weight = float(weight)
    for row in rows.values():
        table = row.table
        if row.valid and not math.isnan(float(table.columns[EC_COLUMN][0])):
            columns = dict(table.aggregation_columns or table.columns)
            columns[EC_COLUMN] = table.columns[EC_COLUMN]
            table.columns["score"] = aggregate(columns, config, "v2")
    summary = _summary(rows, complete)
    ordered = [rows[t] for t in tokens]
    return TwoStageResult(ordered, summary, missing, len(complete))


def _extended_comfort(current: ScoreTable, previous: ScoreTable) -> float:
    """EC between the simulated plans of two frames 0.5 s apart (the official start-time difference in seconds)."""
    interval = current.t0_us * 1e-6 - previous.t0_us * 1e-6
    states = current.simulated_states[:1], previous.simulated_states[:1]
    return float(two_frame_extended_comfort(states[0], states[1], interval)[0])


def _summary(rows: Mapping[str, TwoStageRow], entries: Sequence[TwoStageEntry]) -> dict[str, dict[str, float]]:
    """The three summary rows (``calculate_individual_mapping_scores`` and the CSV's summary layout)."""
    columns = SCORE_COLUMNS
    groups, stage_one, stage_two = [], [], []
    for entry in entries:
        s1 = [_weighted_mean([rows[entry.stage_one]], columns), _weighted_mean([rows[entry.previous]], columns)]
        s2 = [_weighted_mean([rows[pair[i]] for pair in entry.pairs], columns) for i in (0, 1)]
        stage_one.extend(s1)
        stage_two.extend(s2)
        g1 = {c: s1[0][c] * s2[0][c] for c in columns}
        g2 = {c: s1[1][c] * s2[1][c] for c in columns}
        groups.append({c: (g1[c] + g2[c]) / 2 for c in columns})
    one, two, both = _mean(stage_one, columns), _mean(stage_two, columns), _mean(groups, columns)
    metrics = [c for c in columns if c != "score"]
    return {
        STAGE_ONE: {"score": one["score"], **{f"{c}_stage_one": one[c] for c in metrics}},
        STAGE_TWO: {"score": two["score"], **{f"{c}_stage_two": two[c] for c in metrics}},
        COMBINED: {
            "score": both["score"],
            **{f"{c}_stage_one": one[c] for c in metrics},
            **{f"{c}_stage_two": two[c] for c in metrics},
        },
    }
