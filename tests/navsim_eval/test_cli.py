"""navsim-eval end to end on three conformance cases: cache, score (official CSV), conformance, bad input."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.cli import main
from navsim_eval.conformance import default_conformance_dir, load_case
from navsim_eval.csv_io import read_score_csv
from navsim_eval.pdm.cache_io import INDEX_FILE, MetricCacheStore
from navsim_eval.pdm.results import METRIC_COLUMNS

CONFORMANCE_DIR = default_conformance_dir()
CASE_IDS = ["curve_good", "straight_hit_static_cone", "isec_red_light_run"]
pytestmark = pytest.mark.skipif(not CONFORMANCE_DIR.is_dir(), reason="conformance cases not available")
needs_scorer = pytest.mark.skipif(
    importlib.util.find_spec("navsim_eval.pdm.scorer") is None, reason="navsim_eval.pdm.scorer not written yet"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three case files plus two bad ones, a cache built from them, and a trajectory file."""
    root = tmp_path_factory.mktemp("cli")
    scenes = root / "scenes"
    scenes.mkdir()
    for case_id in CASE_IDS:
        shutil.copy(CONFORMANCE_DIR / "cases" / f"{case_id}.json", scenes)
    bare = json.loads((CONFORMANCE_DIR / "cases" / f"{CASE_IDS[0]}.json").read_text())["input"]
    (scenes / "bare_input.json").write_text(json.dumps(bare))  # a bare input dict; token = file name
    (scenes / "notes.json").write_text('{"hello": 1}')
    (scenes / "broken.json").write_text("{")
    trajectories = {case_id: load_case(scenes / f"{case_id}.json").agent_trajectory.tolist() for case_id in CASE_IDS}
    trajectories["no_such_scene"] = trajectories[CASE_IDS[0]]
    (root / "trajectories.json").write_text(json.dumps(trajectories))
    return root


@pytest.fixture(scope="module")
def cache_dir(workdir: Path) -> Path:
    out = workdir / "cache"
    assert main(["cache", "--scenes", str(workdir / "scenes"), "--out", str(out)]) == 0
    return out


