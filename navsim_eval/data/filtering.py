"""The navtest-style scene filter: keep the scenes where driving well takes more than holding speed, and that the
logged human drives well.

NAVSIM built navtrain and navtest from the OpenScene logs by dropping the scenes that a constant-velocity plan
solves and the scenes whose logged human trajectory fails. Both rules use PDMS v1.1 with threshold 0.8:

* ``constant_velocity``: the straight line at the current speed (the official ``ConstantVelocityAgent``: pose k at
  ``(k + 1) * 0.5 s * |v|`` ahead, heading 0) scores >= 0.8: the scene tests nothing;
* ``human``: the logged future scores < 0.8: the reference itself is not good driving there.

Works on any scenes with metric caches (real OpenScene logs or the synthetic world); :func:`filter_split` writes
the kept scenes as a NAVSIM split file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from navsim_eval.data.splits import Split, write_split
from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.scene import TRAJECTORY_INTERVAL_S, TRAJECTORY_NUM_POSES, EgoState

FILTER_THRESHOLD = 0.8
RULES = ("constant_velocity", "human")


def constant_velocity_trajectory(ego: EgoState, num_poses: int = TRAJECTORY_NUM_POSES) -> np.ndarray:
    """NAVSIM's ``ConstantVelocityAgent`` plan [num_poses, 3]: straight ahead at the current speed."""
    speed = float(np.hypot(ego.vx, ego.vy))
    poses = np.zeros((num_poses, 3))
    poses[:, 0] = (np.arange(num_poses) + 1) * TRAJECTORY_INTERVAL_S * speed
    return poses


@dataclass(frozen=True)
class FilterDecision:
    """The two scores of one scene and whether it stays; ``dropped_by`` lists the rules that removed it."""

    token: str
    constant_velocity_score: float
    human_score: float
    dropped_by: tuple[str, ...]
    reason: str = ""  # why the scene could not be scored (then it is dropped)

    @property
    def kept(self) -> bool:
        return not self.dropped_by and not self.reason


@dataclass
class FilterReport:
    """Every decision and how many scenes each rule removed (a scene can fail both rules)."""

    decisions: list[FilterDecision] = field(default_factory=list)
    threshold: float = FILTER_THRESHOLD

    @property
    def kept_tokens(self) -> list[str]:
        return [d.token for d in self.decisions if d.kept]

    def removed_by(self, rule: str) -> int:
        return sum(rule in d.dropped_by for d in self.decisions)

    @property
    def removed_by_both(self) -> int:
        return sum(len(d.dropped_by) == len(RULES) for d in self.decisions)

    @property
    def unscored(self) -> int:
        return sum(bool(d.reason) for d in self.decisions)

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "rules": {
                "constant_velocity": "dropped when constant velocity scores PDMS v1.1 >= threshold",
                "human": "dropped when the logged human scores PDMS v1.1 < threshold",
            },
            "scenes": len(self.decisions),
            "kept": len(self.kept_tokens),
            "removed_constant_velocity": self.removed_by("constant_velocity"),
            "removed_human": self.removed_by("human"),
            "removed_by_both": self.removed_by_both,
            "unscored": self.unscored,
        }

    def summary(self) -> str:
        data = self.to_json()
        return (
            f"kept {data['kept']} of {data['scenes']} scenes: constant velocity solves "
            f"{data['removed_constant_velocity']} (PDMS >= {self.threshold:g}), the logged human fails "
            f"{data['removed_human']} (PDMS < {self.threshold:g}), {data['removed_by_both']} of them both"
            + (f"; {data['unscored']} could not be scored" if data["unscored"] else "")
        )


def decide(cache: MetricCache, threshold: float = FILTER_THRESHOLD) -> FilterDecision:
    """Score constant velocity and the logged human on one scene (PDMS v1.1) and apply both rules."""
    from navsim_eval.pdm.scorer import score

    if cache.human_trajectory is None:
        return FilterDecision(cache.token, np.nan, np.nan, (), "no logged human trajectory")
    table = score(cache, np.stack([constant_velocity_trajectory(cache.ego), cache.human_trajectory]), "v1")
    if not bool(table.valid.all()):
        return FilterDecision(cache.token, np.nan, np.nan, (), "; ".join(r for r in table.reasons if r))
    cv, human = (float(v) for v in table.score)
    dropped = tuple(rule for rule, fails in zip(RULES, (cv >= threshold, human < threshold), strict=True) if fails)
    return FilterDecision(cache.token, cv, human, dropped)


