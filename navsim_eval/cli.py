"""``navsim-eval``: build metric caches, score trajectory files into the official CSV, check the installation.

Subcommands:

* ``synth``        generate the synthetic proving ground in the real formats
* ``inspect``      describe the scenes of OpenScene logs
* ``filter``       navtest-style filter of a split (drop what constant velocity solves or the human fails)
* ``cache``        build a metric cache folder from scene files
* ``score``        score a trajectory file against a metric cache and write the official CSV
* ``conformance``  score the bundled conformance cases and compare with the official NAVSIM numbers

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

import numpy as np

from navsim_eval import __version__
from navsim_eval.conformance import OFFICIAL_KEYS
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
        args.out, config, progress=(lambda message: print(f"  {message}")) if args.verbose else None
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


def cmd_filter(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from navsim_eval.data.filtering import filter_caches, split_caches
    from navsim_eval.data.paths import nuplan_maps_root
    from navsim_eval.data.scene_filter import SceneFilter
    from navsim_eval.data.splits import Split, load_split, write_split

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
    for decision in report.decisions:
        if decision.reason:
            print(f"  not scored {decision.token}: {decision.reason}")
    if args.report:
        data = report.to_json() | {
            "scenes_detail": [
                {"token": d.token, "constant_velocity_pdms": _finite(d.constant_velocity_score),
                 "human_pdms": _finite(d.human_score), "dropped_by": list(d.dropped_by), "reason": d.reason}
                for d in report.decisions
            ]
        }  # fmt: skip
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
    from navsim_eval.data.summary import scene_summary

    loader = _scene_loader(args)
    for token in loader.tokens:
        summary = scene_summary(loader[token])
        if args.json:
            print(json.dumps(summary))
        else:
            ego = summary["ego_pose"]
            print(
                f"{summary['token']}  {summary['log']}  {summary['map_location']}  x={ego['x']:.2f} "
                f"y={ego['y']:.2f} heading={ego['heading']:.3f}  v={summary['ego_velocity'][0]:.2f} m/s  "
                f"{summary['driving_command']}  objects={sum(summary['annotations'].values())}"
            )
    print(loader.report.summary(), file=sys.stderr)
    return EXIT_OK if len(loader) else EXIT_FAILED


# ----------------------------------------------------------------------------------------------- cache


@dataclass
class SceneSource:
    """Where ``navsim-eval cache`` reads scenes from: yields (file, token, MetricCache or skip reason)."""

    name: str
    description: str
    iterate: Callable[[argparse.Namespace], Iterator[tuple[Path, str | None, Any]]]


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


def _iter_neutral_scenes(args: argparse.Namespace) -> Iterator[tuple[Path, str | None, Any]]:
    """Neutral scene JSON (the conformance case format): ``{"input": {...}, ...}`` files or bare input dicts."""
    from navsim_eval.conformance import metric_cache_from_neutral

    files = _neutral_scene_files([Path(p) for p in args.scenes])
    if not files:
        raise CliError(f"--scenes {' '.join(args.scenes)}: no .json scene files found")
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
    from navsim_eval.data.splits import load_split, read_scene_filter

    data_split, scene_filter = args.logs, SceneFilter(frame_interval=1)
    if args.split:
        path = Path(args.split)
        split = load_split(path.parent, path.stem)
        data_split, scene_filter = split.data_split, split.scene_filter
    elif args.scene_filter:
        scene_filter = read_scene_filter(args.scene_filter)
    if not data_split:
        raise CliError("name the logs: --logs SPLIT (a folder of navsim_logs/) or --split SPLIT_FILE.yaml")
    if args.tokens:
        scene_filter = replace(scene_filter, tokens=tuple(args.tokens))
    return SceneLoader(args.data_root, data_split, scene_filter)


def _iter_openscene_scenes(args: argparse.Namespace) -> Iterator[tuple[Path, str | None, Any]]:
    """Scenes of OpenScene log pickles with their nuPlan maps; the PDM-Closed reference is planned per scene."""
    from navsim_eval.data.paths import nuplan_maps_root
    from navsim_eval.maps.locations import load_map
    from navsim_eval.pdm.builder import build_metric_cache_from_map

    loader = _scene_loader(args)
    maps_root = nuplan_maps_root(args.maps_root)
    for record in loader.report.skipped_logs + loader.report.skipped_scenes:
        yield loader.log_dir / f"{record.log_name}.pkl", record.token, f"{record.kind}: {record.detail}"
    for token in loader.tokens:
        scene = loader[token]
        path = loader.log_dir / f"{scene.log_name}.pkl"
        try:
            yield path, token, build_metric_cache_from_map(scene, load_map(scene.map_name, maps_root))
        except NavsimEvalError as error:
            yield path, token, str(error)


SCENE_SOURCES = {
    "neutral": SceneSource("neutral", "neutral scene JSON files (conformance case format)", _iter_neutral_scenes),
    "openscene": SceneSource("openscene", "OpenScene logs and nuPlan maps", _iter_openscene_scenes),
}


def cmd_cache(args: argparse.Namespace) -> int:
    from navsim_eval.pdm.cache_io import MetricCacheStore

    if bool(args.scenes) == bool(args.data_root):
        raise CliError("give either --scenes (neutral scene files) or --data-root with --logs / --split (OpenScene)")
    source = SCENE_SOURCES["neutral" if args.scenes else "openscene"]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    store = MetricCacheStore(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    skipped: list[tuple[Path, str]] = []
    started = time.perf_counter()
    for path, token, result in source.iterate(args):
        if isinstance(result, str):
            skipped.append((path, result))
        elif token in written:
            skipped.append((path, f"duplicate token {token!r} (already read from {written[token]})"))
        else:
            store.add(result, write_index=False)
            written[token] = path
    if written:
        store.write_index()
    elapsed = time.perf_counter() - started
    origin = ", ".join(args.scenes) if args.scenes else str(args.data_root)
    print(f"read {len(written) + len(skipped)} scenes from {origin} ({source.description})")
    print(f"wrote {len(written)} metric caches to {out} in {elapsed:.1f} s; the store now holds {len(store)} scenes")
    if skipped:
        print(f"skipped {len(skipped)}:")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    if not written:
        print(f"navsim-eval: error: no metric cache was written to {out}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_FAILED if (skipped and args.strict) else EXIT_OK


# ----------------------------------------------------------------------------------------------- score


def load_trajectories(path: Path) -> dict[str, np.ndarray]:
    """Read ``{token: [8, 3] or [K, 8, 3]}`` from a JSON object or a ``.npz`` archive keyed by token."""
    from navsim_eval.scene import validate_trajectory_array

    if not path.is_file():
        raise CliError(f"--trajectories {path}: no such file")
    raw: dict[str, Any]
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError) as error:
            raise CliError(f"--trajectories {path}: not a readable .npz archive ({error})") from None
    elif path.suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CliError(f"--trajectories {path}: not readable JSON ({error})") from None
        if not isinstance(raw, dict):
            raise CliError(f"--trajectories {path}: expected a JSON object {{token: [[x, y, heading] * 8]}}")
    else:
        raise CliError(f"--trajectories {path}: unsupported file type {path.suffix!r}; use .json or .npz")
    if not raw:
        raise CliError(f"--trajectories {path}: holds no trajectories")
    trajectories = {}
    for token, value in raw.items():
        trajectories[str(token)] = validate_trajectory_array(value, name=f"{path}: token {token!r}")
    return trajectories


def _mean_valid(tables: Sequence[ScoreTable], name: str) -> float:
    values = [float(t.columns[name][0]) for t in tables if bool(t.valid[0]) and name in t.columns]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def cmd_score(args: argparse.Namespace) -> int:
    from navsim_eval.csv_io import write_candidates_csv, write_score_csv
    from navsim_eval.pdm.cache_io import INDEX_FILE, MetricCacheStore
    from navsim_eval.pool import score_many

    try:
        import navsim_eval.pdm.scorer  # noqa: F401  (fail with one line, not once per worker)
    except ImportError as error:
        raise CliError(f"the scorer cannot be imported ({error})") from None
    cache_dir = Path(args.cache)
    if not cache_dir.is_dir():
        raise CliError(f"--cache {cache_dir}: no such directory")
    store = MetricCacheStore(cache_dir)
    if len(store) == 0:
        raise CliError(f"--cache {cache_dir}: no metric caches found (no {INDEX_FILE} and no .mcache files)")
    trajectories = load_trajectories(Path(args.trajectories))
    tokens = list(trajectories)
    if args.tokens:
        wanted = list(dict.fromkeys(args.tokens))
        missing_traj = [t for t in wanted if t not in trajectories]
        if missing_traj:
            print(f"warning: {len(missing_traj)} requested tokens have no trajectory: {_listed(missing_traj)}")
        tokens = [t for t in wanted if t in trajectories]
        if not tokens:
            raise CliError("--tokens: none of the requested tokens has a trajectory")
    no_cache = [t for t in tokens if t not in store]
    unused = [] if args.tokens else [t for t in store.tokens() if t not in trajectories]

    started = time.perf_counter()
    tables = score_many(((t, trajectories[t]) for t in tokens), store, version=args.version, workers=args.workers)
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


# ----------------------------------------------------------------------------------------------- conformance


# Official result keys (see the conformance README) -> our column names.
def official_reference(
    official: dict, version: str, has_human: bool
) -> tuple[str, dict[str, tuple[str, float]]] | None:
    """The run to compare with and its numbers {official key: (our column, value)}.

    v2 uses the human-filtered run when the scene has a human plan.
    """
    result = official.get(version)
    if not result:
        return None
    run = "agent"
    if version == "v2" and has_human and result.get("agent_human_filtered"):
        run = "agent_human_filtered"
    entry = result.get(run)
    if not entry:
        return None
    return run, {key: (ours, float(entry[key])) for key, ours in OFFICIAL_KEYS[version].items() if key in entry}


def compare_case(
    table: ScoreTable, expected: dict[str, tuple[str, float]], tolerance: float, knife_edge=lambda key: False
) -> tuple[list[str], list[str]]:
    """(mismatches, known last-bit knife edges) as 'name ours!=official' strings; no mismatch = pass."""
    if not bool(table.valid[0]):
        return [f"invalid: {table.reasons[0]}"], []
    problems, edges = [], []
    for key, (name, value) in expected.items():
        ours = float(table.columns[name][0])
        if not (abs(ours - value) <= tolerance or (math.isnan(ours) and math.isnan(value))):
            (edges if knife_edge(key) else problems).append(f"{name} {ours:.6g}!={value:.6g}")
    return problems, edges


def cmd_conformance(args: argparse.Namespace) -> int:
    import fnmatch

    from navsim_eval.conformance import case_paths, default_conformance_dir, is_knife_edge, load_case

    try:
        from navsim_eval.pdm.scorer import score
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
        cells, details = [], []
        for version in versions:
            reference = official_reference(case.official, version, case.cache.human_trajectory is not None)
            if reference is None:
                cells.append("-   ")
                continue
            run, expected = reference
            counts[version][1] += 1
            edges: list[str] = []
            try:
                table = score(case.cache, case.agent_trajectory, version)
                problems, edges = compare_case(
                    table, expected, args.tolerance, lambda key, c=case, r=run: is_knife_edge(c, r, key)
                )
            except Exception as error:  # report and go on: this command is a health check
                problems = [f"error {type(error).__name__}: {error}"]
            if problems:
                cells.append("FAIL")
                details.append(f"{version}: " + ", ".join(problems))
            elif edges:
                cells.append("ok* ")
                details.append(f"{version}: known last-bit knife edge ({', '.join(edges)})")
                counts[version][0] += 1
            else:
                cells.append("ok  ")
                counts[version][0] += 1
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
        "--logs", type=int, metavar="N",
        help="a small world of N logs split by log only (as the tests use); default: the proving ground",
    )  # fmt: skip
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--frames", type=int, metavar="F",
        help="2 Hz frames per log, every window a scene (default: as many as each log's scenes need)",
    )  # fmt: skip
    synth.add_argument(
        "--split-logs", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
        help="logs of the proving ground's train, val and test splits (default: WorldConfig.split_logs)",
    )  # fmt: skip
    synth.add_argument(
        "--scenarios", nargs="+", metavar="NAME", help="only these scenario types (default: all of them)"
    )
    synth.add_argument(
        "--filter", action=argparse.BooleanOptionalAction, default=None,
        help="apply the navtest-style filter to every split (default: on for the proving ground, off with --logs)",
    )  # fmt: skip
    synth.add_argument("--verbose", action="store_true", help="print a line per log")
    synth.add_argument(
        "--cameras", nargs="+", default=["CAM_F0"], metavar="CAM",
        help="cameras to render (default CAM_F0; any of CAM_F0 CAM_L0 CAM_L1 CAM_L2 CAM_R0 CAM_R1 CAM_R2 CAM_B0)",
    )  # fmt: skip
    synth.add_argument("--image-size", default="320x180", metavar="WxH", help="image size (default 320x180)")
    synth.add_argument("--data-split", default="synthetic", help="folder name under navsim_logs/ (default synthetic)")
    synth.set_defaults(handler=cmd_synth)

    def add_scene_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data-root", metavar="DIR",
            help="OpenScene data root with navsim_logs/ and sensor_blobs/ (default $OPENSCENE_DATA_ROOT)",
        )  # fmt: skip
        parser.add_argument("--maps-root", metavar="DIR", help="nuPlan maps root (default $NUPLAN_MAPS_ROOT)")
        parser.add_argument("--logs", metavar="SPLIT", help="the log folder navsim_logs/SPLIT (e.g. test, mini)")
        parser.add_argument(
            "--split", metavar="SPLIT_FILE",
            help="a NAVSIM split file (<name>.yaml next to scene_filter/<name>.yaml): its logs folder and scenes",
        )  # fmt: skip
        parser.add_argument("--scene-filter", metavar="YAML", help="a NAVSIM scene_filter file (with --logs)")
        parser.add_argument("--tokens", nargs="+", metavar="TOKEN", help="only these scene tokens")

    filter_ = sub.add_parser(
        "filter",
        help="keep the scenes where driving well takes more than holding speed (navtest-style)",
        description="Score constant velocity and the logged human on every scene (PDMS v1.1) and write a new split "
        "file with the scenes that constant velocity does not solve (PDMS < threshold) and the human drives well "
        "(PDMS >= threshold), as NAVSIM built navtrain and navtest; report how many each rule removed.",
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
        "log, map, ego pose and dynamics, driving command, objects by class, route, red lights and the future "
        "trajectory (with --json, one JSON object per line). The load report goes to standard error.",
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
        "case files with an 'input' key, or bare input objects).",
    )
    add_scene_options(cache)
    cache.add_argument(
        "--scenes", nargs="+", metavar="PATH",
        help="scene JSON files, or folders searched recursively for *.json; the token is the file's 'token' or "
        "'case_id' key, else the file name",
    )  # fmt: skip
    cache.add_argument(
        "--out", required=True, metavar="CACHE_DIR",
        help="metric cache folder to create or add to (scenes with the same token are replaced)",
    )  # fmt: skip
    cache.add_argument("--strict", action="store_true", help="exit with status 1 if any file was skipped")
    cache.set_defaults(handler=cmd_cache)

    score = sub.add_parser(
        "score",
        help="score trajectories against a metric cache and write the official CSV",
        description="Score one trajectory per scene (or K candidates) and write the official NAVSIM CSV: one "
        "row per scene and a final average row ('average' for v1, 'average_all_frames' for v2), the mean over "
        "valid scenes. Scenes that cannot be scored are written with valid=False and empty metrics.",
    )
    score.add_argument(
        "--cache", required=True, metavar="CACHE_DIR", help="metric cache folder made by `navsim-eval cache`"
    )
    score.add_argument(
        "--trajectories", required=True, metavar="FILE",
        help="JSON {token: [[x, y, heading] x 8]} or .npz with one array per token, [8, 3] or [K, 8, 3]: "
        "poses every 0.5 s in the current rear-axle frame (x forward, y left, radians)",
    )  # fmt: skip
    score.add_argument(
        "--version", required=True, choices=("v1", "v2"),
        help="v1 = PDMS (NAVSIM v1.1, the navtest leaderboard); v2 = one-stage EPDMS (NAVSIM v2)",
    )  # fmt: skip
    score.add_argument("--out", required=True, metavar="CSV", help="where to write the official CSV")
    score.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="worker processes (default 0 = every CPU, at most one per 32 scenes; 1 = score in this process)",
    )  # fmt: skip
    score.add_argument(
        "--tokens", nargs="+", metavar="TOKEN", help="score only these tokens (default: every token in the file)"
    )
    score.add_argument(
        "--details", metavar="CSV",
        help="also write every candidate with its reason and diagnostics (written by default next to --out, "
        "as <out>_candidates.csv, when some scene has K > 1 candidates; the official CSV uses candidate 0)",
    )  # fmt: skip
    score.add_argument("--strict", action="store_true", help="exit with status 1 if any scene is invalid")
    score.set_defaults(handler=cmd_score)

    conformance = sub.add_parser(
        "conformance",
        help="check this installation against scenes scored by the official NAVSIM code",
        description="Score every conformance case and compare each sub-metric and the score with the official "
        "v1.1 / v2 outputs stored in the case files. Exit status 1 if any case differs.",
    )
    conformance.add_argument(
        "--dir", metavar="DIR",
        help="conformance folder (with cases/*.json); default $NAVSIM_EVAL_CONFORMANCE_DIR, else "
        "../shared/pdm_conformance next to the repository",
    )  # fmt: skip
    conformance.add_argument(
        "--version", choices=("v1", "v2", "both"), default="both", help="which scorer to check (default both)"
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
