"""``navsim-eval``: build metric caches, score trajectory files into the official CSV, check the installation.

Subcommands:

* ``synth``        generate the synthetic proving ground in the real formats
* ``two-stage``    write a navhard-style two-stage split of a world on disk
* ``inspect``      describe the scenes of OpenScene logs
* ``filter``       navtest-style filter of a split (drop what constant velocity solves or the human fails)
* ``cache``        build a metric cache folder from scenes (both stages of a two-stage split)
* ``import-cache`` convert an official NAVSIM metric cache folder into ours
* ``score``        score a trajectory file against a metric cache and write the official CSV (one or two stages)
* ``submit``       write the leaderboard's submission.pkl from trajectory files (v1, or the v2 two-stage layout)
* ``conformance``  compare with the official NAVSIM numbers: the bundled cases, or a whole pipeline folder

Bad input ends with a one-line message naming the file or field and exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navsim_eval import __version__
from navsim_eval.errors import NavsimEvalError
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, but some check failed (conformance mismatch, --strict with invalid scenes)
EXIT_BAD_INPUT = 2  # argparse also uses 2 for usage errors
MAX_LISTED = 10


class CliError(NavsimEvalError):
    """A user-facing error: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------- synth / inspect


def cmd_synth(args: argparse.Namespace) -> int:
    from navsim_eval.synthetic.world import WorldConfig, generate_world

    try:
        width, height = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        raise CliError(f"--image-size {args.image_size!r}: expected WIDTHxHEIGHT, e.g. 320x180") from None
    try:
        config = WorldConfig(
            num_logs=args.logs,
            seed=args.seed,
            frames_per_log=args.frames,
            cameras=tuple(args.cameras),
            image_size=(width, height),
            data_split=args.data_split,
            split_logs=tuple(args.split_logs) if args.split_logs else WorldConfig.split_logs,
            scenarios=tuple(args.scenarios) if args.scenarios else WorldConfig.scenarios,
            filter_scenes=args.filter,
        )
    except ValueError as error:
        raise CliError(str(error)) from None
    summary = generate_world(
        args.out, config, progress=(lambda message: print(f"  {message}")) if args.verbose else None, show_progress=True
    )
    kind = "a small world split by log only" if config.small else "the proving ground (held-out test town)"
    print(f"wrote {kind} to {summary.root} in {summary.seconds:.1f} s:")
    towns = sorted({(info["town"], info["location"]) for info in summary.log_info.values()})
    print(f"  maps:   {summary.maps_root} (towns: {', '.join(f'{t} = {loc}' for t, loc in towns)}; all four locations)")
    print(
        f"  logs:   {summary.data_root / 'navsim_logs' / summary.data_split} ({len(summary.logs)} logs, "
        f"{summary.num_frames} frames, {summary.num_scenes} scenes)"
    )
    print(f"  images: {summary.data_root / 'sensor_blobs' / summary.data_split} ({', '.join(config.cameras)})")
    for name, tokens in summary.scene_tokens.items():
        generated = len(summary.unfiltered_tokens.get(name, tokens))
        line = f"  split:  {summary.splits_dir / (name + '.yaml')} ({len(tokens)} scenes"
        if name in summary.filter_reports:
            report = summary.filter_reports[name]
            line += (
                f" of {generated} generated; the filter removed {report['removed_constant_velocity']} that constant "
                f"velocity solves and {report['removed_human']} the human fails"
            )
        print(line + ")")
    print(f"  labels: {summary.splits_dir}/<split>_scenarios.json (the scenario of every scene)")
    print(
        f"use: --data-root {summary.data_root} --maps-root {summary.maps_root} --split "
        f"{summary.splits_dir / (summary.data_split + '_test.yaml')}"
    )
    return EXIT_OK


def cmd_two_stage(args: argparse.Namespace) -> int:
    from navsim_eval.synthetic.two_stage import TwoStageConfig, write_two_stage_split

    try:
        config = TwoStageConfig(
            name=args.name, pairs=args.pairs, stride=args.stride, max_entries=args.max_entries, seed=args.seed
        )
    except ValueError as error:
        raise CliError(str(error)) from None
    world = Path(args.world)
    if not world.is_dir():
        raise CliError(f"--world {world}: no such directory")
    summary = write_two_stage_split(world, config)
    synthetic = sum(len(entry.pairs) * 2 for entry in summary.entries)
    print(f"wrote a two-stage split of {world}: {len(summary.entries)} stage-one scenes (with their predecessors)")
    print(f"  split:     {summary.split_file} (reactive_all_mapping)")
    print(f"  synthetic: {summary.synthetic_dir} ({synthetic} scenes, {config.pairs} pairs per entry)")
    print(f"  human:     {world / (config.name + '_human.json')} (the logged future of every token)")
    print(
        f"use: navsim-eval cache --data-root {world} --maps-root {world / 'maps'} --split {summary.split_file} "
        "--out CACHE_DIR"
    )
    return EXIT_OK


