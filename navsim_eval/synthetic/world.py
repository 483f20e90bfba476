"""Generate the embedded synthetic world in the real NAVSIM formats: the proving ground.

``generate_world(out, config)`` builds the towns (:mod:`navsim_eval.synthetic.towns`), runs one scenario per log
(:mod:`navsim_eval.synthetic.scenarios`), records each log around its event and writes exactly what a NAVSIM user
has on disk for real data, so the same readers load it::

    <out>/maps/nuplan-maps-v1.0.json + <location>/<version>/map.gpkg   all four nuPlan locations (placeholders
                                                                          where no town is)
    <out>/navsim_logs/<split>/<log>.pkl                  OpenScene log pickles (2 Hz frames, written by
                                                         navsim_eval.data.openscene_writer)
    <out>/sensor_blobs/<split>/<log>/CAM_F0/<token>.jpg  rendered camera images
    <out>/splits/<name>.yaml + scene_filter/<name>.yaml  NAVSIM split files
    <out>/splits/<name>_scenarios.json                   the scenario of every scene (navsim_eval.synthetic.labels)

Splits: ``synthetic_train``, ``synthetic_val``, ``synthetic_test`` and ``synthetic_all``, disjoint in logs. The
default world (``num_logs=None``) trains and validates in the three training towns and tests in the held-out town;
its splits are navtest-filtered (:mod:`navsim_eval.data.filtering`), the generated ones are kept as
``<name>_unfiltered``. A small world (``num_logs=N``, as the tests use) splits by log only and says so.

Everything is deterministic in ``seed``: the same config writes the same files.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_text
from navsim_eval.data.openscene_writer import write_log
from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.data.splits import Split, write_split
from navsim_eval.parallel import map_in_processes
from navsim_eval.scene import Boxes, EgoState, Frame, ObjectType
from navsim_eval.synthetic.cameras import default_rig
from navsim_eval.synthetic.labels import ScenarioLabels, write_scenario_labels
from navsim_eval.synthetic.mapfile import write_maps_root
from navsim_eval.synthetic.network import RoadNetwork
from navsim_eval.synthetic.recording import CAMERA_NAMES, Snapshot, record_scenario, route_roadblocks
from navsim_eval.synthetic.render import Marking, RenderScene, TrafficLightLamp, render_rig, save_jpeg
from navsim_eval.synthetic.scenarios import SCENARIO_NAMES, SCENARIOS
from navsim_eval.synthetic.towns import TEST_TOWN, TOWNS, TRAIN_TOWNS

NUM_HISTORY_FRAMES = 4
NUM_FUTURE_FRAMES = 10
LAMP_HEIGHT_M = 4.5
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT_LOGS = (40, 16, 32)  # train, val, test logs of the default world
ATTEMPTS_PER_LOG = 12  # scenario set-ups tried (other seeds, other towns) before a log is given up
UNFILTERED = "_unfiltered"


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. The defaults make the proving ground; ``num_logs`` makes a small world instead."""

    num_logs: int | None = None  # None: the default world (split_logs per split); N: a small world of N logs
    seed: int = 0
    frames_per_log: int | None = None  # None: as many as each log's scenes need; N: every log has N frames
    data_split: str = "synthetic"  # navsim_logs/<data_split>
    cameras: tuple[str, ...] = ("CAM_F0",)
    image_size: tuple[int, int] = (320, 180)
    jpeg_quality: int = 85
    split_logs: tuple[int, int, int] = DEFAULT_SPLIT_LOGS
    scenarios: tuple[str, ...] = SCENARIO_NAMES
    filter_scenes: bool | None = None  # the navtest-style filter; None: on for the default world, off for small
    workers: int = 0  # processes for the logs and the filter (0 = every CPU, 1 = this process)

    def __post_init__(self) -> None:
        if self.num_logs is not None and self.num_logs < 1:
            raise ValueError(f"num_logs must be >= 1, got {self.num_logs}")
        needed = NUM_HISTORY_FRAMES + NUM_FUTURE_FRAMES
        if self.frames_per_log is not None and self.frames_per_log < needed:
            raise ValueError(
                f"frames_per_log must be >= {needed} (one scene = {needed} frames), got {self.frames_per_log}"
            )
        unknown = sorted(set(self.cameras) - set(CAMERA_NAMES))
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; expected some of {list(CAMERA_NAMES)}")
        unknown = sorted(set(self.scenarios) - set(SCENARIO_NAMES))
        if unknown or not self.scenarios:
            raise ValueError(f"scenarios {list(self.scenarios)}: expected some of {list(SCENARIO_NAMES)}")
        if len(self.split_logs) != 3 or min(self.split_logs) < 1:
            raise ValueError(f"split_logs must be three counts >= 1 (train, val, test), got {self.split_logs}")

    @property
    def small(self) -> bool:
        return self.num_logs is not None

    @property
    def filtered(self) -> bool:
        return (not self.small) if self.filter_scenes is None else self.filter_scenes


