"""End-to-end conformance: worlds run through the official NAVSIM pipeline, re-run through ours, compared per cell.

A pipeline folder (``../shared/official_pipeline`` is one) holds::

    worlds/<world>/navsim_logs/<data split>/*.pkl   the logs the official metric caching read
    worlds/<world>/maps/                            their nuPlan maps root
    trajectories/<world>/<kind>.json                {token: [[x, y, heading] x 8]} per kind of trajectory
    official/scores_v1.csv, scores_v2.csv           the official CSV rows, with ``world`` and ``kind`` columns
    official/metric_cache_files/<v1|v2>/            (optional) the official metric caches themselves

For each world we build the metric cache of every token the official CSVs name (``cache_build``, i.e. what
``navsim-eval cache`` does), or convert the official caches (``import_official``), score every kind in each
version (v2 with two-frame extended comfort, as the official one-stage run) and compare every sub-metric and the
score with the official row within a tolerance.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from navsim_eval.csv_io import read_score_csv
from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.trajectory_io import load_trajectories

VERSIONS = ("v1", "v2")
OFFICIAL_CACHE_DIR = Path("official") / "metric_cache_files"
PIPELINE_DIR_ENV = "NAVSIM_EVAL_PIPELINE_DIR"


def default_pipeline_dir(repo_root: Path | None = None) -> Path:
    """``$NAVSIM_EVAL_PIPELINE_DIR`` if set, else ``../shared/official_pipeline`` next to the repository."""
    env = os.environ.get(PIPELINE_DIR_ENV)
    if env:
        return Path(env)
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[1]
    return root.parent / "shared" / "official_pipeline"


class PipelineFolderError(NavsimEvalError):
    """A pipeline folder lacks a part of its layout."""


@dataclass(frozen=True)
class PipelineWorld:
    """One world of a pipeline folder: its data root, logs folder name, maps root and trajectory files."""

    name: str
    data_root: Path
    data_split: str
    maps_root: Path
    trajectories: dict[str, Path]  # kind -> file


@dataclass(frozen=True)
class PipelineFolder:
    """The parts of a pipeline folder (see the module docstring), checked to exist."""

    root: Path
    worlds: dict[str, PipelineWorld]
    official_csv: dict[str, Path]  # version -> CSV

    @classmethod
    def open(cls, root: str | os.PathLike) -> PipelineFolder:
        root = Path(root)
        if not (root / "worlds").is_dir():
            raise PipelineFolderError(f"{root}: not a pipeline folder (no worlds/ folder)")
        official = {v: root / "official" / f"scores_{v}.csv" for v in VERSIONS}
        official = {v: path for v, path in official.items() if path.is_file()}
        if not official:
            raise PipelineFolderError(f"{root}: no official/scores_v1.csv or official/scores_v2.csv")
        worlds = {}
        for world_dir in sorted(p for p in (root / "worlds").iterdir() if p.is_dir()):
            splits = sorted(p.name for p in (world_dir / "navsim_logs").glob("*") if p.is_dir())
            if len(splits) != 1:
                raise PipelineFolderError(f"{world_dir}/navsim_logs: expected one data split folder, found {splits}")
            kinds = {p.stem: p for p in sorted((root / "trajectories" / world_dir.name).glob("*.json"))}
            kinds.pop("perturbation_parameters", None)
            if not kinds:
                raise PipelineFolderError(f"{root}/trajectories/{world_dir.name}: no <kind>.json trajectory files")
            worlds[world_dir.name] = PipelineWorld(world_dir.name, world_dir, splits[0], world_dir / "maps", kinds)
        if not worlds:
            raise PipelineFolderError(f"{root}/worlds: holds no world folder")
        return cls(root, worlds, official)

    def official_cache_dir(self, version: str) -> Path:
        """Where the official metric caches of ``version`` lie (``official/metric_cache_files/<version>``)."""
        return self.root / OFFICIAL_CACHE_DIR / version


@dataclass
class KindResult:
    """One (world, kind, version): how many official rows were compared and what differed."""

    world: str
    kind: str
    version: str
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)  # "token column: ours X, official Y"
    max_difference: dict[str, float] = field(default_factory=dict)  # column -> max |ours - official|

    @property
    def passed(self) -> bool:
        return self.compared > 0 and not self.mismatches


@dataclass
class PipelineReport:
    """Every (world, kind, version) compared, what could not be cached, and how long it took."""

    folder: Path
    tolerance: float
    results: list[KindResult] = field(default_factory=list)
    cache_problems: list[str] = field(default_factory=list)
    cache_seconds: float = 0.0
    num_cached: int = 0
    score_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.passed for result in self.results)


# A cache source: (folder, world, version, tokens, workdir) -> the store to score that version from and the
# problems met (scenes that could not be cached), as lines.
CacheSource = Callable[[PipelineFolder, PipelineWorld, str, Sequence[str], Path], tuple[MetricCacheStore, list[str]]]


def build_caches(
    folder: PipelineFolder, world: PipelineWorld, version: str, tokens: Sequence[str], workdir: Path
) -> tuple[MetricCacheStore, list[str]]:
    """Our metric caches of the world's tokens (one store serves both versions: built once per world)."""
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.scene_filter import SceneFilter
    from navsim_eval.pdm.cache_build import loader_metric_caches, write_metric_caches

    out = workdir / "built" / world.name
    if (out / "metadata.json").is_file():
        return MetricCacheStore(out), []
    loader = SceneLoader(world.data_root, world.data_split, SceneFilter(frame_interval=1, tokens=tuple(tokens)))
    report = write_metric_caches(loader_metric_caches(loader, world.maps_root), out, fsync=False)
    problems = [*report.skipped, *((path, f"{p.kind}: {p.detail}") for path, p in report.problems)]
    return report.store, [f"{world.name}: {path}: {reason}" for path, reason in problems]