def cmd_filter(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from navsim_eval.data.filtering import filter_caches, split_caches
    from navsim_eval.data.paths import nuplan_maps_root
    from navsim_eval.data.scene_filter import SceneFilter
    from navsim_eval.data.splits import Split, load_split, write_split
    from navsim_eval.synthetic.labels import labels_path, load_scenario_labels, write_scenario_labels

    out = Path(args.out)
    if out.suffix != ".yaml":
        raise CliError(f"--out {out}: expected the new split file, <dir>/<name>.yaml")
    if args.split:
        path = Path(args.split)
        source = load_split(path.parent, path.stem)
    elif args.logs:
        source = Split(args.logs, args.logs, SceneFilter(frame_interval=1), args.logs)
    else:
        raise CliError("name the scenes: --split SPLIT_FILE.yaml or --logs SPLIT (a folder of navsim_logs/)")
    if args.tokens:
        source = replace(source, scene_filter=replace(source.scene_filter, tokens=tuple(args.tokens)))
    if not 0.0 < args.threshold <= 1.0:
        raise CliError(f"--threshold {args.threshold}: expected a PDMS in (0, 1]")
    caches = split_caches(args.data_root, nuplan_maps_root(args.maps_root), source)
    if args.cache:
        caches = _cached_first(Path(args.cache), caches)
    started = time.perf_counter()
    report = filter_caches(caches, args.threshold)
    kept = report.kept_tokens
    scene_filter = replace(source.scene_filter, tokens=tuple(kept))
    write_split(out.parent, Split(out.stem, source.data_split, scene_filter, out.stem))
    print(
        f"filtered {len(report.decisions)} scenes of {args.split or args.logs} in {time.perf_counter() - started:.1f} s"
    )
    print(report.summary())
    if args.split and labels_path(args.split).is_file():
        labels = load_scenario_labels(args.split).restricted(out.stem, kept, report.to_json())
        print(f"wrote the scenario labels of the kept scenes: {write_scenario_labels(out.parent, labels)}")
    for decision in report.decisions:
        if decision.reason:
            print(f"  not scored {decision.token}: {decision.reason}")
    if args.report:
        data = report.to_json() | {
            "scenes_detail": [
                {
                    "token": d.token,
                    "constant_velocity_pdms": _finite(d.constant_velocity_score),
                    "human_pdms": _finite(d.human_score),
                    "dropped_by": list(d.dropped_by),
                    "reason": d.reason,
                }
                for d in report.decisions
            ]
        }
        Path(args.report).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(kept)} scenes)" + (f" and {args.report}" if args.report else ""))
    return EXIT_OK if kept else EXIT_FAILED


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _cached_first(cache_dir: Path, built: Iterator[Any]) -> Iterator[Any]:
    """The scenes' metric caches from ``cache_dir`` where it has them, else as ``built`` builds them."""
    from navsim_eval.pdm.cache_io import MetricCacheStore

    if not cache_dir.is_dir():
        raise CliError(f"--cache {cache_dir}: no such directory")
    store = MetricCacheStore(cache_dir)
    for item in built:
        token = item[0] if isinstance(item, tuple) else item.token
        yield store[token] if token in store else item


def cmd_inspect(args: argparse.Namespace) -> int:
    from navsim_eval.data.summary import format_scene_summary, scene_summary

    loader = _scene_loader(args)
    for token in loader.tokens:
        summary = scene_summary(loader[token])
        print(json.dumps(summary) if args.json else format_scene_summary(summary))
    print(loader.report.summary(), file=sys.stderr)
    return EXIT_OK if len(loader) else EXIT_FAILED


# ----------------------------------------------------------------------------------------------- cache


# (source file, token or None, MetricCache, skip reason or SourceProblem): navsim_eval.pdm.cache_build.CacheResult
CacheResults = Iterator[tuple[Path, str | None, Any]]


@dataclass
class SceneSource:
    """Where ``navsim-eval cache`` reads scenes from: ``open`` gives the number of scenes (for progress) and the
    results, (file, token, MetricCache, skip reason or problem) each."""

    name: str
    description: str
    open: Callable[[argparse.Namespace], tuple[int, CacheResults]]


def _neutral_scene_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"--scenes {path}: no such file or directory")
    return files


def _open_neutral_scenes(args: argparse.Namespace) -> tuple[int, CacheResults]:
    """Neutral scene JSON (the conformance case format): ``{"input": {...}, ...}`` files or bare input dicts."""
    files = _neutral_scene_files([Path(p) for p in args.scenes])
    if not files:
        raise CliError(f"--scenes {' '.join(args.scenes)}: no .json scene files found")
    return len(files), _neutral_scenes(files)


def _neutral_scenes(files: Sequence[Path]) -> CacheResults:
    from navsim_eval.conformance import metric_cache_from_neutral

    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            yield path, None, f"cannot read file ({error})"
            continue
        except json.JSONDecodeError as error:
            yield path, None, f"invalid JSON ({error})"
            continue
        if not isinstance(data, dict):
            yield path, None, "not a JSON object"
            continue
        spec = data.get("input", data)
        if not isinstance(spec, dict) or "map" not in spec or "ego_initial" not in spec:
            yield path, None, "not a scene: expected an 'input' object or a bare input with 'map' and 'ego_initial'"
            continue
        token = str(data.get("token") or data.get("case_id") or spec.get("token") or path.stem)
        try:
            cache = metric_cache_from_neutral(spec, token=token)
        except NavsimEvalError as error:
            yield path, token, str(error)
            continue
        except (KeyError, TypeError, ValueError, IndexError) as error:
            yield path, token, f"malformed scene ({type(error).__name__}: {error})"
            continue
        cache.log_name = str(data.get("log_name") or spec.get("log_name") or "")
        yield path, token, cache


def _scene_loader(args: argparse.Namespace):
    """The OpenScene scenes named by --data-root/--logs (or --split), --scene-filter and --tokens."""
    from dataclasses import replace

    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.scene_filter import SceneFilter
    from navsim_eval.data.splits import read_scene_filter

    data_split, scene_filter = args.logs, SceneFilter(frame_interval=1)
    if args.split:
        split = _split_file(args.split)
        data_split, scene_filter = split.data_split, split.scene_filter
    elif args.scene_filter:
        scene_filter = read_scene_filter(args.scene_filter)
    if not data_split:
        raise CliError("name the logs: --logs SPLIT (a folder of navsim_logs/) or --split SPLIT_FILE.yaml")
    if args.tokens:
        scene_filter = replace(scene_filter, tokens=tuple(args.tokens))
    return SceneLoader(args.data_root, data_split, scene_filter)


