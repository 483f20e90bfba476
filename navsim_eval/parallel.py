"""Run independent jobs in worker processes (spawned, single-threaded BLAS), or in this process when few."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from navsim_eval.pool import _single_threaded_children, default_workers


def map_in_processes(
    function: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int = 0,
    min_jobs_per_worker: int = 8,
    done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``[function(*job) for job in jobs]`` in input order, in ``workers`` processes (0 = every CPU available);
    ``done(index)`` is called as each job's result arrives (in input order), for progress.

    ``function`` must be a module-level function and the jobs picklable. With one worker, or fewer than
    ``min_jobs_per_worker`` jobs per worker, everything runs here: starting processes would cost more than it saves.
    """
    workers = min(workers or default_workers(), len(jobs))
    if workers <= 1 or len(jobs) < min_jobs_per_worker * workers:
        return _collect((function(*job) for job in jobs), done)
    context = multiprocessing.get_context("spawn")  # safe when the caller has threads (torch, BLAS)
    with _single_threaded_children(), ProcessPoolExecutor(workers, mp_context=context) as pool:
        chunksize = max(1, len(jobs) // (4 * workers))
        return _collect(pool.map(function, *zip(*jobs, strict=True), chunksize=chunksize), done)


def _collect(results: Iterable[Any], done: Callable[[int], None] | None) -> list[Any]:
    collected = []
    for index, result in enumerate(results):
        collected.append(result)
        if done is not None:
            done(index)
    return collected
