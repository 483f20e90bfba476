"""Official CSV layout: columns, the average row, failed scenes, exact float round trip, reading back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.csv_io import (
    format_value,
    official_columns,
    read_score_csv,
    write_candidates_csv,
    write_score_csv,
)
from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.results import METRIC_COLUMNS, V1_COLUMNS, V2_COLUMNS, ScoreTable
from navsim_eval.pool import invalid_score_table

V1_HEADER = (
    ",token,valid,no_at_fault_collisions,drivable_area_compliance,ego_progress,time_to_collision_within_bound,"
    "comfort,driving_direction_compliance,score"
)
V2_HEADER = (
    ",token,valid,no_at_fault_collisions,drivable_area_compliance,driving_direction_compliance,"
    "traffic_light_compliance,ego_progress,time_to_collision_within_bound,lane_keeping,history_comfort,"
    "two_frame_extended_comfort,score"
)


def _table(token: str, version: str, values: dict[str, list[float]], valid: list[bool] | None = None) -> ScoreTable:
    num = len(next(iter(values.values())))
    columns = {name: np.full(num, 1.0) for name in METRIC_COLUMNS[version]}
    columns.update({name: np.asarray(v, dtype=np.float64) for name, v in values.items()})
    valid_arr = np.ones(num, dtype=bool) if valid is None else np.asarray(valid)
    reasons = ["" if ok else "trajectory contains NaN or infinite poses" for ok in valid_arr]
    return ScoreTable(
        token=token,
        version=version,
        columns=columns,
        valid=valid_arr,
        reasons=reasons,
        diagnostics={"first_collision_step": np.full(num, -1), "at_fault_token": np.array([""] * num, dtype=object)},
    )


def test_columns_match_the_official_scripts() -> None:
    assert ",".join(("", *official_columns("v1"))) == V1_HEADER
    assert ",".join(("", *official_columns("v2"))) == V2_HEADER
    assert official_columns("v1")[2:] == V1_COLUMNS and official_columns("v2")[2:] == V2_COLUMNS


def test_v1_file_text_and_average_row(tmp_path: Path) -> None:
    tables = [
        _table("a", "v1", {"ego_progress": [0.5], "score": [0.8]}),
        invalid_score_table("b", "v1", 1, "metric cache: missing"),
        _table("c", "v1", {"ego_progress": [0.25], "no_at_fault_collisions": [0.5], "score": [0.1]}),
    ]
    path = write_score_csv(tmp_path / "out.csv", tables, "v1")
    assert path.read_text().splitlines() == [
        V1_HEADER,
        "0,a,True,1.0,1.0,0.5,1.0,1.0,1.0,0.8",
        "1,b,False,,,,,,,",
        "2,c,True,0.5,1.0,0.25,1.0,1.0,1.0,0.1",
        "3,average,False,0.75,1.0,0.375,1.0,1.0,1.0,0.45",
    ]


def test_all_valid_average_is_valid_and_v2_uses_average_all_frames(tmp_path: Path) -> None:
    tables = [
        _table("a", "v2", {"score": [0.9], "two_frame_extended_comfort": [math.nan]}),
        _table("b", "v2", {"score": [0.6], "two_frame_extended_comfort": [math.nan]}),
    ]
    lines = write_score_csv(tmp_path / "v2.csv", tables, "v2").read_text().splitlines()
    assert lines[0] == V2_HEADER
    assert lines[1] == "0,a,True,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,,0.9"  # EC NaN = empty, as pandas writes it
    assert lines[-1] == f"2,average_all_frames,True,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,,{(0.9 + 0.6) / 2!r}"


def test_official_csv_uses_candidate_zero_and_candidates_csv_has_all(tmp_path: Path) -> None:
    tables = [
        _table("a", "v1", {"score": [0.7, 0.2, 0.0]}, valid=[True, True, False]),
        _table("b", "v1", {"score": [0.3]}),
    ]
    official = read_score_csv(write_score_csv(tmp_path / "o.csv", tables, "v1"))
    assert [r["token"] for r in official.rows] == ["a", "b"]
    assert official.column("score").tolist() == [0.7, 0.3]
    details = read_score_csv(write_candidates_csv(tmp_path / "d.csv", tables, "v1"))
    assert details.columns[:4] == ["token", "candidate", "valid", "reason"]
    assert [(r["token"], r["candidate"], r["valid"]) for r in details.rows] == [
        ("a", 0, True),
        ("a", 1, True),
        ("a", 2, False),
        ("b", 0, True),
    ]
    assert details.rows[2]["reason"] == "trajectory contains NaN or infinite poses"
    assert details.rows[0]["first_collision_step"] == -1.0
    assert details.average is None


def test_floats_round_trip_exactly(tmp_path: Path) -> None:
    awkward = [0.1 + 0.2, 1 / 3, 1e-17, 5e-324, 123456789.123456789, -0.0, 1 - 2**-53, 2.0 / 3.0]
    tables = [_table(f"t{i}", "v1", {"ego_progress": [v], "score": [v]}) for i, v in enumerate(awkward)]
    read = read_score_csv(write_score_csv(tmp_path / "f.csv", tables, "v1"))
    got = read.column("ego_progress")
    assert got.tobytes() == np.array(awkward).tobytes()
    assert read.version == "v1" and read.average["token"] == "average"
    assert read.average["score"] == np.array(awkward).sum() / len(awkward)


def test_reader_accepts_official_files_with_and_without_index(tmp_path: Path) -> None:
    official = tmp_path / "2024.06.01.12.00.00.csv"
    official.write_text(
        V2_HEADER + "\n"
        "0,tok1,True,1.0,1.0,1.0,1.0,0.7142857142857143,1.0,1.0,1.0,,0.9183673469387755\n"
        "1,tok2,False,,,,,,,,,,\n"
        "2,average_all_frames,False,1.0,1.0,1.0,1.0,0.7142857142857143,1.0,1.0,1.0,,0.9183673469387755\n"
    )
    read = read_score_csv(official)
    assert read.version == "v2" and len(read.rows) == 2
    assert read.by_token()["tok1"]["ego_progress"] == 0.7142857142857143
    assert read.by_token()["tok2"]["valid"] is False and math.isnan(read.by_token()["tok2"]["score"])
    assert read.average["valid"] is False
    no_index = tmp_path / "plain.csv"
    write_score_csv(no_index, [_table("x", "v1", {"score": [0.5]})], "v1", index=False)
    assert no_index.read_text().startswith("token,valid,")
    assert read_score_csv(no_index).column("score").tolist() == [0.5]


def test_format_value_matches_pandas_conventions() -> None:
    assert [format_value(v) for v in (True, np.bool_(False), 1.0, np.float64(0.5), math.nan, None, 3, "x")] == [
        "True",
        "False",
        "1.0",
        "0.5",
        "",
        "",
        "3",
        "x",
    ]
    assert format_value(1e16) == "1e+16" and format_value(1e-5) == "1e-05"


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(NavsimEvalError, match=r"missing\.csv"):
        read_score_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(NavsimEvalError, match=r"bad\.csv: not a score CSV"):
        read_score_csv(bad)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("token,valid,score\nx,True\n")
    with pytest.raises(NavsimEvalError, match=r"ragged\.csv, line 2"):
        read_score_csv(ragged)


def test_version_mismatch_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(NavsimEvalError, match="scored as v2"):
        write_score_csv(tmp_path / "x.csv", [_table("a", "v2", {"score": [1.0]})], "v1")