def _split_file(path_text: str):
    """The split of a ``--split`` file (``<dir>/<name>.yaml`` next to ``<dir>/scene_filter/``)."""
    from navsim_eval.data.splits import load_split

    path = Path(path_text)
    return load_split(path.parent, path.stem)


def _open_openscene_scenes(args: argparse.Namespace) -> tuple[int, CacheResults]:
    """Scenes of OpenScene log pickles with their nuPlan maps; the PDM-Closed reference is planned per scene.
    A two-stage split caches both stages (its synthetic scenes from --synthetic-scenes)."""
    from navsim_eval.data.paths import nuplan_maps_root
    from navsim_eval.pdm.cache_build import (
        loader_metric_caches,
        loader_scene_count,
        two_stage_metric_caches,
        two_stage_scene_count,
    )

    maps_root = nuplan_maps_root(args.maps_root)
    split = _split_file(args.split) if args.split else None
    if split is not None and split.two_stage is not None:
        from navsim_eval.data.two_stage import load_two_stage_scenes

        if args.tokens:
            raise CliError("--tokens: not with a two-stage split (its mapping names the scenes of both stages)")
        scenes = load_two_stage_scenes(split, args.data_root, args.synthetic_scenes)
        print(
            f"two-stage split {split.name}: {len(scenes.stage_one)} stage-one scenes, {len(scenes.stage_two)} "
            f"synthetic scenes from {scenes.synthetic_dir}"
        )
        return two_stage_scene_count(scenes), two_stage_metric_caches(scenes, maps_root)
    loader = _scene_loader(args)
    return loader_scene_count(loader), loader_metric_caches(loader, maps_root)


SCENE_SOURCES = {
    "neutral": SceneSource("neutral", "neutral scene JSON files (conformance case format)", _open_neutral_scenes),
    "openscene": SceneSource("openscene", "OpenScene logs and nuPlan maps", _open_openscene_scenes),
}