@dataclass(frozen=True)
class LogPlan:
    """One log to generate: its split, the towns to try (first that has a place for it) and its scenario."""

    index: int
    split: str
    towns: tuple[str, ...]
    scenario: str


@dataclass
class WorldSummary:
    """Where everything went and how much of it there is."""

    root: Path
    maps_root: Path
    data_root: Path
    splits_dir: Path
    data_split: str
    logs: list[str]
    num_frames: int
    scene_tokens: dict[str, list[str]] = field(default_factory=dict)  # split name -> tokens (filtered if filtered)
    seconds: float = 0.0
    scenarios: dict[str, str] = field(default_factory=dict)  # token -> scenario (every generated scene)
    unfiltered_tokens: dict[str, list[str]] = field(default_factory=dict)
    filter_reports: dict[str, dict] = field(default_factory=dict)  # split name -> FilterReport.to_json()
    holdout: str = "town"
    log_info: dict[str, dict] = field(default_factory=dict)
    tokens_by_log: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_scenes(self) -> int:
        return len(self.unfiltered_tokens.get(f"{self.data_split}_all", []))


def split_file(world: str | Path, split: str = "test", filtered: bool = True, data_split: str = "synthetic") -> Path:
    """A generated world's split file: ``<world>/splits/<data_split>_<split>[_unfiltered].yaml`` (``split`` is one
    of train, val, test, all); its scenario labels sit beside it (:func:`~navsim_eval.synthetic.labels.labels_path`)."""
    if split not in (*SPLIT_NAMES, "all"):
        raise ValueError(f"split {split!r}: expected one of {[*SPLIT_NAMES, 'all']}")
    return Path(world) / "splits" / f"{data_split}_{split}{'' if filtered else UNFILTERED}.yaml"


# ------------------------------------------------------------------------------------------------ planning


# Scenario types whose situation is live for fewer frames get more logs, so that every type has its share of scenes.
SCENARIO_WEIGHTS = {"cut_in": 1.5, "vru_crossing": 1.5, "merge": 1.5}


