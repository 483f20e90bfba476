"""Parallel scoring: input order, per-scene failures become invalid rows, the batch never crashes."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.conformance import default_conformance_dir, load_case
from navsim_eval.errors import InvalidTrajectoryError
from navsim_eval.pdm.cache_io import MetricCacheStore, build_metric_cache_store
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.pool import invalid_score_table, score_many

CONFORMANCE_DIR = default_conformance_dir()
CASE_IDS = ["curve_good", "straight_hit_static_cone", "isec_red_light_run"]
pytestmark = pytest.mark.skipif(not CONFORMANCE_DIR.is_dir(), reason="conformance cases not available")

# Sentinels in the first pose's x that make fake_score misbehave.
EXPLODE, REJECT, DIE = 999.0, 666.0, -777.0


def fake_score(cache: MetricCache, trajectories: np.ndarray, version: str) -> ScoreTable:
    """Stand-in scorer (module level so worker processes can import it): the score encodes plan and cache."""
    plans = np.asarray(trajectories, dtype=np.float64)
    plans = plans[None] if plans.ndim == 2 else plans
    first = plans[0, 0, 0]
    if first == EXPLODE:
        raise RuntimeError("scorer exploded")
    if first == REJECT:
        raise InvalidTrajectoryError("plan rejected")
    if first == DIE:
        os._exit(3)
    num = len(plans)
    columns = {name: np.ones(num) for name in METRIC_COLUMNS[version]}
    columns["score"] = plans[:, -1, 0] / 100.0 + cache.references["v1"][0, 0]
    return ScoreTable(
        token=cache.token,
        version=version,
        columns=columns,
        valid=np.ones(num, dtype=bool),
        reasons=[""] * num,
        diagnostics={"pid": np.full(num, os.getpid())},
    )


def _plan(end_x: float, first_x: float = 0.5, k: int | None = None) -> np.ndarray:
    plan = np.zeros((8, 3))
    plan[:, 0] = np.linspace(first_x, end_x, 8)
    return plan if k is None else np.stack([plan + i for i in range(k)])


@pytest.fixture(scope="module")
def cases() -> dict[str, object]:
    return {case_id: load_case(CONFORMANCE_DIR / "cases" / f"{case_id}.json") for case_id in CASE_IDS}


@pytest.fixture(scope="module")
def store(cases: dict, tmp_path_factory: pytest.TempPathFactory) -> MetricCacheStore:
    root = tmp_path_factory.mktemp("pool_cache")
    caches = [case.cache for case in cases.values()]
    caches.append(dataclasses.replace(caches[0], token="corrupt"))
    store = build_metric_cache_store(root, caches, fsync=False)
    path = store.path("corrupt")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    return store


def _items() -> list[tuple[str, np.ndarray]]:
    a, b, c = CASE_IDS
    return [
        (a, _plan(10.0)),
        ("missing", _plan(20.0)),
        (b, _plan(30.0, first_x=EXPLODE)),
        ("corrupt", _plan(40.0)),
        (c, _plan(50.0, k=3)),
        (b, _plan(60.0, first_x=REJECT)),
        (c, _plan(70.0)),
    ]


def _check(tables: list[ScoreTable], store: MetricCacheStore) -> None:
    items = _items()
    assert [t.token for t in tables] == [token for token, _ in items]
    assert [len(t) for t in tables] == [1, 1, 1, 1, 3, 1, 1]
    valid = [bool(t.valid.all()) for t in tables]
    assert valid == [True, False, False, False, True, False, True]
    for table, (token, plan) in zip(tables, items, strict=True):
        if table.valid.all():
            expected = np.atleast_2d(plan[..., -1, 0]).ravel() / 100.0 + store[token].references["v1"][0, 0]
            np.testing.assert_array_equal(table.score, expected)
        else:
            assert np.all(table.score == 0.0) and all(table.reasons)
    assert "no metric cache for token 'missing'" in tables[1].reasons[0]
    assert "RuntimeError: scorer exploded" in tables[2].reasons[0]
    assert "content hash mismatch" in tables[3].reasons[0] and "corrupt" in tables[3].reasons[0]
    assert "InvalidTrajectoryError: plan rejected" in tables[5].reasons[0]


def test_in_process_keeps_order_and_marks_failures(store: MetricCacheStore) -> None:
    tables = score_many(_items(), store, "v1", workers=1, score_fn=fake_score)
    _check(tables, store)
    assert all(t.diagnostics["pid"][0] == os.getpid() for t in tables if t.valid.all())


def test_pool_keeps_order_and_marks_failures(store: MetricCacheStore) -> None:
    tables = score_many(_items(), store.root, "v2", workers=2, chunksize=2, score_fn=fake_score)
    _check(tables, store)
    assert all(t.version == "v2" for t in tables)
    assert all(t.diagnostics["pid"][0] != os.getpid() for t in tables if t.valid.all())


def test_automatic_workers_scores_small_batches_in_process(store: MetricCacheStore) -> None:
    tables = score_many([(CASE_IDS[0], _plan(10.0))] * 3, store, "v1", workers=0, score_fn=fake_score)
    assert [t.diagnostics["pid"][0] for t in tables] == [os.getpid()] * 3


def test_dead_worker_does_not_crash_the_batch(store: MetricCacheStore) -> None:
    items = [(CASE_IDS[0], _plan(10.0)), (CASE_IDS[1], _plan(20.0, first_x=DIE)), (CASE_IDS[2], _plan(30.0))]
    tables = score_many(items, store, "v1", workers=2, chunksize=1, score_fn=fake_score)
    assert [t.token for t in tables] == [token for token, _ in items]
    assert not tables[1].valid[0] and "worker process died" in tables[1].reasons[0]


def test_invalid_score_table_shape() -> None:
    table = invalid_score_table("tok", "v2", 3, "why")
    assert len(table) == 3 and not table.valid.any() and np.all(table.score == 0.0)
    assert set(table.columns) == set(METRIC_COLUMNS["v2"]) and table.reasons == ["why"] * 3
    assert np.isnan(table.columns["ego_progress"]).all()


def test_empty_input_and_bad_arguments(store: MetricCacheStore) -> None:
    assert score_many([], store, "v1", score_fn=fake_score) == []
    with pytest.raises(ValueError, match="unknown score version"):
        score_many([], store, "v3", score_fn=fake_score)
    with pytest.raises(ValueError, match="workers"):
        score_many([], store, "v1", workers=-1, score_fn=fake_score)


@pytest.mark.skipif(
    importlib.util.find_spec("navsim_eval.pdm.scorer") is None, reason="navsim_eval.pdm.scorer not written yet"
)
def test_pool_matches_direct_scoring_with_real_scorer(store: MetricCacheStore, cases: dict, tmp_path: Path) -> None:
    from navsim_eval.pdm.scorer import score

    items = []
    for case_id, case in cases.items():
        items.append((case_id, np.stack([case.agent_trajectory, case.agent_trajectory * 0.5])))
    items.append(("missing", cases[CASE_IDS[0]].agent_trajectory))
    for version in ("v1", "v2"):
        tables = score_many(items, store, version, workers=2)
        assert [t.token for t in tables] == [token for token, _ in items]
        for table, (token, plans) in zip(tables[:-1], items[:-1], strict=True):
            direct = score(cases[token].cache, plans, version)
            for name in METRIC_COLUMNS[version]:
                np.testing.assert_array_equal(table.columns[name], direct.columns[name], err_msg=f"{token} {name}")
            np.testing.assert_array_equal(table.valid, direct.valid)
        assert not tables[-1].valid[0] and tables[-1].score[0] == 0.0


def test_persistent_pool_reuses_workers_and_applies_the_scorer_config(cases: dict, tmp_path: Path) -> None:
    from navsim_eval.pdm.scorer import ScorerConfig, score
    from navsim_eval.pool import ScoringPool

    case = cases["curve_good"]
    store = build_metric_cache_store(tmp_path / "store", [case.cache])
    slow = case.agent_trajectory.copy()
    slow[:, 0] *= 0.5  # EP < 1, so the progress weight matters
    heavy = ScorerConfig(progress_weight=10.0)
    with ScoringPool(store, "v1", workers=2, config=heavy) as pool:
        first = pool.score([(case.case_id, slow)])
        second = pool.score([(case.case_id, slow)] * 3)
    expected = score(case.cache, slow, "v1", heavy)
    assert first[0].score[0] == pytest.approx(expected.score[0], abs=1e-12)
    assert [t.score[0] for t in second] == [first[0].score[0]] * 3
    assert expected.score[0] != pytest.approx(score(case.cache, slow, "v1").score[0])


def _process_state(pid: int) -> str | None:
    """The /proc state letter of a process (Z = zombie), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of a process (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


PARENT_SCRIPT = """
import sys, time
import numpy as np
from navsim_eval.pool import ScoringPool

if __name__ == "__main__":
    pools = [ScoringPool(sys.argv[1], "v1", workers=2, mp_context=context) for context in ("spawn", "forkserver")]
    for pool in pools:
        tables = pool.score([("missing", np.zeros((8, 3)))] * 4, chunksize=1)  # both workers started and answering
    print("ready", tables[0].reasons[0], flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")
def test_workers_die_when_the_main_process_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "empty_store").mkdir()
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "empty_store")], stdout=subprocess.PIPE, text=True, env=env
    )
    workers: list[int] = []
    try:
        ready = parent.stdout.readline()
        assert ready.startswith("ready") and "no metric cache" in ready, ready
        workers = _descendants(parent.pid)
        # 2 + 2 workers, the fork server and multiprocessing's resource tracker
        assert len(workers) >= 5, f"expected the scoring workers among the descendants, found {workers}"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10.0
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in workers if _process_state(pid) not in (None, "Z")]
        assert not alive, f"scoring workers {alive} outlived their SIGKILLed parent by 10 s"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for pid in workers:  # reparented by now: clean up after a failure
            if _process_state(pid) not in (None, "Z"):
                os.kill(pid, signal.SIGKILL)


def test_map_in_processes_reports_each_result_in_order():
    from navsim_eval.parallel import map_in_processes

    done: list[int] = []
    jobs = [(k,) for k in range(5)]
    assert map_in_processes(abs, jobs, workers=1, done=done.append) == list(range(5))
    assert done == [0, 1, 2, 3, 4]