def _print_skipped(skipped: Sequence[tuple[Path, str]], noun: str = "scenes") -> None:
    """The skipped scenes, one line per distinct reason: a broken map shared by 47 scenes is said once."""
    by_reason: dict[str, list[Path]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    print(f"skipped {len(skipped)} {noun}:")
    for reason, paths in by_reason.items():
        if len(paths) == 1:
            print(f"  {paths[0]}: {reason}")
        else:
            files = list(dict.fromkeys(path.name for path in paths))
            print(f"  {len(paths)} {noun} (of {_listed(files)}): {reason}")


def _print_problems(problems: Sequence[tuple[Path, Any]]) -> None:
    """Unreadable logs and what the split names but no log holds, grouped by kind, each named."""
    from navsim_eval.pdm.cache_build import UNREADABLE_LOG, SourceProblem

    by_kind: dict[str, list[tuple[Path, SourceProblem]]] = {}
    for path, problem in problems:
        by_kind.setdefault(problem.kind, []).append((path, problem))
    for kind, entries in by_kind.items():
        print(SourceProblem.count(kind, len(entries)) + ":")
        if kind == UNREADABLE_LOG:  # the detail names the file
            for _, problem in entries[:MAX_LISTED]:
                print(f"  {problem.detail}")
            if len(entries) > MAX_LISTED:
                print(f"  ... ({len(entries) - MAX_LISTED} more)")
        else:
            print(f"  {_listed([problem.detail for _, problem in entries])}")


def cmd_cache(args: argparse.Namespace) -> int:
    from navsim_eval.data.paths import openscene_data_root
    from navsim_eval.pdm.cache_build import SourceProblem, write_metric_caches
    from navsim_eval.progress import Progress

    # OpenScene logs are named by --logs / --split; their root may come from $OPENSCENE_DATA_ROOT
    if bool(args.scenes) == bool(args.data_root or args.logs or args.split):
        raise CliError(
            "give either --scenes (neutral scene files) or --logs / --split (OpenScene logs under --data-root or "
            "$OPENSCENE_DATA_ROOT)"
        )
    source = SCENE_SOURCES["neutral" if args.scenes else "openscene"]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    started = time.perf_counter()
    total, results = source.open(args)
    with Progress(total, "cache") as progress:
        report = write_metric_caches(results, out, progress=progress)
    elapsed = time.perf_counter() - started
    origin = ", ".join(args.scenes) if args.scenes else str(openscene_data_root(args.data_root))
    kinds: dict[str, int] = {}
    for _, problem in report.problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    also = "".join(f"; {SourceProblem.count(kind, number)}" for kind, number in kinds.items())
    print(f"read {report.scenes_read} scenes from {origin} ({source.description}){also}")
    print(
        f"wrote {len(report.written)} metric caches to {out} in {elapsed:.1f} s; the store now holds "
        f"{len(report.store)} scenes"
    )
    if report.skipped:
        _print_skipped(report.skipped)
    if report.problems:
        _print_problems(report.problems)
    if not report.written:
        print(f"navsim-eval: error: no metric cache was written to {out}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_FAILED if ((report.skipped or report.problems) and args.strict) else EXIT_OK


def cmd_import_cache(args: argparse.Namespace) -> int:
    from navsim_eval.pdm.cache_build import write_metric_caches
    from navsim_eval.pdm.official_cache import iter_official_caches

    source, out = Path(args.official_dir), Path(args.out)
    if not source.is_dir():
        raise CliError(f"{source}: no such directory (an official metric cache folder)")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    started = time.perf_counter()
    report = write_metric_caches(iter_official_caches(source), out)
    store, written, skipped = report.store, report.written, report.skipped
    versions = sorted({v for token in list(written)[:1] for v in store[token].versions})
    print(
        f"converted {len(written)} official metric caches from {source} into {out} in "
        f"{time.perf_counter() - started:.1f} s (PDM-Closed reference of {', '.join(versions) or 'no version'}: "
        "score them with that --version)"
    )
    if skipped:
        _print_skipped(skipped, "files")
    if not written:
        print(f"navsim-eval: error: no metric cache was converted from {source}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_FAILED if (skipped and args.strict) else EXIT_OK


# ----------------------------------------------------------------------------------------------- score


def _mean_valid(tables: Sequence[ScoreTable], name: str) -> float:
    values = [float(t.columns[name][0]) for t in tables if bool(t.valid[0]) and name in t.columns]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def _score_two_stage(args: argparse.Namespace, split, store, trajectories: dict) -> int:
    """``score --split`` of a two-stage split: both stages with reactive traffic, the two-stage CSV."""
    from navsim_eval.csv_io import write_two_stage_csv
    from navsim_eval.data.two_stage import listed
    from navsim_eval.pdm.two_stage import COMBINED, STAGE_ONE, STAGE_TWO, score_two_stage

    if args.tokens:
        raise CliError("--tokens: not with a two-stage split (its mapping names the scenes of both stages)")
    started = time.perf_counter()
    result = score_two_stage(store, trajectories, split.two_stage, workers=args.workers)
    elapsed = time.perf_counter() - started
    out = write_two_stage_csv(args.out, result)
    ones = sum(row.stage == 1 for row in result.rows)
    print(
        f"scored two-stage split {split.name} in {elapsed:.1f} s: {ones} stage-one and {len(result.rows) - ones} "
        f"synthetic scenes, reactive traffic; {result.entries_used} of {len(split.two_stage)} entries aggregated"
    )
    if result.missing:
        reasons = {row.token: row.table.reasons[0] for row in result.rows if not row.valid}
        print(
            f"warning: {len(result.missing)} tokens of reactive_all_mapping could not be scored (their entries are "
            "left out of the summary): " + listed([f"{t} ({reasons[t]})" for t in result.missing])
        )
    for name, label in ((STAGE_ONE, "stage one"), (STAGE_TWO, "stage two"), (COMBINED, "combined EPDMS")):
        print(f"{label:<16} {result.summary[name]['score']:.4f}")
    print(f"wrote {out}")
    return EXIT_FAILED if (result.missing and args.strict) else EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    from navsim_eval.csv_io import write_candidates_csv, write_score_csv
    from navsim_eval.pdm.cache_io import INDEX_FILE, MetricCacheStore
    from navsim_eval.pdm.scorer import ScorerConfig
    from navsim_eval.pool import score_many
    from navsim_eval.trajectory_io import load_trajectories

    cache_dir = Path(args.cache)
    if not cache_dir.is_dir():
        raise CliError(f"--cache {cache_dir}: no such directory")
    store = MetricCacheStore(cache_dir)
    if len(store) == 0:
        raise CliError(f"--cache {cache_dir}: no metric caches found (no {INDEX_FILE} and no .mcache files)")
    trajectories = load_trajectories(args.trajectories, require_finite=False)  # a NaN candidate is an invalid row
    split = _split_file(args.split) if args.split else None
    if split is not None and split.two_stage is not None and args.version != "v2":
        raise CliError(f"--split {args.split}: a two-stage split is scored in v2 (EPDMS), not {args.version}")
    sample = next((t for t in trajectories if t in store), None)
    if sample is not None:  # a cache imported from an official one serves one version: refuse the other up front
        try:
            store[sample].reference(args.version)
        except NavsimEvalError as error:
            raise CliError(f"--cache {cache_dir}: {error}") from None
    config = ScorerConfig(traffic_agents=args.traffic_agents)
    if split is not None and split.two_stage is not None:
        return _score_two_stage(args, split, store, trajectories)
    tokens = list(trajectories)
    if split is not None and split.scene_filter.tokens is not None:
        tokens = [t for t in split.scene_filter.tokens if t in trajectories]
        absent = [t for t in split.scene_filter.tokens if t not in trajectories]
        if absent:
            print(f"warning: {len(absent)} tokens of split {split.name} have no trajectory: {_listed(absent)}")
    if args.tokens:
        wanted = list(dict.fromkeys(args.tokens))
        missing_traj = [t for t in wanted if t not in trajectories]
        if missing_traj:
            print(f"warning: {len(missing_traj)} requested tokens have no trajectory: {_listed(missing_traj)}")
        tokens = [t for t in wanted if t in trajectories]
        if not tokens:
            raise CliError("--tokens: none of the requested tokens has a trajectory")
    no_cache = [t for t in tokens if t not in store]
    unused = [] if (args.tokens or split) else [t for t in store.tokens() if t not in trajectories]

    started = time.perf_counter()
    tables = score_many(
        ((t, trajectories[t]) for t in tokens), store, version=args.version, workers=args.workers, config=config
    )
    with_ec = 0
    if args.version == "v2":
        from navsim_eval.pdm.two_frame import apply_two_frame_comfort

        with_ec = apply_two_frame_comfort(tables)
    elapsed = time.perf_counter() - started
    out = write_score_csv(args.out, tables, args.version)
    details = Path(args.details) if args.details else None
    if details is None and any(len(t) > 1 for t in tables):
        details = out.with_name(out.stem + "_candidates.csv")
    if details is not None:
        write_candidates_csv(details, tables, args.version)

    valid = [t for t in tables if bool(t.valid[0])]
    invalid = [t for t in tables if not bool(t.valid[0])]
    print(
        f"scored {len(tables)} scenes ({args.version}) in {elapsed:.1f} s: {len(valid)} valid, {len(invalid)} invalid"
    )
    if args.version == "v2":
        print(
            f"two-frame extended comfort: {with_ec} scenes have the frame 0.5 s earlier (EC counted), "
            f"{len(tables) - with_ec} do not (EC left out of their score)"
        )
    if no_cache:
        print(f"warning: {len(no_cache)} trajectory tokens have no metric cache (scored invalid): {_listed(no_cache)}")
    if unused:
        print(f"note: {len(unused)} cached scenes have no trajectory (not scored): {_listed(unused)}")
    for table in invalid[:MAX_LISTED]:
        if table.token not in no_cache:
            print(f"  invalid {table.token}: {table.reasons[0]}")
    print()
    print(f"{'metric':<34} mean over valid scenes")
    for name in METRIC_COLUMNS[args.version]:
        mean = _mean_valid(tables, name)
        print(f"{name:<34} " + ("n/a (no values)" if math.isnan(mean) else f"{mean:.4f}"))
    if tables:
        all_mean = sum(float(t.score[0]) if bool(t.valid[0]) else 0.0 for t in tables) / len(tables)
        print(f"{'score (invalid scenes = 0)':<34} {all_mean:.4f}")
    print()
    print(f"wrote {out}" + (f" and {details}" if details else ""))
    return EXIT_FAILED if (invalid and args.strict) else EXIT_OK


# ----------------------------------------------------------------------------------------------- submit


def cmd_submit(args: argparse.Namespace) -> int:
    from navsim_eval.data.synthetic_scenes import is_synthetic_token
    from navsim_eval.submission import TeamInfo, write_submission
    from navsim_eval.trajectory_io import load_trajectories

    split = _split_file(args.split) if args.split else None
    two_stage = args.two_stage or (split is not None and split.two_stage is not None)
    seeds = []
    for path in args.trajectories:
        plans = load_trajectories(path)
        multi = [token for token, poses in plans.items() if poses.ndim == 3 and poses.shape[0] != 1]
        if multi:
            raise CliError(
                f"--trajectories {path}: token {multi[0]} holds {plans[multi[0]].shape[0]} candidates; a submission "
                "takes one trajectory [8, 3] per token (write one file per seed)"
            )
        seeds.append({token: poses.reshape(8, 3) for token, poses in plans.items()})
    required_one = required_two = None
    second: set[str] = set()
    if split is not None and split.two_stage is not None:
        required_one, required_two = split.stage_one_tokens(), split.stage_two_tokens()
        second = set(required_two)
    else:
        if split is not None:
            if split.scene_filter.tokens is None:
                raise CliError(f"--split {args.split}: its scene filter lists no tokens; name them or submit without")
            required_one = list(split.scene_filter.tokens)
        if two_stage:
            second = {token for seed in seeds for token in seed if is_synthetic_token(token)}
    first_stage = [{t: p for t, p in seed.items() if not (two_stage and t in second)} for seed in seeds]
    second_stage = [{t: p for t, p in seed.items() if t in second} for seed in seeds] if two_stage else None
    team = TeamInfo(args.team_name, args.authors, args.email, args.institution, args.country)
    path = write_submission(
        args.out,
        team,
        first_stage,
        second_stage,
        required_tokens=required_one,
        required_second_stage_tokens=required_two,
    )
    counts = f"{len(first_stage[0])} first-stage" + (f" + {len(second_stage[0])} second-stage" if two_stage else "")
    print(f"wrote {path} ({'v2 two-stage' if two_stage else 'v1'} layout, {len(seeds)} seed(s), {counts} tokens)")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- conformance


def _pipeline_conformance(args: argparse.Namespace) -> int:
    """``conformance --pipeline DIR``: whole worlds cached and scored by us, compared with the official CSVs."""
    from navsim_eval.pipeline_conformance import CACHE_SOURCES, format_report, run_pipeline_conformance

    versions = ["v1", "v2"] if args.version == "both" else [args.version]
    report = run_pipeline_conformance(
        args.pipeline,
        versions,
        args.tolerance,
        workdir=args.workdir,
        workers=args.workers or 1,
        cache_source=CACHE_SOURCES[args.caches],
    )
    for line in format_report(report):
        print(line)
    return EXIT_OK if report.passed else EXIT_FAILED


def cmd_conformance(args: argparse.Namespace) -> int:
    if args.pipeline:
        return _pipeline_conformance(args)
    import fnmatch

    from navsim_eval.conformance import case_paths, check_case, default_conformance_dir, load_case

    try:
        import navsim_eval.pdm.scorer  # noqa: F401  (fail with one line, not once per case)
    except ImportError as error:
        raise CliError(f"the scorer cannot be imported ({error})") from None
    directory = Path(args.dir) if args.dir else default_conformance_dir()
    if not directory.is_dir():
        raise CliError(f"--dir {directory}: no such directory (set --dir or $NAVSIM_EVAL_CONFORMANCE_DIR)")
    paths = case_paths(directory)
    if args.cases:
        paths = [p for p in paths if any(fnmatch.fnmatch(p.stem, pattern) for pattern in args.cases)]
    if not paths:
        raise CliError(f"--dir {directory}: no conformance cases found" + (" matching --cases" if args.cases else ""))
    versions = ["v1", "v2"] if args.version == "both" else [args.version]

    counts = {v: [0, 0] for v in versions}  # passed, checked
    width = max(len(p.stem) for p in paths)
    print(f"{'case':<{width}}  " + "  ".join(f"{v:<4}" for v in versions) + "  details")
    started = time.perf_counter()
    for path in paths:
        try:
            case = load_case(path)
        except NavsimEvalError as error:
            print(f"{path.stem:<{width}}  " + "  ".join("ERR " for _ in versions) + f"  {error}")
            for v in versions:
                counts[v][1] += 1
            continue
        checks = check_case(case, versions, args.tolerance)
        cells, details = [], []
        for version in versions:
            check = checks[version]
            cells.append(f"{check.status:<4}")
            if check.status != "-":
                counts[version][1] += 1
                counts[version][0] += check.status == "ok"
            if check.detail:
                details.append(f"{version}: {check.detail}")
        print(f"{case.case_id:<{width}}  " + "  ".join(cells) + ("  " + "; ".join(details) if details else ""))
    elapsed = time.perf_counter() - started
    print()
    summary = ", ".join(f"{v}: {passed}/{checked} passed" for v, (passed, checked) in counts.items())
    print(f"{summary} ({len(paths)} cases from {directory}, {elapsed:.1f} s, tolerance {args.tolerance:g})")
    return EXIT_OK if all(passed == checked for passed, checked in counts.values()) else EXIT_FAILED


# ----------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="navsim-eval",
        description="NAVSIM PDM scoring (PDMS v1.1 and EPDMS v2) without nuplan-devkit.",
    )
    parser.add_argument("--version", action="version", version=f"navsim-eval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    synth = sub.add_parser(
        "synth",
        help="generate the synthetic world in the real NAVSIM formats",
        description="Generate the synthetic proving ground: four towns written as nuPlan's four map locations, one "
        "safety-critical scenario per log (lead braking, cut-in, crossing pedestrians and cyclists, unprotected "
        "turns, red lights, blocked lanes, sharp curves, merges), OpenScene log pickles, rendered camera JPGs, NAVSIM "
        "split files (train / val from the training towns, test from a held-out town, all) with the scenario of "
        "every scene beside them, navtest-style filtered. Every reader and command of this package, and the "
        "official devkit, load it like real NAVSIM data. Deterministic in --seed.",
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="folder to write the world into")
    synth.add_argument(
        "--logs",
        type=int,
        metavar="N",
        help="a small world of N logs split by log only (as the tests use); default: the proving ground",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--frames",
        type=int,
        metavar="F",
        help="2 Hz frames per log, every window a scene (default: as many as each log's scenes need)",
    )
    synth.add_argument(
        "--split-logs",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help="logs of the proving ground's train, val and test splits (default: WorldConfig.split_logs)",
    )
    synth.add_argument(
        "--scenarios", nargs="+", metavar="NAME", help="only these scenario types (default: all of them)"
    )
    synth.add_argument(
        "--filter",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply the navtest-style filter to every split (default: on for the proving ground, off with --logs)",
    )
    synth.add_argument("--verbose", action="store_true", help="print a line per log")
    synth.add_argument(
        "--cameras",
        nargs="+",
        default=["CAM_F0"],
        metavar="CAM",
        help="cameras to render (default CAM_F0; any of CAM_F0 CAM_L0 CAM_L1 CAM_L2 CAM_R0 CAM_R1 CAM_R2 CAM_B0)",
    )
    synth.add_argument("--image-size", default="320x180", metavar="WxH", help="image size (default 320x180)")
    synth.add_argument("--data-split", default="synthetic", help="folder name under navsim_logs/ (default synthetic)")
    synth.set_defaults(handler=cmd_synth)

    two_stage = sub.add_parser(
        "two-stage",
        help="write a navhard-style two-stage split of a world on disk",
        description="From a world already on disk (navsim_logs/ + maps/, e.g. written by `navsim-eval synth`), "
        "write a two-stage split: stage-one scenes (4 + 8 frames) with their predecessors, and per scene "
        "synthetic follow-ups starting 4 s / 3.5 s later from the logged pose (pair 0) or from a perturbed one "
        "(lon/lat up to 1 m, heading up to 0.06 rad), as NAVSIM synthetic scene pickles under "
        "<world>/navhard_two_stage/synthetic_scene_pickles; the split file with reactive_all_mapping under "
        "<world>/splits/; the logged future of every token as a trajectory file. Deterministic in --seed.",
    )
    two_stage.add_argument("--world", required=True, metavar="DIR", help="the world folder (navsim_logs/, maps/)")
    two_stage.add_argument("--name", default="synthetic_two_stage", help="split name (default synthetic_two_stage)")
    two_stage.add_argument("--pairs", type=int, default=3, help="synthetic (now, prev) pairs per scene (default 3)")
    two_stage.add_argument("--stride", type=int, default=8, help="frames between stage-one scenes (default 8)")
    two_stage.add_argument("--max-entries", type=int, metavar="N", help="at most N stage-one scenes")
    two_stage.add_argument("--seed", type=int, default=0, help="random seed of the perturbations (default 0)")
    two_stage.set_defaults(handler=cmd_two_stage)

    def add_scene_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data-root",
            metavar="DIR",
            help="OpenScene data root with navsim_logs/ and sensor_blobs/ (default $OPENSCENE_DATA_ROOT)",
        )
        parser.add_argument("--maps-root", metavar="DIR", help="nuPlan maps root (default $NUPLAN_MAPS_ROOT)")
        parser.add_argument("--logs", metavar="SPLIT", help="the log folder navsim_logs/SPLIT (e.g. test, mini)")
        parser.add_argument(
            "--split",
            metavar="SPLIT_FILE",
            help="a NAVSIM split file (<name>.yaml next to scene_filter/<name>.yaml): its logs folder and scenes",
        )
        parser.add_argument("--scene-filter", metavar="YAML", help="a NAVSIM scene_filter file (with --logs)")
        parser.add_argument("--tokens", nargs="+", metavar="TOKEN", help="only these scene tokens")

    filter_ = sub.add_parser(
        "filter",
        help="keep the scenes where driving well takes more than holding speed (navtest-style)",
        description="Score constant velocity and the logged human on every scene (PDMS v1.1) and write a new split "
        "file with the scenes that constant velocity does not solve (PDMS < threshold) and the human drives well "
        "(PDMS >= threshold), as NAVSIM built navtrain and navtest; report how many each rule removed. A --split "
        "with scenario labels beside it (<name>_scenarios.json, as navsim-eval synth writes) gets the labels of the "
        "kept scenes beside the new split.",
    )
    add_scene_options(filter_)
    filter_.add_argument("--out", required=True, metavar="SPLIT_FILE", help="the new split file, <dir>/<name>.yaml")
    filter_.add_argument("--threshold", type=float, default=0.8, help="PDMS threshold of both rules (default 0.8)")
    filter_.add_argument(
        "--cache", metavar="CACHE_DIR", help="reuse the metric caches of this folder where it has them"
    )
    filter_.add_argument("--report", metavar="JSON", help="also write every scene's two scores and the counts")
    filter_.set_defaults(handler=cmd_filter)

    inspect = sub.add_parser(
        "inspect",
        help="describe the scenes of OpenScene logs",
        description="Load scenes from OpenScene logs (real or synthetic) and print one line per scene: token, "
        "log, map, ego pose and speed, driving command, objects by class, route roadblocks, red lane connectors "
        "and the future trajectory's pose at 4 s (with --json, one JSON object per line with the acceleration, "
        "the timestamp and all 8 future poses). The load report goes to standard error.",
    )
    add_scene_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print one JSON object per scene")
    inspect.set_defaults(handler=cmd_inspect)

    cache = sub.add_parser(
        "cache",
        help="build a metric cache folder from scenes",
        description="Build a metric cache folder (one checksummed file per scene and a relocatable "
        "metadata.json index), from OpenScene logs + nuPlan maps (--data-root with --logs or --split; the "
        "PDM-Closed reference is planned per scene) or from neutral scene JSON files (--scenes: conformance "
        "case files with an 'input' key, or bare input objects). Progress (scenes done, rate, time left) goes to "
        "standard error: one line redrawn on a terminal, a plain line every 10 s otherwise. The report counts "
        "scenes apart from unreadable logs and from tokens the split names that no log holds (named), and says "
        "a reason shared by many scenes (a broken map) once, with their number.",
    )
    add_scene_options(cache)
    cache.add_argument(
        "--scenes",
        nargs="+",
        metavar="PATH",
        help="scene JSON files, or folders searched recursively for *.json; the token is the file's 'token' or "
        "'case_id' key, else the file name",
    )
    cache.add_argument(
        "--out",
        required=True,
        metavar="CACHE_DIR",
        help="metric cache folder to create or add to (scenes with the same token are replaced)",
    )
    cache.add_argument(
        "--synthetic-scenes",
        metavar="DIR",
        help="a two-stage split's synthetic scene pickles (default <data root>/navhard_two_stage/"
        "synthetic_scene_pickles, where NAVSIM looks)",
    )
    cache.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 if any scene was skipped, a log is unreadable or a token of the split is missing",
    )
    cache.set_defaults(handler=cmd_cache)

    import_cache = sub.add_parser(
        "import-cache",
        help="convert an official NAVSIM metric cache folder into ours",
        description="Read an official metric cache folder (run_metric_caching.py of NAVSIM v1.1 or v2: "
        "<log>/unknown/<token>/metric_cache.pkl, lzma pickles of navsim / nuPlan objects, read with an "
        "allow-list of classes; metadata/*.csv may hold absolute paths of another machine) and write our "
        "metric cache folder, so a cached navtrain / navtest is not cached again. The converted cache holds the "
        "PDM-Closed reference of the version it was made with and scores that version only; reactive traffic "
        "(two-stage splits) needs a cache built with `navsim-eval cache`.",
    )
    import_cache.add_argument("official_dir", metavar="OFFICIAL_DIR", help="the official metric cache folder")
    import_cache.add_argument("--out", required=True, metavar="CACHE_DIR", help="our metric cache folder to write")
    import_cache.add_argument("--strict", action="store_true", help="exit with status 1 if any file was skipped")
    import_cache.set_defaults(handler=cmd_import_cache)

    score = sub.add_parser(
        "score",
        help="score trajectories against a metric cache and write the official CSV",
        description="Score one trajectory per scene (or K candidates) and write the official NAVSIM CSV: one "
        "row per scene and a final average row ('average' for v1, 'average_all_frames' for v2), the mean over "
        "valid scenes. Scenes that cannot be scored (no metric cache, a trajectory with NaN or infinite poses) are "
        "written with valid=False, empty metrics and the reason printed; the rest is scored.",
    )
    score.add_argument(
        "--cache", required=True, metavar="CACHE_DIR", help="metric cache folder made by `navsim-eval cache`"
    )
    score.add_argument(
        "--trajectories",
        required=True,
        metavar="FILE",
        help="JSON {token: [[x, y, heading] x 8]} or .npz with one array per token, [8, 3] or [K, 8, 3]: "
        "poses every 0.5 s in the current rear-axle frame (x forward, y left, radians)",
    )
    score.add_argument(
        "--version",
        required=True,
        choices=("v1", "v2"),
        help="v1 = PDMS (NAVSIM v1.1, the navtest leaderboard); v2 = one-stage EPDMS (NAVSIM v2)",
    )
    score.add_argument("--out", required=True, metavar="CSV", help="where to write the official CSV")
    score.add_argument(
        "--split",
        metavar="SPLIT_FILE",
        help="a NAVSIM split file: score its scenes; a two-stage split (with reactive_all_mapping, e.g. "
        "navhard_two_stage) is scored in both stages with reactive traffic and written as the two-stage CSV",
    )
    score.add_argument(
        "--traffic-agents",
        choices=("non_reactive", "reactive"),
        default="non_reactive",
        help="v2 background traffic of a one-stage run: log replay (default, as the one-stage leaderboard) or "
        "IDM vehicles reacting to the ego (two-stage splits always use reactive)",
    )
    score.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="worker processes (default 0 = every CPU, at most one per 32 scenes; 1 = score in this process)",
    )
    score.add_argument(
        "--tokens", nargs="+", metavar="TOKEN", help="score only these tokens (default: every token in the file)"
    )
    score.add_argument(
        "--details",
        metavar="CSV",
        help="also write every candidate with its reason and diagnostics (written by default next to --out, "
        "as <out>_candidates.csv, when some scene has K > 1 candidates; the official CSV uses candidate 0)",
    )
    score.add_argument("--strict", action="store_true", help="exit with status 1 if any scene is invalid")
    score.set_defaults(handler=cmd_score)

    submit = sub.add_parser(
        "submit",
        help="write submission.pkl for the NAVSIM leaderboard from trajectory files",
        description="Write submission.pkl exactly as the leaderboard expects (team metadata and per-token "
        "navsim.common.dataclasses.Trajectory objects, loadable under NumPy 1.x and 2.x) from trajectory files "
        "of your own planner, one file per seed. With a two-stage --split (or --two-stage) the v2 layout with "
        "first- and second-stage predictions. Every token the split names must have a trajectory, or nothing "
        "is written.",
    )
    submit.add_argument(
        "--trajectories",
        nargs="+",
        required=True,
        metavar="FILE",
        help="one file per seed, as `navsim-eval score` reads them ({token: [[x, y, heading] x 8]}, .json or .npz)",
    )
    submit.add_argument(
        "--split",
        metavar="SPLIT_FILE",
        help="the split submitted to (navtest.yaml, navhard_two_stage.yaml): its tokens are required; a "
        "two-stage split gives the v2 layout and says which tokens are second-stage",
    )
    submit.add_argument(
        "--two-stage",
        action="store_true",
        help="v2 two-stage layout without a two-stage split: 17-character (synthetic) tokens are second-stage",
    )
    submit.add_argument("--team-name", required=True, help="shown on the board; e.g. '<a href=REPO>Method</a>'")
    submit.add_argument("--authors", required=True, help="shown on the board")
    submit.add_argument("--email", required=True, help="contact (not shown publicly)")
    submit.add_argument("--institution", required=True, help="shown on the board")
    submit.add_argument("--country", required=True, help="written as 'country / region'")
    submit.add_argument(
        "--out", default="submission.pkl", metavar="FILE", help="where to write (must be named submission.pkl)"
    )
    submit.set_defaults(handler=cmd_submit)

    conformance = sub.add_parser(
        "conformance",
        help="check this installation against scenes scored by the official NAVSIM code",
        description="Score every conformance case and compare each sub-metric and the score with the official "
        "v1.1 / v2 outputs stored in the case files; or, with --pipeline, run whole worlds end to end (metric "
        "caching with PDM-Closed, then scoring) and compare with the official CSVs. Exit status 1 if anything "
        "differs.",
    )
    conformance.add_argument(
        "--dir",
        metavar="DIR",
        help="conformance folder (with cases/*.json); default $NAVSIM_EVAL_CONFORMANCE_DIR, else "
        "../shared/pdm_conformance next to the repository",
    )
    conformance.add_argument(
        "--version", choices=("v1", "v2", "both"), default="both", help="which scorer to check (default both)"
    )
    conformance.add_argument(
        "--pipeline",
        metavar="DIR",
        help="instead of the cases: a folder of worlds run through the official NAVSIM pipeline (worlds/, "
        "trajectories/, official/scores_v1.csv and scores_v2.csv, e.g. ../shared/official_pipeline): cache every "
        "world, score every kind of trajectory in each version and compare every sub-metric and the score",
    )
    conformance.add_argument(
        "--workdir", metavar="DIR", help="with --pipeline: keep the metric caches here (default: a temporary folder)"
    )
    conformance.add_argument(
        "--workers", type=int, default=1, metavar="N", help="with --pipeline: scoring processes (default 1)"
    )
    conformance.add_argument(
        "--caches",
        choices=("build", "official"),
        default="build",
        help="with --pipeline: build the metric caches from the worlds (default), or convert the official ones "
        "in official/metric_cache_files/<version> (what `navsim-eval import-cache` does)",
    )
    conformance.add_argument(
        "--cases", nargs="+", metavar="PATTERN", help="only cases whose id matches one of these glob patterns"
    )
    conformance.add_argument(
        "--tolerance", type=float, default=1e-9, help="absolute tolerance for each value (default 1e-9)"
    )
    conformance.set_defaults(handler=cmd_conformance)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``navsim-eval`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except NavsimEvalError as error:
        print(f"navsim-eval {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the output was piped into something like `head` that stopped reading
        sys.stderr.close()
        return EXIT_OK
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"navsim-eval {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("navsim-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
