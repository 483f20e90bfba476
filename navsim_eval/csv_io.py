"""Score CSVs in NAVSIM's official layouts (v1.1 ``run_pdm_score.py``, v2 ``run_pdm_score_one_stage.py``, and the
v2 two-stage ``run_pdm_score.py`` of ``main``: :func:`write_two_stage_csv`).

The official scripts write a pandas DataFrame with ``to_csv`` (index included), so a file looks like::

    ,token,valid,no_at_fault_collisions,...,score
    0,<token>,True,1.0,...,0.87
    ...
    N,average,False,0.98,...,0.85

* A scene that failed has ``valid=False`` and every metric empty (NaN), exactly as the official rows.
* The last row is ``average`` (v1) or ``average_all_frames`` (v2): the NaN-skipping mean of each metric column,
  i.e. the mean over the valid scenes, and ``valid`` = whether every scene was valid.
* Floats are written as Python ``repr`` (shortest round-trip form, what pandas writes too), so reading the file
  back gives bit-identical values.

The stdlib ``csv`` module is used so scoring needs no pandas.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable

if TYPE_CHECKING:
    from navsim_eval.pdm.two_stage import TwoStageResult

AVERAGE_TOKEN = {"v1": "average", "v2": "average_all_frames"}
# Summary rows the official scripts append (one-stage and two-stage v2); the reader keeps them apart from scenes.
SUMMARY_TOKENS = frozenset(
    {
        "average",
        "average_all_frames",
        "extended_pdm_score_stage_one",
        "extended_pdm_score_stage_two",
        "extended_pdm_score_combined",
    }
)
_INDEX_HEADERS = ("", "Unnamed: 0")


def official_columns(version: str) -> tuple[str, ...]:
    """Column order of the official CSV (without the unnamed index column)."""
    return ("token", "valid", *_metric_columns(version))


def _metric_columns(version: str) -> tuple[str, ...]:
    try:
        return METRIC_COLUMNS[version]
    except KeyError:
        raise NavsimEvalError(f"unknown score version {version!r}; expected one of {sorted(METRIC_COLUMNS)}") from None


def official_rows(tables: Iterable[ScoreTable], version: str, candidate: int = 0) -> list[dict[str, Any]]:
    """One row per scene (its candidate ``candidate``) plus the official average row, as dicts."""
    metrics = _metric_columns(version)
    rows: list[dict[str, Any]] = []
    for table in tables:
        if table.version != version:
            raise NavsimEvalError(f"scene {table.token}: scored as {table.version}, the CSV is for {version}")
        k = candidate if candidate < len(table) else 0
        valid = bool(table.valid[k])
        row: dict[str, Any] = {"token": table.token, "valid": valid}
        for name in metrics:
            row[name] = float(table.columns[name][k]) if valid and name in table.columns else math.nan
        rows.append(row)
    rows.append(average_row(rows, version))
    return rows


def average_row(rows: Sequence[dict[str, Any]], version: str) -> dict[str, Any]:
    """The official summary row: NaN-skipping mean per metric; ``valid`` = all scenes valid."""
    row: dict[str, Any] = {"token": AVERAGE_TOKEN[version], "valid": all(bool(r["valid"]) for r in rows)}
    for name in _metric_columns(version):
        values = np.array([r[name] for r in rows], dtype=np.float64)
        finite = values[~np.isnan(values)]
        row[name] = float(finite.sum() / len(finite)) if len(finite) else math.nan
    return row


def format_value(value: Any) -> str:
    """How pandas ``to_csv`` writes a cell: NaN empty, floats in shortest round-trip form, bools True/False."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([format_value(v) for v in row] for row in rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_score_csv(
    path: str | os.PathLike, tables: Iterable[ScoreTable], version: str, candidate: int = 0, index: bool = True
) -> Path:
    """Write the official CSV (one row per scene, candidate ``candidate``, plus the average row).

    ``index`` writes pandas' leading unnamed index column like the official files.
    """
    rows = official_rows(tables, version, candidate)
    columns = official_columns(version)
    header = ["", *columns] if index else list(columns)
    body = ([i, *(r[c] for c in columns)] if index else [r[c] for c in columns] for i, r in enumerate(rows))
    return _write_rows(Path(path), header, body)