def import_official_caches(
    folder: PipelineFolder, world: PipelineWorld, version: str, tokens: Sequence[str], workdir: Path
) -> tuple[MetricCacheStore, list[str]]:
    """The official metric cache of ``version`` (``official/metric_cache_files/<version>``) converted into ours, as
    ``navsim-eval import-cache`` converts it (one folder per version: each holds only its version's reference)."""
    from navsim_eval.pdm.cache_build import write_metric_caches
    from navsim_eval.pdm.official_cache import iter_official_caches

    source = folder.official_cache_dir(version)
    if not source.is_dir():
        raise PipelineFolderError(f"{source}: no official {version} metric cache in the pipeline folder")
    out = workdir / "imported" / version
    if (out / "metadata.json").is_file():
        return MetricCacheStore(out), []
    report = write_metric_caches(iter_official_caches(source), out, fsync=False)
    return report.store, [f"{world.name}: {path}: {reason}" for path, reason in report.skipped]


CACHE_SOURCES: dict[str, CacheSource] = {"build": build_caches, "official": import_official_caches}


def score_tables(
    store: MetricCacheStore, trajectory_file: Path, version: str, workers: int = 1
) -> dict[str, ScoreTable]:
    """Every token of a trajectory file scored in ``version`` (v2 with extended comfort), by token."""
    from navsim_eval.pdm.two_frame import apply_two_frame_comfort
    from navsim_eval.pool import score_many

    trajectories = load_trajectories(trajectory_file)
    tables = score_many(trajectories.items(), store, version=version, workers=workers)
    if version == "v2":
        apply_two_frame_comfort(tables)
    return {table.token: table for table in tables}


