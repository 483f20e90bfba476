"""Official NAVSIM metric caches read into ours: an allow-list unpickler (hostile pickles refused naming the
class), absolute metadata paths of another machine, the version the cache was made for, and every official
(kind, version) cell reproduced from the converted caches."""

from __future__ import annotations

import lzma
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.cli import main
from navsim_eval.pdm.official_cache import (
    OfficialCacheError,
    official_cache_files,
    read_official_metric_cache,
    rear_axle_before_round_trip,
)
from navsim_eval.pipeline_conformance import (
    default_pipeline_dir,
    import_official_caches,
    run_pipeline_conformance,
)
from navsim_eval.vehicle import PACIFICA

PIPELINE = default_pipeline_dir()
OFFICIAL = PIPELINE / "official" / "metric_cache_files"
pytestmark = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official metric caches not available")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_hostile_cache_is_refused_naming_the_class(tmp_path: Path) -> None:
    path = tmp_path / "log" / "unknown" / "tok" / "metric_cache.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(lzma.compress(pickle.dumps(_Exploit())))
    with pytest.raises(
        OfficialCacheError, match=r"not an official metric cache: refusing to load global (posix|nt|os)\.system"
    ):
        read_official_metric_cache(path)
    path.write_bytes(lzma.compress(b"\x80\x04garbage"))
    with pytest.raises(OfficialCacheError, match="truncated or corrupt pickle"):
        read_official_metric_cache(path)


def test_rear_axle_before_round_trip_gives_the_centre_back() -> None:
    rng = np.random.default_rng(0)
    d = PACIFICA.rear_axle_to_center
    for x, y, heading in zip(
        rng.uniform(5e5, 6e5, 200), rng.uniform(4e6, 5e6, 200), rng.uniform(-np.pi, np.pi, 200), strict=True
    ):
        center = np.array([x + d * np.cos(heading), y + d * np.sin(heading), heading])
        pose = rear_axle_before_round_trip(center)
        assert pose[0] + d * np.cos(heading) == center[0] and pose[1] + d * np.sin(heading) == center[1]


def test_absolute_metadata_paths_of_another_machine_resolve_inside_the_folder(tmp_path: Path) -> None:
    files = sorted((OFFICIAL / "v2").rglob("metric_cache.pkl"))[:3]
    for path in files:
        target = tmp_path / path.relative_to(OFFICIAL / "v2")
        target.parent.mkdir(parents=True)
        shutil.copy(path, target)
    (tmp_path / "metadata").mkdir()
    lines = ["file_name"] + [f"/somewhere/else/cache/{p.relative_to(OFFICIAL / 'v2')}" for p in files]
    (tmp_path / "metadata" / "metadata_node_0.csv").write_text("\n".join(lines) + "\n")
    assert [p.resolve() for p in official_cache_files(tmp_path)] == [
        (tmp_path / p.relative_to(OFFICIAL / "v2")).resolve() for p in files
    ]


def test_an_imported_cache_scores_its_version_and_refuses_the_other_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "imported"
    assert main(["import-cache", str(OFFICIAL / "v1"), "--out", str(out)]) == 0
    assert "converted 94 official metric caches" in capsys.readouterr().out
    argv = [
        "score",
        "--cache",
        str(out),
        "--trajectories",
        str(PIPELINE / "trajectories" / "synthetic_seed11" / "human.json"),
    ]
    assert main([*argv, "--version", "v2", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no v2 PDM-Closed reference (imported from an official NAVSIM v1.1" in err
    assert main([*argv, "--version", "v1", "--out", str(tmp_path / "x.csv"), "--workers", "1"]) == 0


@pytest.mark.slow
def test_converted_official_caches_score_every_kind_like_the_official_csvs(tmp_path: Path) -> None:
    report = run_pipeline_conformance(PIPELINE, workdir=tmp_path, cache_source=import_official_caches)
    assert not report.cache_problems, report.cache_problems
    problems = [f"{r.kind}/{r.version}: {m}" for r in report.results for m in r.mismatches]
    assert not problems, "\n".join(problems[:20])
    assert report.passed and sum(r.compared for r in report.results) >= 900
