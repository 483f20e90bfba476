"""Score model trajectories with navsim_eval: metric caches per scene, K candidates per scene, summaries.

The metric cache of a scene (observation, map, route, PDM-Closed reference) is built once into a cache folder in
navsim_eval's format and kept in memory, so a validation split is prepared once per run and every later evaluation
only simulates and scores.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from navsim_eval.data.loader import SceneLoader
from navsim_eval.errors import NavsimEvalError
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import MetricCacheStore, relative_cache_path, write_metric_cache
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.pdm.scorer import SceneContext, ScorerConfig, score
from navsim_eval.pdm.two_frame import apply_two_frame_comfort
from navsim_eval.pool import default_workers
from navsim_eval.scene import Scene

Scenes = SceneLoader | Sequence[Scene]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class SceneScorer:
    """Scores trajectories of known scenes; scene contexts are reused across calls (RL scores scenes often)."""

    def __init__(self, caches: dict[str, MetricCache], version: str = "v1", config: ScorerConfig | None = None):
        self.caches = caches
        self.version = version
        self.config = config or ScorerConfig()
        self.skipped: dict[str, str] = {}
        self._contexts: dict[str, SceneContext] = {}

    @classmethod
    def from_scenes(
        cls,
        scenes: Scenes,
        maps_root: str | os.PathLike[str] | None,
        cache_dir: str | os.PathLike[str],
        version: str = "v1",
        config: ScorerConfig | None = None,
        progress: Progress | None = None,
        workers: int = 1,
    ) -> SceneScorer:
        """A scorer of ``scenes`` whose metric caches live in ``cache_dir`` (built there by
        :func:`build_metric_caches` where missing). Scenes that get no cache are recorded in ``skipped`` with the
        reason, never fatal."""
        skipped = build_metric_caches(scenes, maps_root, cache_dir, progress=progress, workers=workers)
        store = MetricCacheStore(cache_dir)
        caches = {token: store[token] for token in _tokens(scenes) if token in store}
        scorer = cls(caches, version, config)
        scorer.skipped = skipped
        return scorer

    def __contains__(self, token: str) -> bool:
        return token in self.caches

    def score_plans(self, plans: Mapping[str, np.ndarray]) -> list[ScoreTable]:
        """One plan [8, 3] per known scene, scored as a leaderboard run scores a split: in v2 with two-frame
        extended comfort between each scene and the scene 0.5 s before it in its log (a scene without one keeps EC
        NaN and leaves it out of its score, as the official one-stage scorer does)."""
        tokens = [token for token in plans if token in self]
        if not tokens:
            return []
        tables = self.score(tokens, np.stack([plans[token] for token in tokens]))
        if self.version == "v2":
            apply_two_frame_comfort(tables, self.config)
        return tables

    def score(self, tokens: Sequence[str], trajectories: np.ndarray) -> list[ScoreTable]:
        """Score [B, K, 8, 3] (or [B, 8, 3]) ego-frame trajectories of the scenes ``tokens``: one table per scene."""
        trajectories = np.asarray(trajectories, dtype=np.float64)
        if trajectories.ndim == 3:
            trajectories = trajectories[:, None]
        tables = []
        for token, candidates in zip(tokens, trajectories, strict=True):
            cache = self.caches[token]
            context = self._contexts.get(token)
            if context is None:
                context = self._contexts[token] = SceneContext.build(cache, self.version)
            tables.append(score(cache, candidates, self.version, self.config, context=context))
        return tables


def build_metric_caches(
    scenes: Scenes,
    maps_root: str | os.PathLike[str] | None,
    root: str | os.PathLike[str],
    progress: Progress | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """Write the metric cache of every scene (a SceneLoader, or a sequence of scenes) that the store at ``root``
    lacks; return the scenes that get none (token -> reason). Caches already there are reused, so a second run (or
    a store built by ``navsim-eval cache``) costs nothing.

    ``workers`` > 1 builds them in that many processes (0: every CPU, at most one per 32 scenes to build): each
    worker runs navsim_eval's per-scene builder and writes its files; this process writes the index once."""
    store = MetricCacheStore(root)
    tokens = _tokens(scenes)
    todo = [token for token in tokens if token not in store]
    by_token = None if hasattr(scenes, "tokens") else {scene.token: scene for scene in scenes}
    Path(root).mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers == 0 else workers
    workers = max(1, min(workers, -(-len(todo) // _MIN_SCENES_PER_WORKER)))
    built: dict[str, str] = {}
    failed: dict[str, str] = {}
    done = len(tokens) - len(todo)
    if progress is not None and tokens:
        progress("metric caches", done, len(tokens))

    def scene_of(token: str) -> Scene:
        return scenes[token] if by_token is None else by_token[token]

    def finished(results: Sequence[tuple[str, str | None, str]]) -> None:
        nonlocal done
        for token, relative, error in results:
            if relative is None:
                failed[token] = f"no metric cache: {error}"
            else:
                built[token] = relative
        done += len(results)
        if progress is not None:
            progress("metric caches", done, len(tokens))

    if workers == 1:
        for token in todo:
            finished(_build_caches(str(root), maps_root, [_loaded(scene_of, token)]))
    else:
        chunk = max(1, min(_MAX_CACHE_CHUNK, -(-len(todo) // (workers * 4))))
        with _cache_pool(workers) as pool:
            futures = []
            for start in range(0, len(todo), chunk):
                batch = [_loaded(scene_of, token) for token in todo[start : start + chunk]]
                futures.append(pool.submit(_build_caches, str(root), maps_root, batch))
            for future in futures:
                finished(future.result())
    store = MetricCacheStore.from_entries(root, {**store.entries, **built})
    store.write_index()
    if tokens and len(failed) == len(tokens):  # nothing at all: a root-level problem (e.g. the maps root), not scenes
        first = next(iter(failed.values()))
        raise NavsimEvalError(f"no scene of the split got a metric cache (maps root {maps_root}); the first: {first}")
    return failed


_MIN_SCENES_PER_WORKER = 32  # a worker costs about a second of imports: not worth it for fewer scenes
_MAX_CACHE_CHUNK = 16


def _loaded(scene_of: Callable[[str], Scene], token: str) -> Scene | tuple[str, str]:
    """The scene of ``token``, or (token, why) when it cannot be loaded (reported, never fatal)."""
    try:
        return scene_of(token)
    except ValueError as error:
        return token, str(error)


def _build_caches(
    root: str, maps_root: str | os.PathLike[str] | None, scenes: Sequence[Scene | tuple[str, str]]
) -> list[tuple[str, str | None, str]]:
    """Build and write the caches of ``scenes`` (in a worker or in this process): (token, relative path or None,
    error) per scene. Runs navsim_eval's per-scene builder; the index is written by the caller."""
    out = []
    for scene in scenes:
        if isinstance(scene, tuple):
            out.append((scene[0], None, scene[1]))
            continue
        try:
            cache = build_metric_cache_from_map(scene, load_map(scene.map_name, maps_root))
            write_metric_cache(root, cache)
            out.append((scene.token, relative_cache_path(cache).as_posix(), ""))
        except ValueError as error:  # navsim_eval's errors and malformed scenes alike: never fatal
            out.append((scene.token, None, str(error)))
    return out


@contextlib.contextmanager
def _cache_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes (spawned: safe next to torch) that end with this process (PR_SET_PDEATHSIG on Linux)."""
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _tokens(scenes: Scenes) -> list[str]:
    return list(scenes.tokens) if hasattr(scenes, "tokens") else [scene.token for scene in scenes]


def summarize(tables: Sequence[ScoreTable], candidate: int = 0) -> dict[str, float]:
    """Mean score and sub-metrics of one candidate per scene over valid scenes, the share of valid scenes, and
    the score with invalid scenes counted as 0 (what a leaderboard does)."""
    if not tables:
        return {}
    version = tables[0].version
    valid = np.array([bool(t.valid[candidate]) for t in tables])
    out: dict[str, float] = {}
    for name in METRIC_COLUMNS[version]:
        values = np.array([t.columns[name][candidate] for t in tables], dtype=np.float64)[valid]
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if len(values) else float("nan")
    scores = np.array([t.columns["score"][candidate] if t.valid[candidate] else 0.0 for t in tables])
    out["score_with_invalid_as_zero"] = float(scores.mean())
    out["valid_fraction"] = float(valid.mean())
    out["num_scenes"] = float(len(tables))
    return out