def compare_rows(
    result: KindResult, tables: dict[str, ScoreTable], official_rows: Sequence[dict], tolerance: float
) -> KindResult:
    """Compare each official row with our table of its token, every metric column (NaN equals NaN)."""
    for row in official_rows:
        token = row["token"]
        table = tables.get(token)
        result.compared += 1
        if table is None or not bool(table.valid[0]):
            reason = "no trajectory" if table is None else table.reasons[0]
            result.mismatches.append(f"{token}: not scored ({reason})")
            continue
        for name in METRIC_COLUMNS[result.version]:
            official, ours = float(row[name]), float(table.columns[name][0])
            if math.isnan(official) and math.isnan(ours):
                continue
            difference = abs(ours - official) if not (math.isnan(official) or math.isnan(ours)) else math.inf
            result.max_difference[name] = max(result.max_difference.get(name, 0.0), difference)
            if not difference <= tolerance:
                result.mismatches.append(f"{token} {name}: ours {ours!r}, official {official!r}")
    return result


def run_pipeline_conformance(
    root: str | os.PathLike,
    versions: Sequence[str] = VERSIONS,
    tolerance: float = 1e-9,
    workdir: str | os.PathLike | None = None,
    workers: int = 1,
    cache_source: CacheSource = build_caches,
) -> PipelineReport:
    """Cache every world of a pipeline folder, score every kind in each version and compare with the official
    CSVs. ``workdir`` keeps the caches (default: a temporary folder, removed afterwards)."""
    folder = PipelineFolder.open(root)
    report = PipelineReport(folder.root, tolerance)
    missing = [v for v in versions if v not in folder.official_csv]
    if missing:
        raise PipelineFolderError(f"{folder.root}/official: no scores_{missing[0]}.csv for version {missing[0]}")
    official = {v: read_score_csv(folder.official_csv[v]).rows for v in versions}
    with tempfile.TemporaryDirectory(prefix="navsim_eval_pipeline_") as scratch:
        base = Path(workdir) if workdir is not None else Path(scratch)
        for world in folder.worlds.values():
            tokens = sorted({r["token"] for v in versions for r in official[v] if r["world"] == world.name})
            for version in versions:
                started = time.perf_counter()
                store, problems = cache_source(folder, world, version, tokens, base)
                report.cache_problems.extend(problems)
                report.cache_seconds += time.perf_counter() - started
                report.num_cached = max(report.num_cached, len(store))
                started = time.perf_counter()
                for kind, path in world.trajectories.items():
                    rows = [r for r in official[version] if r["world"] == world.name and r["kind"] == kind]
                    if not rows:
                        continue
                    tables = score_tables(store, path, version, workers)
                    report.results.append(compare_rows(KindResult(world.name, kind, version), tables, rows, tolerance))
                report.score_seconds += time.perf_counter() - started
    return report


def format_report(report: PipelineReport, max_listed: int = 10) -> list[str]:
    """The report as printed lines: one per (world, kind, version) with the largest differences, then the
    first mismatches and a verdict."""
    lines = [f"{'world':<18} {'kind':<18} {'ver':<4} {'rows':>5} {'diff':>5}  max |ours - official| (EP, score, all)"]
    for result in report.results:
        worst = max(result.max_difference.values(), default=0.0)
        ep = result.max_difference.get("ego_progress", 0.0)
        score = result.max_difference.get("score", 0.0)
        lines.append(
            f"{result.world:<18} {result.kind:<18} {result.version:<4} {result.compared:>5} "
            f"{len(result.mismatches):>5}  {ep:.1e}  {score:.1e}  {worst:.1e}"
        )
    mismatches = [f"{r.world}/{r.kind}/{r.version}: {m}" for r in report.results for m in r.mismatches]
    for line in mismatches[:max_listed]:
        lines.append(f"  {line}")
    if len(mismatches) > max_listed:
        lines.append(f"  ... ({len(mismatches) - max_listed} more)")
    for problem in report.cache_problems[:max_listed]:
        lines.append(f"  not cached: {problem}")
    compared = sum(r.compared for r in report.results)
    verdict = "all agree" if report.passed else f"{len(mismatches)} differences"
    lines.append(
        f"{compared} official rows compared within {report.tolerance:g}: {verdict} ({report.num_cached} scenes "
        f"cached in {report.cache_seconds:.1f} s, scored in {report.score_seconds:.1f} s)"
    )
    return lines