def test_help_explains_every_subcommand(capsys: pytest.CaptureFixture) -> None:
    for argv in ([], ["cache"], ["score"], ["conformance"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("cache", "score", "conformance", "--scenes", "--trajectories", "--workers", "--tokens", "--dir"):
        assert needle in text


def test_cache_command_reports_counts_and_skips(workdir: Path, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    store = MetricCacheStore(cache_dir)
    assert sorted(store.tokens()) == sorted([*CASE_IDS, "bare_input"])
    assert (cache_dir / INDEX_FILE).is_file()
    # run again to see the report (the store is updated in place)
    code = main(["cache", "--scenes", str(workdir / "scenes"), "--out", str(cache_dir), "--strict"])
    out = capsys.readouterr().out
    assert code == 1  # --strict and two files skipped
    assert "wrote 4 metric caches" in out and "skipped 2 scenes:" in out
    assert "notes.json: not a scene" in out and "broken.json: invalid JSON" in out


def test_cache_command_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cache", "--scenes", str(tmp_path / "absent"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "absent: no such file or directory" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["cache", "--scenes", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
    assert "no .json scene files" in capsys.readouterr().err


def test_score_bad_input_is_a_clear_error(workdir: Path, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    bad = workdir / "bad_traj.json"
    bad.write_text(json.dumps({CASE_IDS[0]: [[0.0, 0.0, 0.0]] * 7}))
    base = ["score", "--cache", str(cache_dir), "--version", "v1", "--out", str(workdir / "x.csv")]
    assert main([*base, "--trajectories", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad_traj.json: token 'curve_good'" in err and "[7, 3]" in err and "Traceback" not in err
    assert main([*base, "--trajectories", str(workdir / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    assert main([*base, "--trajectories", str(workdir / "scenes" / "broken.json")]) == 2
    assert "broken.json: not readable JSON" in capsys.readouterr().err
    empty_cache = workdir / "empty_cache"
    empty_cache.mkdir(exist_ok=True)
    argv = ["score", "--cache", str(empty_cache), "--version", "v1", "--out", str(workdir / "x.csv")]
    assert main([*argv, "--trajectories", str(workdir / "trajectories.json")]) == 2
    assert "no metric caches found" in capsys.readouterr().err


def test_python_dash_m_entry_point(workdir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "navsim_eval",
            "cache",
            "--scenes",
            str(workdir / "scenes" / "notes.json"),
            "--out",
            str(workdir / "unused_cache"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "notes.json: not a scene" in result.stdout and "no metric cache was written" in result.stderr


@needs_scorer
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_score_writes_official_csv(version: str, workdir: Path, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from navsim_eval.pdm.scorer import score

    out = workdir / f"scores_{version}.csv"
    argv = ["score", "--cache", str(cache_dir), "--trajectories", str(workdir / "trajectories.json")]
    assert main([*argv, "--version", version, "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "no_such_scene" in printed and "bare_input" in printed  # reported: no cache / no trajectory
    csv = read_score_csv(out)
    assert csv.version == version
    assert [r["token"] for r in csv.rows] == [*CASE_IDS, "no_such_scene"]
    rows = csv.by_token()
    assert rows["no_such_scene"]["valid"] is False and np.isnan(rows["no_such_scene"]["score"])
    store = MetricCacheStore(cache_dir)
    for case_id in CASE_IDS:
        direct = score(
            store[case_id], load_case(CONFORMANCE_DIR / "cases" / f"{case_id}.json").agent_trajectory, version
        )
        for name in METRIC_COLUMNS[version]:
            assert rows[case_id][name] == pytest.approx(float(direct.columns[name][0]), abs=0, nan_ok=True)
    average = csv.average
    assert average["token"] == ("average" if version == "v1" else "average_all_frames")
    assert average["valid"] is False
    assert average["score"] == pytest.approx(np.mean([rows[c]["score"] for c in CASE_IDS]), abs=1e-15)


@needs_scorer
def test_score_npz_with_candidates_and_token_filter(workdir: Path, cache_dir: Path) -> None:
    plans = {c: load_case(CONFORMANCE_DIR / "cases" / f"{c}.json").agent_trajectory for c in CASE_IDS}
    npz = workdir / "candidates.npz"
    np.savez(npz, **{c: np.stack([p, p * 0.5]) for c, p in plans.items()})
    out = workdir / "k.csv"
    argv = ["score", "--cache", str(cache_dir), "--trajectories", str(npz), "--version", "v1", "--out", str(out)]
    assert main([*argv, "--workers", "2", "--tokens", CASE_IDS[0], CASE_IDS[2]]) == 0
    assert [r["token"] for r in read_score_csv(out).rows] == [CASE_IDS[0], CASE_IDS[2]]
    details = read_score_csv(workdir / "k_candidates.csv")
    assert [(r["token"], r["candidate"]) for r in details.rows] == [
        (CASE_IDS[0], 0),
        (CASE_IDS[0], 1),
        (CASE_IDS[2], 0),
        (CASE_IDS[2], 1),
    ]
    official = read_score_csv(out).by_token()
    assert official[CASE_IDS[0]]["score"] == details.rows[0]["score"]


@needs_scorer
def test_conformance_command(capsys: pytest.CaptureFixture) -> None:
    code = main(["conformance", "--cases", *CASE_IDS])
    out = capsys.readouterr().out
    assert all(case_id in out for case_id in CASE_IDS)
    assert "v1: 3/3 passed" in out and "v2: 3/3 passed" in out, out
    assert code == 0


@needs_scorer
def test_score_marks_a_nan_trajectory_invalid_and_scores_the_rest(
    workdir: Path, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    plans = {c: load_case(CONFORMANCE_DIR / "cases" / f"{c}.json").agent_trajectory for c in CASE_IDS}
    broken = plans[CASE_IDS[1]].copy()
    broken[3, 0] = np.nan
    path = workdir / "one_nan.json"
    path.write_text(json.dumps({**{c: p.tolist() for c, p in plans.items()}, CASE_IDS[1]: broken.tolist()}))
    out = workdir / "nan.csv"
    argv = ["score", "--cache", str(cache_dir), "--version", "v1", "--out", str(out), "--workers", "1"]
    code = main([*argv, "--trajectories", str(path)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = read_score_csv(out).by_token()
    assert [rows[c]["valid"] for c in CASE_IDS] == [True, False, True]
    assert f"invalid {CASE_IDS[1]}: trajectory contains NaN or infinite poses" in printed.out
    assert main([*argv, "--trajectories", str(path), "--strict"]) == 1
    capsys.readouterr()
    team = ["--team-name", "t", "--authors", "a", "--email", "e", "--institution", "i", "--country", "c"]
    submission = ["submit", "--trajectories", str(path), *team, "--out", str(workdir / "sub" / "submission.pkl")]
    assert main(submission) == 2  # a submission still needs finite poses
    assert "one_nan.json: token 'straight_hit_static_cone': contains NaN" in capsys.readouterr().err
    # K candidates, one of them NaN: that candidate is invalid, the scene keeps candidate 0's score
    npz = workdir / "nan_candidates.npz"
    np.savez(npz, **{CASE_IDS[0]: np.stack([plans[CASE_IDS[0]], broken])})
    assert main([*argv, "--trajectories", str(npz), "--out", str(workdir / "nan_k.csv")]) == 0
    details = read_score_csv(workdir / "nan_k_candidates.csv").rows
    assert [(r["candidate"], r["valid"]) for r in details] == [(0, True), (1, False)]
