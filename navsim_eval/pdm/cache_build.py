"""Metric caches of the scenes of a split: what ``navsim-eval cache`` and the conformance runs share.

Each scene becomes a :class:`MetricCache` built with its map as NAVSIM's ``run_metric_caching.py`` builds it
(``builder.build_metric_cache_from_map``); a scene that cannot be cached is reported with its reason, never fatal.
What yields no scene at all (an unreadable log, a token of the split that no log holds) is a
:class:`SourceProblem`, counted apart from the scenes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.two_stage import TwoStageScenes
from navsim_eval.errors import NavsimEvalError
from navsim_eval.maps.locations import load_map
from navsim_eval.maps.nuplan_map import NuPlanMap
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.metric_cache import MetricCache, SceneType
from navsim_eval.progress import Progress

# Kinds of SourceProblem -> how one and several of them read.
UNREADABLE_LOG = "unreadable_log"
MISSING_LOG = "missing_log"
MISSING_TOKEN = "missing_token"
MISSING_SYNTHETIC = "missing_synthetic"
PROBLEM_NAMES = {
    UNREADABLE_LOG: ("unreadable log", "unreadable logs"),
    MISSING_LOG: ("log named by the split but not found", "logs named by the split but not found"),
    MISSING_TOKEN: ("token of the split in no log window", "tokens of the split in no log window"),
    MISSING_SYNTHETIC: (
        "synthetic token of reactive_all_mapping without a scene",
        "synthetic tokens of reactive_all_mapping without a scene",
    ),
}


@dataclass(frozen=True)
class SourceProblem:
    """Something that yields no scene: an unreadable log, or a log or token the split names that is not there."""

    kind: str  # a key of PROBLEM_NAMES
    detail: str  # the log's error, or the missing log name / token

    @staticmethod
    def count(kind: str, number: int) -> str:
        """``1 unreadable log``, ``3 unreadable logs``."""
        one, many = PROBLEM_NAMES[kind]
        return f"{number} {one if number == 1 else many}"


# (source file, token or None, the cache, the reason the scene was skipped, or a problem that is no scene)
CacheResult = tuple[Path, str | None, MetricCache | str | SourceProblem]


class _Maps:
    """``load_map`` that remembers failures: a broken map is read, and its error reported, once per map rather
    than once per scene (each scene then carries the same reason)."""

    def __init__(self, maps_root: str | os.PathLike) -> None:
        self.maps_root = maps_root
        self.failed: dict[str, str] = {}

    def load(self, name: str) -> NuPlanMap:
        if name in self.failed:
            raise NavsimEvalError(self.failed[name])
        try:
            return load_map(name, self.maps_root)
        except NavsimEvalError as error:
            self.failed[name] = str(error)
            raise


def loader_scene_count(loader: SceneLoader) -> int:
    """How many scene results :func:`loader_metric_caches` yields (skipped windows included), for progress."""
    return len(loader.report.skipped_scenes) + len(loader)


def loader_metric_caches(
    loader: SceneLoader, maps_root: str | os.PathLike, maps: _Maps | None = None
) -> Iterator[CacheResult]:
    """The loader's unreadable logs and missing logs / tokens (as problems) and skipped scenes (as reasons), then
    one metric cache (or reason) per loaded scene."""
    report = loader.report
    for record in report.skipped_logs:
        yield loader.log_dir / f"{record.log_name}.pkl", None, SourceProblem(UNREADABLE_LOG, record.detail)
    for name in report.missing_logs:
        yield loader.log_dir / f"{name}.pkl", None, SourceProblem(MISSING_LOG, name)
    for token in report.missing_tokens:
        yield loader.log_dir, token, SourceProblem(MISSING_TOKEN, token)
    for record in report.skipped_scenes:
        yield loader.log_dir / f"{record.log_name}.pkl", record.token, f"{record.kind}: {record.detail}"
    maps = maps if maps is not None else _Maps(maps_root)
    for token in loader.tokens:
        scene = loader[token]
        path = loader.log_dir / f"{scene.log_name}.pkl"
        try:
            yield path, token, build_metric_cache_from_map(scene, maps.load(scene.map_name))
        except NavsimEvalError as error:
            yield path, token, str(error)


def two_stage_scene_count(scenes: TwoStageScenes) -> int:
    """How many scene results :func:`two_stage_metric_caches` yields, for progress."""
    return loader_scene_count(scenes.stage_one) + len(scenes.unreadable) + len(scenes.stage_two)


def two_stage_metric_caches(scenes: TwoStageScenes, maps_root: str | os.PathLike) -> Iterator[CacheResult]:
    """Both stages of a two-stage split: the stage-one scenes, then the synthetic scenes (v2-only caches without
    a human trajectory, as the official cache of a 17-character token), each with its reactive-traffic set-up.
    Tokens of ``reactive_all_mapping`` that no scene provides are problems."""
    maps = _Maps(maps_root)
    yield from loader_metric_caches(scenes.stage_one, maps_root, maps)
    reported = set(scenes.stage_one.report.missing_tokens)
    for token in scenes.missing_stage_one:
        if token not in reported:
            yield scenes.stage_one.log_dir, token, SourceProblem(MISSING_TOKEN, token)
    for token in scenes.missing_stage_two:
        yield scenes.synthetic_dir, token, SourceProblem(MISSING_SYNTHETIC, token)
    for path, reason in scenes.unreadable:
        yield path, None, reason
    for token, synthetic in scenes.stage_two.items():
        scene = synthetic.scene
        try:
            nuplan_map = maps.load(scene.map_name)
            yield synthetic.path, token, build_metric_cache_from_map(scene, nuplan_map, scene_type=SceneType.SYNTHETIC)
        except NavsimEvalError as error:
            yield synthetic.path, token, str(error)


@dataclass
class CacheWriteReport:
    """What :func:`write_metric_caches` did: the store, the scenes written (token -> source file) and skipped
    ((source, reason)), and the problems that are no scene."""

    store: MetricCacheStore
    written: dict[str, Path] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[tuple[Path, SourceProblem]] = field(default_factory=list)

    @property
    def scenes_read(self) -> int:
        return len(self.written) + len(self.skipped)


def write_metric_caches(
    results: Iterable[CacheResult], out: str | os.PathLike, fsync: bool = True, progress: Progress | None = None
) -> CacheWriteReport:
    """Write the caches into the store at ``out`` (index written once at the end); ``progress`` counts scenes.

    A token seen twice is kept once and the second one reported as skipped.
    """
    store = MetricCacheStore(out)
    store.root.mkdir(parents=True, exist_ok=True)
    report = CacheWriteReport(store)
    for path, _token, result in results:
        if isinstance(result, SourceProblem):
            report.problems.append((path, result))
            continue
        if isinstance(result, str):
            report.skipped.append((path, result))
        elif result.token in report.written:
            report.skipped.append(
                (path, f"duplicate token {result.token!r} (already read from {report.written[result.token]})")
            )
        else:
            store.add(result, write_index=False, fsync=fsync)
            report.written[result.token] = path
        if progress is not None:
            progress.update()
    if report.written:
        store.write_index()
    return report
