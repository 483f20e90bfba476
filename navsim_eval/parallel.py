"""Run independent jobs in worker processes (spawned, single-threaded BLAS), or in this process when few."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from navsim_eval.pool import _single_threaded_children, default_workers


def map_in_processes(
    function: Callable[..., Any], jobs: Sequence[tuple], workers: int = 0, min_jobs_per_worker: int = 8
) -> list[Any]:
    """``[function(*job) for job in jobs]`` in input order, in ``workers`` processes (0 = every CPU available).

    ``function`` must be a module-level function and the jobs picklable. With one worker, or fewer than
    ``min_jobs_per_worker`` jobs per worker, everything runs here: starting processes would cost more than it saves.
    """
    workers = min(workers or default_workers(), len(jobs))
    if workers <= 1 or len(jobs) < min_jobs_per_worker * workers:
        return [function(*job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # safe when the caller has threads (torch, BLAS)
    with _single_threaded_children(), ProcessPoolExecutor(workers, mp_context=context) as pool:
        chunksize = max(1, len(jobs) // (4 * workers))
        return list(pool.map(function, *zip(*jobs, strict=True), chunksize=chunksize))
