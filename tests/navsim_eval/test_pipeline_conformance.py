"""Acceptance test: the official NAVSIM pipeline (metric caching, then scoring) reproduced end to end.

``../shared/official_pipeline`` holds a world, five kinds of trajectories per scene and the official v1.1 / v2
CSVs. We cache the world as ``navsim-eval cache`` does, score every kind in both versions and compare every
sub-metric and the score within 1e-9; the PDM-Closed reference of each version is checked against the one the
official cache of that version holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.cli import main
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.results import METRIC_COLUMNS
from navsim_eval.pipeline_conformance import (
    PipelineFolder,
    PipelineFolderError,
    default_pipeline_dir,
    format_report,
    run_pipeline_conformance,
)

PIPELINE = default_pipeline_dir()
pytestmark = pytest.mark.skipif(not PIPELINE.is_dir(), reason=f"{PIPELINE} not available")
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def report(workdir: Path):
    return run_pipeline_conformance(PIPELINE, ("v1", "v2"), TOLERANCE, workdir=workdir)


@pytest.mark.slow
def test_every_official_cell_is_reproduced(report) -> None:
    folder = PipelineFolder.open(PIPELINE)
    expected = {(w.name, kind, v) for w in folder.worlds.values() for kind in w.trajectories for v in ("v1", "v2")}
    assert {(r.world, r.kind, r.version) for r in report.results} == expected
    assert not report.cache_problems, report.cache_problems
    problems = [f"{r.world}/{r.kind}/{r.version}: {m}" for r in report.results for m in r.mismatches]
    assert not problems, "\n".join(["differences to the official CSVs:", *problems[:20]])
    for result in report.results:
        assert result.compared >= 90, f"{result.kind}/{result.version}: only {result.compared} rows compared"
        # every sub-metric and the score was compared (EC is empty only for the first frame of a log)
        assert set(result.max_difference) == set(METRIC_COLUMNS[result.version])
    assert report.passed
    assert format_report(report)[-1].startswith(f"{sum(r.compared for r in report.results)} official rows")


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_pdm_closed_reference_of_each_version_is_the_official_one(report, workdir: Path, version: str) -> None:
    summary = json.loads((PIPELINE / "official" / "metric_cache" / f"synthetic_seed11_{version}.json").read_text())
    store = MetricCacheStore(workdir / "built" / "synthetic_seed11")
    assert set(summary["tokens"]) <= set(store.tokens())
    worst = max(
        float(np.abs(store[t].reference(version) - np.asarray(e["pdm_closed_poses_41"])).max())
        for t, e in summary["tokens"].items()
    )
    assert worst < 1e-9, f"{version}: PDM-Closed reference off by {worst:g} m from the official cache"


@pytest.mark.slow
def test_the_two_versions_pick_different_references_somewhere(report, workdir: Path) -> None:
    store = MetricCacheStore(workdir / "built" / "synthetic_seed11")
    differ = [t for t in store.tokens() if not np.array_equal(store[t].reference("v1"), store[t].reference("v2"))]
    assert differ, "the v2 scorer never ranked PDM-Closed's proposals differently: the test world proves nothing"


@pytest.mark.slow
def test_conformance_command_with_a_pipeline(report, workdir: Path, capsys: pytest.CaptureFixture) -> None:
    # the caches of the report are reused from --workdir
    code = main(["conformance", "--pipeline", str(PIPELINE), "--version", "v2", "--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "human" in out and "constant_velocity" in out and "all agree" in out


def test_a_folder_that_is_not_a_pipeline_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(PipelineFolderError, match="not a pipeline folder"):
        PipelineFolder.open(tmp_path)
    assert main(["conformance", "--pipeline", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a pipeline folder (no worlds/ folder)" in err and "Traceback" not in err and err.count("\n") == 1