def write_candidates_csv(path: str | os.PathLike, tables: Iterable[ScoreTable], version: str) -> Path:
    """Write every candidate of every scene: token, candidate, valid, reason, the metrics and the diagnostics.

    Unlike the official CSV, invalid rows keep the scorer's values (score 0) and say why they are invalid.
    """
    tables = list(tables)
    metrics = _metric_columns(version)
    extra: list[str] = []
    for table in tables:
        extra.extend(name for name in table.diagnostics if name not in extra and name not in metrics)
    header = ["token", "candidate", "valid", "reason", *metrics, *extra]
    body = []
    for table in tables:
        for row in table.rows():
            body.append([row.get(name, math.nan) for name in header])
    return _write_rows(Path(path), header, body)


@dataclass
class ScoreCsv:
    """A score CSV read back: scene rows, the summary rows (``average`` ...), and the detected version."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str | None = None

    @property
    def average(self) -> dict[str, Any] | None:
        """The official average row (``average`` or ``average_all_frames``), if present."""
        return self.summary.get("average") or self.summary.get("average_all_frames")

    def by_token(self) -> dict[str, dict[str, Any]]:
        return {row["token"]: row for row in self.rows}

    def column(self, name: str) -> np.ndarray:
        """One column over the scene rows (summary rows excluded)."""
        if name not in self.columns:
            raise KeyError(f"{self.path}: no column {name!r}; columns are {self.columns}")
        return np.array([row[name] for row in self.rows])


def _parse_cell(name: str, text: str) -> Any:
    if name == "token" or name == "reason":
        return text
    if name == "valid":
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"expected True or False, got {text!r}")
    if name == "candidate":
        return int(text)
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text  # a non-numeric extra column (e.g. an at-fault token)


def read_score_csv(path: str | os.PathLike) -> ScoreCsv:
    """Read an official or navsim_eval score CSV (with or without the leading index column)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            lines = list(reader)
    except OSError as error:
        raise NavsimEvalError(f"{path}: cannot read score CSV ({error.strerror or error})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise NavsimEvalError(f"{path}: not a readable CSV file ({error})") from None
    if not header or "token" not in header:
        raise NavsimEvalError(f"{path}: not a score CSV (no 'token' column in the header)")
    skip_first = header[0] in _INDEX_HEADERS
    columns = header[1:] if skip_first else header
    rows: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    for line_no, line in enumerate(lines, start=2):
        cells = line[1:] if skip_first else line
        if len(cells) != len(columns):
            raise NavsimEvalError(f"{path}, line {line_no}: {len(cells)} cells for {len(columns)} columns")
        try:
            row = {name: _parse_cell(name, text) for name, text in zip(columns, cells, strict=True)}
        except ValueError as error:
            raise NavsimEvalError(f"{path}, line {line_no}: {error}") from None
        if row["token"] in SUMMARY_TOKENS and "candidate" not in row:
            summary[row["token"]] = row
        else:
            rows.append(row)
    version = "v2" if "lane_keeping" in columns or "lane_keeping_stage_one" in columns else None
    version = version or ("v1" if "comfort" in columns else None)
    return ScoreCsv(path=path, columns=list(columns), rows=rows, summary=summary, version=version)


def two_stage_columns() -> tuple[str, ...]:
    """Column order of the official two-stage CSV (without the unnamed index column)."""
    metrics = [name for name in METRIC_COLUMNS["v2"] if name != "score"]
    return ("token", "valid", *(f"{m}_stage_one" for m in metrics), *(f"{m}_stage_two" for m in metrics), "score")


def write_two_stage_csv(path: str | os.PathLike, result: TwoStageResult, index: bool = True) -> Path:
    """Write the official two-stage CSV (``run_pdm_score.py`` of NAVSIM ``main``): per token its stage's
    ``_stage_one`` or ``_stage_two`` columns and the score, then the three ``extended_pdm_score_*`` rows."""
    columns = two_stage_columns()
    metrics = [name for name in METRIC_COLUMNS["v2"] if name != "score"]
    rows: list[dict[str, Any]] = []
    for row in result.rows:
        suffix = "_stage_one" if row.stage == 1 else "_stage_two"
        line: dict[str, Any] = {"token": row.token, "valid": row.valid, "score": row.value("score")}
        line.update({f"{m}{suffix}": row.value(m) for m in metrics})
        rows.append(line)
    for token, values in result.summary.items():
        rows.append({"token": token, "valid": result.valid, **values})
    header = ["", *columns] if index else list(columns)
    body = (
        [i, *(r.get(c, math.nan) for c in columns)] if index else [r.get(c, math.nan) for c in columns]
        for i, r in enumerate(rows)
    )
    return _write_rows(Path(path), header, body)