def scenario_sequence(scenarios: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` scenario types in a seeded order, each as often as its weight says (smooth weighted round-robin:
    every stretch of the sequence has about the right mix)."""
    order = [scenarios[int(i)] for i in rng.permutation(len(scenarios))]
    weights = {name: SCENARIO_WEIGHTS.get(name, 1.0) for name in order}
    total = sum(weights.values())
    current = dict.fromkeys(order, 0.0)
    sequence = []
    for _ in range(count):
        for name in order:
            current[name] += weights[name]
        chosen = max(order, key=lambda name: current[name])
        current[chosen] -= total
        sequence.append(chosen)
    return sequence


def plan_logs(config: WorldConfig) -> list[LogPlan]:
    """Which split, town and scenario each log gets: scenario types in turn (weighted, in a seeded order) so every
    split has them all; the default world's training towns in turn, the test town for the test split."""
    rng = np.random.default_rng([config.seed, 7])
    plans: list[LogPlan] = []
    if config.small:
        towns = (*TRAIN_TOWNS, TEST_TOWN)
        sequence = scenario_sequence(config.scenarios, config.num_logs, rng)
        for index, split in enumerate(_small_split_of(config.num_logs)):
            first = index % len(towns)
            plans.append(LogPlan(index, split, towns[first:] + towns[:first], sequence[index]))
        return plans
    for split, count in zip(SPLIT_NAMES, config.split_logs, strict=True):
        sequence = scenario_sequence(config.scenarios, count, rng)
        for k in range(count):
            if split == "test":
                towns: tuple[str, ...] = (TEST_TOWN,)
            else:
                first = (k // len(config.scenarios)) % len(TRAIN_TOWNS) + k
                towns = tuple(TRAIN_TOWNS[(first + j) % len(TRAIN_TOWNS)] for j in range(len(TRAIN_TOWNS)))
            plans.append(LogPlan(len(plans), split, towns, sequence[k]))
    return plans


def _small_split_of(num_logs: int) -> list[str]:
    """Split of each log of a small world, by log only: the last quarter tests, one log before it validates."""
    if num_logs == 1:
        return ["train"]
    num_test = max(1, round(num_logs * 0.25))
    num_val = 1 if num_logs >= 3 else 0
    return ["train"] * (num_logs - num_test - num_val) + ["val"] * num_val + ["test"] * num_test


def _split_logs(plans_by_log: dict[str, LogPlan], small: bool) -> dict[str, list[str]]:
    groups = {name: [log for log, plan in plans_by_log.items() if plan.split == name] for name in SPLIT_NAMES}
    if small:  # a tiny world still has every split: val and test fall back on the logs there are
        groups["test"] = groups["test"] or groups["val"] or groups["train"]
        groups["val"] = groups["val"] or groups["test"]
    return groups


# ------------------------------------------------------------------------------------------------ generating


@dataclass
class LogRecord:
    """What one generated log is: its name, plan, town, scenes and labels (written to disk already)."""

    name: str
    plan: LogPlan
    town: str
    scene_tokens: list[str]
    info: dict
    num_frames: int


def generate_world(
    out: str | Path,
    config: WorldConfig | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    show_progress: bool = False,
) -> WorldSummary:
    """Build the towns, simulate and record every log, render the cameras, write all files under ``out`` and
    (default world) filter the splits. Logs are made in ``config.workers`` processes; the files do not depend on
    how many. ``progress`` receives a line per log; ``show_progress`` counts the logs and the filtered scenes on
    standard error (the proving ground takes minutes)."""
    config = config or WorldConfig()
    say = progress or (lambda message: None)
    started = time.perf_counter()
    out = Path(out)
    plans = plan_logs(config)
    jobs = [(plan, config, str(out)) for plan in plans]
    records: list[LogRecord] = []
    with _counter(show_progress, len(plans), "world: logs simulated and written", "logs") as logs_done:
        each = (lambda _index: logs_done(1)) if logs_done is not None else None
        results = map_in_processes(_log_job, jobs, config.workers, done=each)
    for plan, record in zip(plans, results, strict=True):
        if record is None:
            say(f"log {plan.index}: no {plan.scenario} scenario could be set up in {list(plan.towns)}; skipped")
            continue
        say(f"log {record.name}: {plan.scenario} in {record.town}, {len(record.scene_tokens)} scenes")
        records.append(record)
    logs = [r.name for r in records]
    tokens_by_log = {r.name: r.scene_tokens for r in records}
    info = {r.name: r.info for r in records}
    scenarios = {token: r.plan.scenario for r in records for token in r.scene_tokens}
    plans_by_log = {r.name: r.plan for r in records}
    used_towns = {r.town for r in records}
    num_frames = sum(r.num_frames for r in records)
    generated = time.perf_counter()
    maps_root = out / "maps"
    write_maps_root(maps_root, {TOWNS[name].location: town_network(name, config.seed) for name in used_towns})

    splits_dir = out / "splits"
    holdout = "log" if config.small else "town"
    groups = _split_logs(plans_by_log, config.small)
    groups = {"all": logs, **groups}
    summary = WorldSummary(
        out,
        maps_root,
        out,
        splits_dir,
        config.data_split,
        logs,
        num_frames,
        seconds=0.0,
        scenarios=scenarios,
        holdout=holdout,
        log_info=info,
        tokens_by_log=tokens_by_log,
    )
    towns_of = {name: sorted({info[log]["town"] for log in group}) for name, group in groups.items()}
    written: dict[str, Split] = {}
    for name, group in groups.items():
        split_name = f"{config.data_split}_{name}"
        tokens = [token for log in group for token in tokens_by_log[log]]
        scene_filter = SceneFilter(
            num_history_frames=NUM_HISTORY_FRAMES,
            num_future_frames=NUM_FUTURE_FRAMES,
            frame_interval=1,
            has_route=True,
            log_names=tuple(group),
            tokens=tuple(tokens),
        )
        for suffix in (UNFILTERED, "") if config.filtered else ("", UNFILTERED):
            split = Split(split_name + suffix, config.data_split, scene_filter, split_name + suffix)
            note = _note(name, holdout, towns_of[name], suffix == UNFILTERED or not config.filtered)
            _write_split(splits_dir, split, note)
            _write_labels(splits_dir, split, tokens, group, summary, towns_of[name], note, None)
            written[split_name + suffix] = split
        summary.unfiltered_tokens[split_name] = tokens
        summary.scene_tokens[split_name] = tokens
    if config.filtered:
        _filter_world(summary, written, config, say, show_progress)
    summary.timings = {"generate_s": generated - started, "total_s": time.perf_counter() - started}
    summary.seconds = summary.timings["total_s"]
    return summary


@contextlib.contextmanager
def _counter(show: bool, total: int, label: str, unit: str = "scenes") -> Iterator[Callable[[int], None] | None]:
    """A progress count on standard error when ``show`` (its ``update(count)``), else None."""
    if not show:
        yield None
        return
    from navsim_eval.progress import Progress

    with Progress(total, label, unit) as progress:
        yield progress.update


@functools.cache
def town_network(town: str, seed: int) -> RoadNetwork:
    """A town's road network (built once per process)."""
    return TOWNS[town].build(seed)


@functools.cache
def _town_render_geometry(town: str, seed: int) -> _StaticGeometry:
    return _static_render_geometry(town_network(town, seed))


def _log_job(plan: LogPlan, config: WorldConfig, out: str) -> LogRecord | None:
    """Set up, simulate, record, render and write one log."""
    made = _make_log(plan, config)
    if made is None:
        return None
    town, recording, params, run_seed = made
    network = town_network(town, config.seed)
    location = TOWNS[town].location
    log_name = f"{config.data_split}-{config.seed:04d}-{plan.index:03d}"
    rig = {name: spec for name, spec in default_rig(*config.image_size).items() if name in config.cameras}
    cameras = {name: spec.to_camera() for name, spec in default_rig(*config.image_size).items()}
    rng = np.random.default_rng([config.seed, plan.index, 99])
    frame_tokens = [f"{int(t):016x}" for t in rng.integers(0, 2**63, size=len(recording.snapshots))]
    route = route_roadblocks(network, recording.ego_lanes[recording.snapshots[0].ego_lane_index :])
    blobs = Path(out) / "sensor_blobs" / config.data_split
    frames = []
    for k, snap in enumerate(recording.snapshots):
        timestamp = 1_620_000_000_000_000 + plan.index * 100_000_000_000 + round(snap.time_s * 1e6)
        paths = {name: f"{log_name}/{name}/{frame_tokens[k]}.jpg" for name in CAMERA_NAMES}
        frames.append(_frame(snap, frame_tokens[k], timestamp, route, paths))
        for camera, image in render_rig(_render_scene(_town_render_geometry(town, config.seed), snap), rig).items():
            save_jpeg(image, blobs / paths[camera], quality=config.jpeg_quality)
    log_path = Path(out) / "navsim_logs" / config.data_split / f"{log_name}.pkl"
    write_log(log_path, frames, log_name=log_name, map_location=location, cameras=cameras)
    info = {
        "split": plan.split,
        "town": town,
        "location": location,
        "scenario": plan.scenario,
        "live_from_s": round(recording.start_s, 2),
        "seed": run_seed,
        "params": _jsonable(params),
    }
    scene_tokens = [frame_tokens[k] for k in recording.scene_frames]
    return LogRecord(log_name, plan, town, scene_tokens, info, len(frames))


def _make_log(plan: LogPlan, config: WorldConfig):
    """(town, recording, params, attempt) of the first set-up that runs, trying seeds and then towns."""
    generator = SCENARIOS[plan.scenario]
    for attempt in range(ATTEMPTS_PER_LOG):
        town = plan.towns[attempt % len(plan.towns)] if attempt >= ATTEMPTS_PER_LOG // 2 else plan.towns[0]
        network = town_network(town, config.seed)
        rng = np.random.default_rng([config.seed, plan.index, attempt])
        run = generator.setup(network, rng)
        if run is None:
            continue
        recording = record_scenario(run, network, config.frames_per_log)
        if recording is not None:
            return town, recording, run.params, attempt
    return None


def _filter_world(
    summary: WorldSummary, written: dict[str, Split], config: WorldConfig, say, show_progress: bool = False
) -> None:
    """Apply the navtest-style filter to every split (each scene is scored once) and write the filtered splits."""
    from navsim_eval.data.filtering import decide_split

    name_all = f"{config.data_split}_all"
    count = len(summary.unfiltered_tokens[name_all])
    say(f"filtering {count} scenes (constant velocity and the logged human)")
    with _counter(show_progress, count, "world: navtest-style filter") as scenes_done:
        split = written[name_all + UNFILTERED]
        report = decide_split(summary.data_root, summary.maps_root, split, workers=config.workers, progress=scenes_done)
    decisions = {d.token: d for d in report.decisions}
    for name, split in list(written.items()):
        if name.endswith(UNFILTERED):
            continue
        tokens = summary.unfiltered_tokens[name]
        kept = [t for t in tokens if t in decisions and decisions[t].kept]
        part = type(report)([decisions[t] for t in tokens if t in decisions], report.threshold)
        kept_set = set(kept)
        logs = tuple(log for log in split.scene_filter.log_names if kept_set & set(summary.tokens_by_log[log]))
        scene_filter = SceneFilter(
            num_history_frames=NUM_HISTORY_FRAMES,
            num_future_frames=NUM_FUTURE_FRAMES,
            frame_interval=1,
            has_route=True,
            log_names=logs,
            tokens=tuple(kept),
        )
        filtered = Split(name, split.data_split, scene_filter, name)
        short = name[len(config.data_split) + 1 :]
        towns = sorted({summary.log_info[log]["town"] for log in logs})
        note = _note(short, summary.holdout, towns, False)
        _write_split(summary.splits_dir, filtered, note)
        _write_labels(summary.splits_dir, filtered, kept, list(logs), summary, towns, note, part.to_json())
        summary.scene_tokens[name] = kept
        summary.filter_reports[name] = part.to_json()
        say(f"{name}: {part.summary()}")


def _note(name: str, holdout: str, towns: list[str], unfiltered: bool) -> str:
    if holdout == "log":
        where = "small world: split by log only (the test town is not held out)"
    elif name == "test":
        where = f"held-out town {', '.join(towns)} (no training log drives there)"
    else:
        where = f"training towns {', '.join(towns)}"
    return f"{where}; " + ("all generated scenes (not filtered)" if unfiltered else "navtest-style filtered")


def _write_split(splits_dir: Path, split: Split, note: str) -> None:
    path = write_split(splits_dir, split)
    header = f"# synthetic world split {split.name}: {note}\n# scenario labels: {split.name}_scenarios.json\n"
    atomic_write_text(path, header + path.read_text(encoding="utf-8"))


def _write_labels(splits_dir, split: Split, tokens, logs, summary: WorldSummary, towns, note: str, report) -> None:
    labels = ScenarioLabels(
        split=split.name,
        data_split=split.data_split,
        holdout=summary.holdout,
        note=note,
        scenes={token: summary.scenarios[token] for token in tokens},
        logs={log: summary.log_info[log] for log in logs},
        towns={town: TOWNS[town].location for town in towns},
        filter=report,
    )
    write_scenario_labels(splits_dir, labels)


def _jsonable(params: dict) -> dict:
    result = {}
    for key, value in params.items():
        if isinstance(value, bool | np.bool_):
            result[key] = bool(value)
        elif isinstance(value, int | np.integer):
            result[key] = int(value)
        elif isinstance(value, float | np.floating):
            result[key] = round(float(value), 3) if math.isfinite(value) else None
        else:
            result[key] = str(value)
    return result


# ------------------------------------------------------------------------------------------------ frames


def _frame(snap: Snapshot, token: str, timestamp: int, route: list[str], cameras: dict[str, str]) -> Frame:
    """The recorded world at one 2 Hz frame as the scene model's :class:`Frame` (global boxes)."""
    x, y, heading = (float(v) for v in snap.ego_pose)
    vx, vy, ax, ay = (float(v) for v in snap.ego_dynamics)
    boxes = Boxes(
        list(snap.tokens),
        [ObjectType.parse(name) for name in snap.names],
        snap.boxes[:, [0, 1, 6]],
        snap.boxes[:, 3:6],
        snap.velocities,
    )
    return Frame(
        token=token,
        timestamp_us=int(timestamp),
        ego=EgoState(x, y, heading, vx, vy, ax, ay, int(timestamp)),
        boxes=boxes,
        roadblock_ids=list(route),
        traffic_lights=[(str(lane), bool(red)) for lane, red in snap.red_lights],
        driving_command=snap.driving_command.astype(np.int64),
        cameras=cameras,
    )


# ------------------------------------------------------------------------------------------------ rendering


@dataclass
class _StaticGeometry:
    roads: list[np.ndarray]
    markings: list[Marking]
    lamps: list[tuple[list[str], np.ndarray, float]]  # (connector ids, position, facing yaw)


def _static_render_geometry(network: RoadNetwork) -> _StaticGeometry:
    """Road surfaces, painted lines, crosswalk stripes and signal heads of a town (they never move)."""
    roads = [np.asarray(p.exterior.coords)[:-1] for p in network.drivable_polygons()]
    markings = []
    for roadblock in network.roadblocks.values():
        if roadblock.is_connector:
            continue
        lanes = sorted((network.lanes[i] for i in roadblock.lane_ids), key=lambda lane: lane.lane_index)
        markings.append(Marking(lanes[0].left_boundary, "solid", "yellow", 0.15))
        for lane in lanes[1:]:
            markings.append(Marking(lane.left_boundary, "dashed", "white", 0.15))
        markings.append(Marking(lanes[-1].right_boundary, "solid", "white", 0.15))
    for crosswalk in network.crosswalks.values():
        a, b, c, _ = np.asarray(crosswalk.exterior.coords)[:4]
        across, depth = b - a, c - b
        for f in np.arange(0.5, np.linalg.norm(across), 1.1) / np.linalg.norm(across):
            start = a + f * across
            markings.append(Marking(np.array([start, start + depth]), "solid", "white", 0.5))
    lamps = []
    signalised = [c for group in network.lights for c in group.connector_ids]  # a list: sets iterate by hash
    arriving: dict[str, list[str]] = {}
    for connector_id in signalised:
        arriving.setdefault(network.lanes[connector_id].predecessors[0], []).append(connector_id)
    for lane_id, connectors in arriving.items():
        lane = network.lanes[lane_id]
        x, y, h = lane.centerline[-1]
        markings.append(Marking(np.array([lane.left_boundary[-1], lane.right_boundary[-1]]), "solid", "white", 0.4))
        right = np.array([math.sin(h), -math.cos(h)])
        position = np.array([x, y]) + right * (0.5 * lane.width + 1.0) + 2.0 * np.array([math.cos(h), math.sin(h)])
        lamps.append((connectors, np.array([position[0], position[1], LAMP_HEIGHT_M]), h + math.pi))
    return _StaticGeometry(roads, markings, lamps)


def _render_scene(static: _StaticGeometry, snapshot: Snapshot) -> RenderScene:
    lights = []
    for connectors, position, facing in static.lamps:
        states = [snapshot.light_states[c] for c in connectors if c in snapshot.light_states]
        if states:
            lights.append(TrafficLightLamp(position, states[0], facing))
    return RenderScene(
        ego_pose=tuple(snapshot.ego_pose),
        road_polygons=static.roads,
        markings=static.markings,
        boxes=snapshot.boxes,
        box_classes=snapshot.names,
        traffic_lights=lights,
    )
