"""Score many scenes in parallel: worker processes load metric caches themselves and never crash the batch.

Only tokens and trajectories travel to the workers; each worker opens the cache store once (its initializer) and
reads the scenes it is given. A scene that cannot be scored (no cache, corrupt file, scorer error, even a worker
process that dies) comes back as a :class:`ScoreTable` whose rows are all invalid with score 0 and the reason.
Processes are started with "spawn" by default, which is safe in programs that use torch/CUDA or threads. Workers
die with the process that started them, even when it is SIGKILLed (:func:`_exit_with_parent`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable

ScoreFn = Callable[[MetricCache, np.ndarray, str], ScoreTable]
Item = tuple[str, Any]

# Environment variables that keep each worker's numeric libraries single-threaded (set only if the caller has not).
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_MAX_CHUNKSIZE = 32
_MIN_SCENES_PER_WORKER = 32  # with workers=0, no more than one worker per this many scenes

# Per-process state of a worker, set once by _init_worker.
_SCENES: _SceneScorer | None = None
_MAX_CONTEXTS = 4096  # scene contexts a process keeps (RL scores the same scenes every iteration)


def invalid_score_table(token: str, version: str, num_candidates: int, reason: str) -> ScoreTable:
    """A table of ``num_candidates`` invalid rows: score 0, every other metric NaN, and the reason."""
    if version not in METRIC_COLUMNS:
        raise NavsimEvalError(f"unknown score version {version!r}; expected one of {sorted(METRIC_COLUMNS)}")
    num_candidates = max(int(num_candidates), 1)
    columns = {name: np.full(num_candidates, np.nan) for name in METRIC_COLUMNS[version]}
    columns["score"] = np.zeros(num_candidates)
    return ScoreTable(
        token=token,
        version=version,
        columns=columns,
        valid=np.zeros(num_candidates, dtype=bool),
        reasons=[reason] * num_candidates,
    )


def _num_candidates(trajectories: Any) -> int:
    """K for a [K, 8, 3] batch, else 1 (also for malformed input, which the scorer reports)."""
    try:
        shape = np.shape(trajectories)
    except (TypeError, ValueError):
        return 1
    return shape[0] if len(shape) == 3 else 1


def _default_score_fn() -> ScoreFn:
    from navsim_eval.pdm.scorer import score  # imported lazily: the pool is usable with any score function

    return score


class _SceneScorer:
    """Scores scenes of one store, keeping the most recently used scene contexts (observation geometry, the
    simulated PDM-Closed reference) so that scoring a scene again only simulates and scores the candidates."""

    def __init__(self, store: MetricCacheStore, version: str, score_fn: ScoreFn | None, config: Any = None):
        self.store, self.version, self.config = store, version, config
        self.score_fn = score_fn
        self.contexts: OrderedDict[str, tuple[MetricCache, Any]] = OrderedDict()

    def _scene(self, token: str) -> tuple[MetricCache, Any]:
        if token in self.contexts:
            self.contexts.move_to_end(token)
            return self.contexts[token]
        cache = self.store[token]
        context = None
        if self.score_fn is None:
            from navsim_eval.pdm.scorer import SceneContext

            traffic = getattr(self.config, "traffic_agents", "non_reactive") if self.version == "v2" else "non_reactive"
            context = SceneContext.build(cache, self.version, traffic)
        self.contexts[token] = (cache, context)
        if len(self.contexts) > _MAX_CONTEXTS:
            self.contexts.popitem(last=False)
        return cache, context

    def score_item(self, token: str, trajectories: Any) -> ScoreTable:
        """Score one scene; every failure becomes an all-invalid table with the reason."""
        try:
            cache, context = self._scene(token)
        except NavsimEvalError as error:
            return invalid_score_table(token, self.version, _num_candidates(trajectories), f"metric cache: {error}")
        try:
            if self.score_fn is None:
                from navsim_eval.pdm.scorer import score

                table = score(cache, trajectories, self.version, self.config, context=context)
            else:
                table = self.score_fn(cache, trajectories, self.version)
        except NavsimEvalError as error:
            reason = f"{type(error).__name__}: {error}"
            return invalid_score_table(token, self.version, _num_candidates(trajectories), reason)
        except Exception as error:  # a scorer bug must not take the batch down; keep the traceback for the report
            where = traceback.extract_tb(error.__traceback__)[-1]
            reason = f"internal error {type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"
            return invalid_score_table(token, self.version, _num_candidates(trajectories), reason)
        if table.token != token:
            table.token = token
        return table

    def score_chunk(self, chunk: Sequence[Item]) -> list[ScoreTable]:
        return [self.score_item(token, trajectories) for token, trajectories in chunk]


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started the pool is gone.

    A parent killed with SIGKILL cannot shut the pool down, and an idle worker would wait on its task queue forever
    (it holds that pipe's write end itself, so it never sees end-of-file), reparented to PID 1. multiprocessing
    gives every child a sentinel that becomes readable when its parent dies (with "forkserver" the parent is the
    pool's process, not the fork server); a daemon thread waits on it. Not Linux's PR_SET_PDEATHSIG: that signal
    fires when the *thread* that started the worker ends, and workers are started by whichever thread submits work.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns once the parent process has exited
        os._exit(1)

    threading.Thread(target=watch, name="navsim-eval-parent-watch", daemon=True).start()


def _init_worker(root: str, entries: dict[str, str], version: str, score_fn: ScoreFn | None, config: Any) -> None:
    """Runs once per worker process: watch the parent, open the store view and set up the scene scorer."""
    global _SCENES
    _exit_with_parent()
    _SCENES = _SceneScorer(MetricCacheStore.from_entries(root, entries), version, score_fn, config)


def _score_chunk(chunk: list[Item]) -> list[ScoreTable]:
    assert _SCENES is not None, "worker not initialised"
    return _SCENES.score_chunk(chunk)


def default_workers() -> int:
    """CPUs this process may run on (affinity-aware where the OS supports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Workers inherit the environment at start: keep BLAS/OpenMP single-threaded unless the caller chose."""
    added = [name for name in _THREAD_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class ScoringPool:
    """A pool of scoring processes that stays up between calls (RL scores rollouts every iteration).

    ``workers``: 0 = every available CPU; 1 = score in this process (no pool). ``config`` is a
    ``ScorerConfig`` (weights, human filter) used by every worker; ``score_fn`` replaces the scorer altogether
    (a picklable module-level function when workers > 1). Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        store: MetricCacheStore | str | os.PathLike,
        version: str = "v1",
        workers: int = 0,
        config: Any = None,
        score_fn: ScoreFn | None = None,
        mp_context: str = "spawn",
    ) -> None:
        if version not in METRIC_COLUMNS:
            raise NavsimEvalError(f"unknown score version {version!r}; expected one of {sorted(METRIC_COLUMNS)}")
        if workers < 0:
            raise NavsimEvalError(f"workers must be >= 0 (0 = all CPUs), got {workers}")
        self.store = store if isinstance(store, MetricCacheStore) else MetricCacheStore(store)
        self.version = version
        self.workers = workers or default_workers()
        if score_fn is None:
            _default_score_fn()  # fail here, not in every worker, if the scorer cannot be imported
        self._local = _SceneScorer(self.store, version, score_fn, config) if self.workers == 1 else None
        self._executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            with _single_threaded_children():
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context(mp_context),
                    initializer=_init_worker,
                    initargs=(str(self.store.root), self.store.entries, version, score_fn, config),
                )

    def score(self, items: Iterable[Item], chunksize: int | None = None) -> list[ScoreTable]:
        """Score ``(token, trajectories)`` pairs; results come back in input order, failures as invalid tables."""
        items = [(str(token), trajectories) for token, trajectories in items]
        if not items:
            return []
        if self._local is not None:
            return self._local.score_chunk(items)
        if self._executor is None:
            raise NavsimEvalError("the scoring pool is closed")
        if chunksize is None:
            chunksize = min(_MAX_CHUNKSIZE, max(1, math.ceil(len(items) / (self.workers * 4))))
        size = max(int(chunksize), 1)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        futures = [self._executor.submit(_score_chunk, chunk) for chunk in chunks]
        results: list[ScoreTable] = []
        for chunk, future in zip(chunks, futures, strict=True):
            results.extend(_chunk_result(chunk, future, self.version))
        return results

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_many(
    items: Iterable[Item],
    store: MetricCacheStore | str | os.PathLike,
    version: str = "v1",
    workers: int = 0,
    chunksize: int | None = None,
    score_fn: ScoreFn | None = None,
    mp_context: str = "spawn",
    config: Any = None,
) -> list[ScoreTable]:
    """Score ``(token, trajectories)`` pairs against a metric cache store; results come back in input order.

    ``trajectories`` is one ego-frame trajectory [8, 3] or K candidates [K, 8, 3].

    ``workers``: 0 = every available CPU, but at most one worker per 32 scenes (starting a worker costs about a
    second of imports, so a small batch is scored in this process); 1 = in this process, no pool (handy for
    debugging). ``chunksize`` scenes go to a worker at a time (default: about four chunks per worker, at most 32
    scenes each). ``score_fn`` replaces ``navsim_eval.pdm.scorer.score`` (a picklable module-level function when
    workers > 1). ``mp_context`` is "spawn" (default) or "forkserver"; both are safe with torch/CUDA.
    """
    items = [(str(token), trajectories) for token, trajectories in items]
    if workers < 0:
        raise NavsimEvalError(f"workers must be >= 0 (0 = all CPUs), got {workers}")
    if workers == 0:  # automatic: every CPU, but tiny batches are not worth a worker's start-up (~1 s of imports)
        workers = min(default_workers(), max(1, math.ceil(len(items) / _MIN_SCENES_PER_WORKER)))
    workers = max(1, min(workers, len(items)))
    with ScoringPool(store, version, workers, config, score_fn, mp_context) as pool:
        return pool.score(items, chunksize)


def _chunk_result(chunk: Sequence[Item], future: Future, version: str) -> list[ScoreTable]:
    try:
        tables = future.result()
    except BrokenProcessPool as error:
        reason = f"worker process died before finishing this scene ({error})"
    except Exception as error:  # e.g. an unpicklable result or initializer failure
        reason = f"worker failed: {type(error).__name__}: {error}"
    else:
        return tables
    return [invalid_score_table(token, version, _num_candidates(traj), reason) for token, traj in chunk]
