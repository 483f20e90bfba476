"""Acceptance test: navhard-style two-stage scoring equals the official NAVSIM ``run_pdm_score.py`` (``main``).

``../shared/official_two_stage`` holds a two-stage split of the shared world (24 stage-one scenes, 72 synthetic
scenes as official pickles), trajectories of two kinds and the official CSVs and intermediate rows. We cache both
stages as ``navsim-eval cache --split`` does, score them (reactive IDM traffic in both stages) and compare every
sub-metric, the extended comfort, the weight and the score per token, and the three summary rows.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.cli import main
from navsim_eval.csv_io import read_score_csv, write_two_stage_csv
from navsim_eval.data.splits import load_split
from navsim_eval.data.two_stage import load_two_stage_scenes
from navsim_eval.pdm.cache_build import two_stage_metric_caches, write_metric_caches
from navsim_eval.pdm.scorer import ScorerConfig, score
from navsim_eval.pdm.two_stage import COMBINED, STAGE_ONE, STAGE_TWO, score_two_stage
from navsim_eval.pipeline_conformance import default_pipeline_dir

TWO_STAGE = default_pipeline_dir().parent / "official_two_stage"
WORLD = default_pipeline_dir() / "worlds" / "synthetic_seed11"
SYNTHETIC = TWO_STAGE / "world_additions" / "navhard_two_stage" / "synthetic_scene_pickles"
KINDS = ("human", "constant_velocity")
TOLERANCE = 1e-9
ROW_COLUMNS = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
    "ego_progress",
    "time_to_collision_within_bound",
    "lane_keeping",
    "history_comfort",
    "two_frame_extended_comfort",
    "score",
)
pytestmark = [
    pytest.mark.skipif(not TWO_STAGE.is_dir() or not WORLD.is_dir(), reason="official two-stage data not available"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def split():
    return load_split(TWO_STAGE / "splits", "synthetic_two_stage")


@pytest.fixture(scope="module")
def store(split, tmp_path_factory: pytest.TempPathFactory):
    scenes = load_two_stage_scenes(split, WORLD, SYNTHETIC)
    assert scenes.missing_report() is None
    report = write_metric_caches(
        two_stage_metric_caches(scenes, WORLD / "maps"), tmp_path_factory.mktemp("two_stage"), fsync=False
    )
    assert not report.skipped and not report.problems, (report.skipped, report.problems)
    assert len(report.written) == 96
    return report.store


def _trajectories(kind: str) -> dict[str, np.ndarray]:
    data = json.loads((TWO_STAGE / "trajectories" / f"{kind}.json").read_text())
    return {token: np.asarray(poses) for token, poses in data.items()}


@pytest.fixture(scope="module", params=KINDS)
def scored(request, split, store):
    return request.param, score_two_stage(store, _trajectories(request.param), split.two_stage, workers=2)


def test_every_row_equals_the_official_one(scored) -> None:
    kind, result = scored
    with open(TWO_STAGE / "official" / "intermediate" / kind / "rows_after_final_scores.csv", newline="") as handle:
        official = {row["token"]: row for row in csv.DictReader(handle)}
    assert sorted(row.token for row in result.rows) == sorted(official)
    assert not result.missing and result.valid
    problems = []
    for row in result.rows:
        expected = official[row.token]
        assert row.stage == (2 if len(row.token) == 17 else 1)
        for column in ROW_COLUMNS:
            if not abs(row.value(column) - float(expected[column])) <= TOLERANCE:
                problems.append(f"{row.token} {column}: ours {row.value(column)!r}, official {expected[column]}")
        if not abs(row.weight - float(expected["weight"])) <= TOLERANCE:
            problems.append(f"{row.token} weight: ours {row.weight!r}, official {expected['weight']}")
        endpoint = (float(expected["endpoint_x"]), float(expected["endpoint_y"]))
        if not np.allclose(row.endpoint, endpoint, rtol=0, atol=1e-9):
            problems.append(f"{row.token} endpoint: ours {row.endpoint}, official {endpoint}")
    assert not problems, f"{kind}: " + "\n".join(problems[:20])


def test_summary_rows_and_csv_equal_the_official_csv(scored, tmp_path: Path) -> None:
    kind, result = scored
    official = read_score_csv(TWO_STAGE / "official" / "raw_csv" / f"{kind}.csv")
    ours = read_score_csv(write_two_stage_csv(tmp_path / "two_stage.csv", result))
    assert ours.columns == official.columns
    assert set(ours.summary) == {STAGE_ONE, STAGE_TWO, COMBINED} == set(official.summary)
    expected_rows = {row["token"]: row for row in official.rows} | official.summary
    got_rows = {row["token"]: row for row in ours.rows} | ours.summary
    assert got_rows.keys() == expected_rows.keys()
    problems = []
    for token, expected in expected_rows.items():
        for column in official.columns:
            a, b = got_rows[token][column], expected[column]
            if isinstance(b, float):
                same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE
            else:
                same = a == b
            if not same:
                problems.append(f"{token} {column}: ours {a!r}, official {b!r}")
    assert not problems, f"{kind}: " + "\n".join(problems[:20])
    print(f"{kind}: combined EPDMS {result.combined_score:.6f}")


def test_reactive_traffic_matters_in_this_split(scored, store) -> None:
    """The check has teeth: somewhere the IDM vehicles change a metric against log replay."""
    kind, result = scored
    if kind != "constant_velocity":
        pytest.skip("the logged human keeps its distance: the reacting vehicles change nothing there")
    trajectories = _trajectories(kind)
    differ = []
    for row in result.rows:
        replayed = score(store[row.token], trajectories[row.token], "v2", ScorerConfig()).columns
        if any(abs(replayed[c][0] - row.value(c)) > 1e-12 for c in ("no_at_fault_collisions", "ego_progress")):
            differ.append(row.token)
    assert differ, f"{kind}: reactive and log-replay traffic agree on every scene"


def test_score_command_writes_the_two_stage_csv(store, split, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cv.csv"
    argv = ["score", "--cache", str(store.root), "--trajectories", str(TWO_STAGE / "trajectories" / "human.json")]
    argv += ["--version", "v2", "--split", str(TWO_STAGE / "splits" / "synthetic_two_stage.yaml"), "--out", str(out)]
    assert main([*argv, "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "12 of 12 entries aggregated" in printed and "combined EPDMS   0.8957" in printed
    official = read_score_csv(TWO_STAGE / "official" / "raw_csv" / "human.csv").summary[COMBINED]["score"]
    assert abs(read_score_csv(out).summary[COMBINED]["score"] - official) <= TOLERANCE
    assert main([*argv[:-4], "--version", "v1", *argv[-4:]]) == 2
    assert "a two-stage split is scored in v2" in capsys.readouterr().err