def filter_caches(
    caches: Iterable[MetricCache | tuple[str, str]],
    threshold: float = FILTER_THRESHOLD,
    progress: Callable[[int], None] | None = None,
) -> FilterReport:
    """Decide every scene; an item ``(token, reason)`` is a scene whose cache could not be built (dropped)."""
    report = FilterReport(threshold=threshold)
    for k, item in enumerate(caches):
        if isinstance(item, tuple):
            report.decisions.append(FilterDecision(item[0], np.nan, np.nan, (), item[1]))
        else:
            report.decisions.append(decide(item, threshold))
        if progress is not None:
            progress(k + 1)
    return report


def split_caches(data_root: str | Path, maps_root: str | Path, split: Split) -> Iterator[MetricCache | tuple[str, str]]:
    """Metric caches of a split's scenes built from the logs and maps (skipped scenes as ``(token, reason)``)."""
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.maps.locations import load_map
    from navsim_eval.pdm.builder import build_metric_cache_from_map

    loader = SceneLoader(data_root, split.data_split, split.scene_filter)
    for record in loader.report.skipped_scenes:
        if record.token:
            yield record.token, f"{record.kind}: {record.detail}"
    for token in loader.tokens:
        try:
            scene = loader[token]
            yield build_metric_cache_from_map(scene, load_map(scene.map_name, maps_root))
        except NavsimEvalError as error:
            yield token, str(error)


def decide_split(
    data_root: str | Path,
    maps_root: str | Path,
    split: Split,
    threshold: float = FILTER_THRESHOLD,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> FilterReport:
    """Decide every scene of a split, building its metric cache from the logs and maps; with ``workers`` > 1 (0 =
    every CPU) the logs are shared out between processes. ``progress(count)`` is called with the number of scenes
    decided since its last call."""
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.parallel import map_in_processes
    from navsim_eval.pool import default_workers

    workers = workers or default_workers()
    if workers <= 1:
        each = (lambda _total: progress(1)) if progress is not None else None  # filter_caches counts a running total
        return filter_caches(split_caches(data_root, maps_root, split), threshold, each)
    loader = SceneLoader(data_root, split.data_split, split.scene_filter)
    skipped = [(r.token, f"{r.kind}: {r.detail}") for r in loader.report.skipped_scenes if r.token]
    per_log = sorted(loader.tokens_per_log().items(), key=lambda item: -len(item[1]))
    chunks: list[list[tuple[str, list[str]]]] = [[] for _ in range(min(workers, len(per_log)) or 1)]
    for k, item in enumerate(per_log):  # largest logs first, dealt round-robin
        chunks[k % len(chunks)].append(item)
    jobs = [
        (
            str(data_root),
            str(maps_root),
            replace(
                split,
                scene_filter=replace(
                    split.scene_filter,
                    log_names=tuple(log for log, _ in chunk),
                    tokens=tuple(t for _, tokens in chunk for t in tokens),
                ),
            ),
            threshold,
        )
        for chunk in chunks
        if chunk
    ]
    report = FilterReport(threshold=threshold)
    report.decisions.extend(FilterDecision(token, np.nan, np.nan, (), reason) for token, reason in skipped)
    decided = {}
    sizes = [len(job[2].scene_filter.tokens) for job in jobs]
    finished = (lambda index: progress(sizes[index])) if progress is not None else None
    for part in map_in_processes(_decide_part, jobs, len(jobs), min_jobs_per_worker=1, done=finished):
        decided.update({d.token: d for d in part.decisions})
    report.decisions.extend(decided[t] for t in loader.tokens if t in decided)
    return report


def _decide_part(data_root: str, maps_root: str, split: Split, threshold: float) -> FilterReport:
    return filter_caches(split_caches(data_root, maps_root, split), threshold)


def filter_split(
    split: Split,
    caches: Iterable[MetricCache | tuple[str, str]],
    out_dir: str | Path,
    name: str,
    threshold: float = FILTER_THRESHOLD,
) -> tuple[Split, FilterReport]:
    """Filter the scenes of ``split`` and write the kept ones as split ``name`` (``<out_dir>/<name>.yaml`` and its
    scene filter, same logs folder) ; returns the new split and the report."""
    report = filter_caches(caches, threshold)
    kept = set(report.kept_tokens)
    order = [t for t in (split.scene_filter.tokens or [d.token for d in report.decisions]) if t in kept]
    scene_filter = replace(split.scene_filter, tokens=tuple(order))
    filtered = Split(name, split.data_split, scene_filter, name)
    write_split(out_dir, filtered)
    return filtered, report
