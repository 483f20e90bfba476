"""Metric caches of the scenes of a split: what ``navsim-eval cache`` and the conformance runs share.

Each scene becomes a :class:`MetricCache` built with its map as NAVSIM's ``run_metric_caching.py`` builds it
(``builder.build_metric_cache_from_map``); a scene that cannot be cached is reported with its reason, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.two_stage import TwoStageScenes
from navsim_eval.errors import NavsimEvalError
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.metric_cache import MetricCache, SceneType

# (source file, token or None, the cache or the reason it was skipped)
CacheResult = tuple[Path, str | None, MetricCache | str]


def loader_metric_caches(loader: SceneLoader, maps_root: str | os.PathLike) -> Iterator[CacheResult]:
    """The loader's skipped logs and scenes (as reasons), then one metric cache (or reason) per loaded scene."""
    for record in loader.report.skipped_logs + loader.report.skipped_scenes:
        yield loader.log_dir / f"{record.log_name}.pkl", record.token, f"{record.kind}: {record.detail}"
    for token in loader.tokens:
        scene = loader[token]
        path = loader.log_dir / f"{scene.log_name}.pkl"
        try:
            yield path, token, build_metric_cache_from_map(scene, load_map(scene.map_name, maps_root))
        except NavsimEvalError as error:
            yield path, token, str(error)


def two_stage_metric_caches(scenes: TwoStageScenes, maps_root: str | os.PathLike) -> Iterator[CacheResult]:
    """Both stages of a two-stage split: the stage-one scenes, then the synthetic scenes (v2-only caches without
    a human trajectory, as the official cache of a 17-character token), each with its reactive-traffic set-up."""
    yield from loader_metric_caches(scenes.stage_one, maps_root)
    for path, reason in scenes.unreadable:
        yield path, None, reason
    for token, synthetic in scenes.stage_two.items():
        scene = synthetic.scene
        try:
            nuplan_map = load_map(scene.map_name, maps_root)
            yield synthetic.path, token, build_metric_cache_from_map(scene, nuplan_map, scene_type=SceneType.SYNTHETIC)
        except NavsimEvalError as error:
            yield synthetic.path, token, str(error)


def write_metric_caches(
    results: Iterable[CacheResult], out: str | os.PathLike, fsync: bool = True
) -> tuple[MetricCacheStore, dict[str, Path], list[tuple[Path, str]]]:
    """Write the caches into the store at ``out`` (index written once at the end).

    Returns the store, the written tokens with their source files, and the skipped (source, reason) pairs; a
    token seen twice is kept once and the second one reported.
    """
    store = MetricCacheStore(out)
    store.root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    skipped: list[tuple[Path, str]] = []
    for path, _token, result in results:
        if isinstance(result, str):
            skipped.append((path, result))
        elif result.token in written:
            skipped.append((path, f"duplicate token {result.token!r} (already read from {written[result.token]})"))
        else:
            store.add(result, write_index=False, fsync=fsync)
            written[result.token] = path
    if written:
        store.write_index()
    return store, written, skipped
