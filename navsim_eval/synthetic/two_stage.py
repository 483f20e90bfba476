"""A navhard-style two-stage split from a world already on disk (logs + map), so two-stage scoring runs offline.

For stage-one scenes of the logs (4 history + 8 future frames, every ``stride`` frames, each with its predecessor
0.5 s earlier), the second stage starts where the stage-one plan ends: 4 s later (``now``, the stage-one window's
last frame) and 3.5 s later (``prev``, the predecessor's last frame), as in NAVSIM's ``reactive_all_mapping``.
Pair 0 starts exactly on the logged pose; the other pairs move the ego by lon / lat ~ U(-1, 1) m and heading
~ U(-0.06, 0.06) rad in the logged start frame (the same offset for the pair's now and prev scene), the history
moved rigidly with it; the objects keep their logged global poses, their future comes from the next 8 log frames.
The scenes carry the logged ego's camera images, copied into ``<world>/<synthetic split>/sensor_blobs`` (NAVSIM's
layout): exact for pair 0, an approximation for the moved pairs (NAVSIM renders the moved ego's view; this world
cannot), so a camera model can be run on every scene of the split.
This is what ``../shared/official_two_stage/synthetic_scenes.json`` describes for the official reference split.

Written: the synthetic scene pickles in the official layout under ``<world>/<synthetic split>/
synthetic_scene_pickles`` (where NAVSIM looks), the split file ``<world>/splits/<name>.yaml`` with its scene
filter, ``<world>/<name>_synthetic_scenes.json`` (what each scene is) and ``<world>/<name>_human.json`` (the
logged future of every token in its own start frame: a trajectory file to score).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_text
from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.openscene import read_log
from navsim_eval.data.paths import LOGS_DIR
from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.data.splits import Split, TwoStageEntry, write_split
from navsim_eval.data.synthetic_scene_writer import write_synthetic_scene
from navsim_eval.data.synthetic_scenes import SCENE_PICKLES_DIR, SENSOR_BLOBS_DIR, SyntheticScene, sorted_by_type
from navsim_eval.data.two_stage import DEFAULT_SYNTHETIC_SPLIT
from navsim_eval.errors import NavsimEvalError
from navsim_eval.geometry import absolute_to_relative_poses, relative_to_absolute_poses
from navsim_eval.scene import Frame, Scene

NUM_HISTORY, NUM_FUTURE = 4, 8
STAGE_TWO_DELAY = 8  # frames (4 s) from a stage-one scene to its synthetic follow-ups
MAX_LON_LAT_OFFSET_M = 1.0
MAX_HEADING_OFFSET_RAD = 0.06


@dataclass(frozen=True)
class TwoStageConfig:
    """How many entries, follow-ups per entry and how they are perturbed; deterministic in ``seed``."""

    name: str = "synthetic_two_stage"
    pairs: int = 3  # synthetic (now, prev) pairs per stage-one scene; pair 0 is the unperturbed log
    stride: int = 8  # frames between stage-one scenes of a log
    max_entries: int | None = None
    seed: int = 0
    synthetic_split: str = DEFAULT_SYNTHETIC_SPLIT

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.stride < 1 or (self.max_entries is not None and self.max_entries < 1):
            raise NavsimEvalError(f"two-stage: pairs, stride and max_entries must be >= 1, got {self}")


@dataclass(frozen=True)
class SyntheticStart:
    """Where a synthetic scene starts (a log frame) and how its ego is moved (lon, lat, heading offset)."""

    log_name: str
    frame_index: int
    offset: tuple[float, float, float]
    token: str
    scene_token: str
    stage_one_token: str  # the stage-one scene (or its predecessor) the follow-up continues
    history_tokens: tuple[str, ...]  # the 3 frames before the current one


@dataclass
class TwoStageSplitSummary:
    """What :func:`write_two_stage_split` wrote."""

    split_file: Path
    synthetic_dir: Path
    entries: list[TwoStageEntry]
    human: dict[str, np.ndarray]  # token -> logged future [8, 3] in its own start frame
    descriptions: list[dict]


def synthetic_token(*parts: object) -> str:
    """A stable 17-character hexadecimal token (NAVSIM's synthetic token length)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:17]


def moved_pose(start: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """The start pose moved by (lon, lat, heading) in its own frame."""
    return relative_to_absolute_poses(start, np.asarray(offset, dtype=np.float64))


def build_synthetic_scene(frames: Sequence[Frame], map_name: str, start: SyntheticStart) -> SyntheticScene:
    """The synthetic scene of ``start`` from a log's decoded frames (see the module docstring)."""
    j = start.frame_index
    if j < NUM_HISTORY - 1 or j + NUM_FUTURE >= len(frames):
        raise NavsimEvalError(f"{start.log_name}: frame {j} has no 3 frames before and {NUM_FUTURE} after it")
    logged = frames[j].ego.pose
    moved = moved_pose(logged, start.offset)
    history_frames = frames[j - NUM_HISTORY + 1 : j + 1]
    history_poses = relative_to_absolute_poses(
        moved, absolute_to_relative_poses(logged, np.array([f.ego.pose for f in history_frames]))
    )
    tokens = (*start.history_tokens, start.token)
    history = [
        replace(
            frame,
            token=token,
            ego=replace(frame.ego, x=float(pose[0]), y=float(pose[1]), heading=float(pose[2])),
            cameras=frame.cameras,  # the logged view (see the module docstring); copied by write_two_stage_split
        )
        for frame, token, pose in zip(history_frames, tokens, history_poses, strict=True)
    ]
    # The future as a synthetic scene holds it (and as the reader gives it back): objects and lights only.
    future = [
        Frame(f"{start.token}+{k + 1}", f.timestamp_us, history[-1].ego, sorted_by_type(f.boxes), [], f.traffic_lights)
        for k, f in enumerate(frames[j + 1 : j + 1 + NUM_FUTURE])
    ]
    scene = Scene(start.token, start.log_name, map_name, [*history, *future], NUM_HISTORY)
    return SyntheticScene(scene, start.scene_token, frames[j].token, start.stage_one_token, Path())


def _route_at(frames: Sequence[Frame], *indices: int) -> bool:
    return all(0 <= i < len(frames) and bool(frames[i].roadblock_ids) for i in indices)


def write_two_stage_split(world: str | os.PathLike, config: TwoStageConfig | None = None) -> TwoStageSplitSummary:
    """Write a two-stage split of the world at ``world`` (``navsim_logs/<one data split>``, ``splits/``)."""
    config = config or TwoStageConfig()
    world = Path(world)
    splits = sorted(p.name for p in (world / LOGS_DIR).glob("*") if p.is_dir())
    if len(splits) != 1:
        raise NavsimEvalError(f"{world}/{LOGS_DIR}: expected one data split folder, found {splits}")
    data_split = splits[0]
    loader = SceneLoader(world, data_split, SceneFilter(NUM_HISTORY, NUM_FUTURE, frame_interval=1))
    rng = np.random.default_rng(config.seed)
    synthetic_dir = world / config.synthetic_split / SCENE_PICKLES_DIR
    sensor_root = world / config.synthetic_split / SENSOR_BLOBS_DIR
    entries: list[TwoStageEntry] = []
    human: dict[str, np.ndarray] = {}
    descriptions: list[dict] = []
    for path in sorted((world / LOGS_DIR / data_split).glob("*.pkl")):
        frames = [log_frame.frame for log_frame in read_log(path)]
        tokens = [f.token for f in frames if f.token in loader]
        if not tokens:
            continue
        log_name, map_name = loader[tokens[0]].log_name, loader[tokens[0]].map_name
        by_token = {f.token: i for i, f in enumerate(frames)}
        last_used = -config.stride
        for token in tokens:
            i = by_token[token]
            previous = frames[i - 1].token if i >= 1 else None
            if previous not in loader or i - last_used < config.stride:
                continue
            if not _route_at(frames, i + STAGE_TWO_DELAY, i + STAGE_TWO_DELAY - 1) or i + 2 * NUM_FUTURE >= len(frames):
                continue
            pairs = []
            for pair in range(config.pairs):
                if pair == 0:
                    offset = (0.0, 0.0, 0.0)
                else:
                    lon, lat = rng.uniform(-MAX_LON_LAT_OFFSET_M, MAX_LON_LAT_OFFSET_M, size=2)
                    offset = (
                        float(lon),
                        float(lat),
                        float(rng.uniform(-MAX_HEADING_OFFSET_RAD, MAX_HEADING_OFFSET_RAD)),
                    )
                scenes = []
                for role, anchor, start in (
                    ("now", token, i + STAGE_TWO_DELAY),
                    ("prev", previous, i + STAGE_TWO_DELAY - 1),
                ):
                    key = (config.seed, log_name, start, pair, role)
                    spec = SyntheticStart(
                        log_name=log_name,
                        frame_index=start,
                        offset=offset,
                        token=synthetic_token(*key, "token"),
                        scene_token=synthetic_token(*key, "scene"),
                        stage_one_token=anchor,
                        history_tokens=tuple(synthetic_token(*key, "frame", k) for k in range(NUM_HISTORY - 1)),
                    )
                    synthetic = build_synthetic_scene(frames, map_name, spec)
                    _copy_images(synthetic.scene, world / "sensor_blobs" / data_split, sensor_root)
                    write_synthetic_scene(synthetic_dir, synthetic)
                    human[spec.token] = _logged_future(frames, start, synthetic.scene.current_frame.ego.pose)
                    descriptions.append(_description(spec, role, pair, frames))
                    scenes.append(spec.token)
                pairs.append((scenes[0], scenes[1]))
            for anchor in (token, previous):
                human[anchor] = loader[anchor].future_trajectory().poses
            entries.append(TwoStageEntry(token, previous, tuple(pairs)))
            last_used = i
            if config.max_entries is not None and len(entries) >= config.max_entries:
                break
        if config.max_entries is not None and len(entries) >= config.max_entries:
            break
    if not entries:
        raise NavsimEvalError(
            f"{world}: no stage-one scene has the {2 * NUM_FUTURE} frames ahead that a two-stage entry needs"
        )
    split_file = _write_split(world, data_split, config.name, entries)
    atomic_write_text(world / f"{config.name}_synthetic_scenes.json", json.dumps(descriptions, indent=1))
    atomic_write_text(world / f"{config.name}_human.json", json.dumps({t: p.tolist() for t, p in human.items()}))
    return TwoStageSplitSummary(split_file, synthetic_dir, entries, human, descriptions)


def _copy_images(scene: Scene, source: Path, target: Path) -> None:
    """The history frames' camera images (paths relative to the sensor root) into the synthetic sensor root."""
    for frame in scene.frames[: scene.num_history]:
        for relative in frame.cameras.values():
            if (source / relative).is_file() and not (target / relative).is_file():
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / relative, target / relative)


def _logged_future(frames: Sequence[Frame], start: int, origin: np.ndarray) -> np.ndarray:
    """The log's next 8 ego poses in the (moved) start frame: the human trajectory of a synthetic scene."""
    poses = np.array([f.ego.pose for f in frames[start + 1 : start + 1 + NUM_FUTURE]])
    return absolute_to_relative_poses(origin, poses)


def _description(spec: SyntheticStart, role: str, pair: int, frames: Sequence[Frame]) -> dict:
    logged = frames[spec.frame_index].ego.pose
    return {
        "token": spec.token,
        "scene_token": spec.scene_token,
        "log_name": spec.log_name,
        "role": role,
        "pair_index": pair,
        "stage_one_token": spec.stage_one_token,
        "corresponding_original_scene": frames[spec.frame_index].token,
        "log_start_frame_index": spec.frame_index,
        "offset_lon_m": spec.offset[0],
        "offset_lat_m": spec.offset[1],
        "offset_heading_rad": spec.offset[2],
        "log_start_pose": logged.tolist(),
        "synthetic_start_pose": moved_pose(logged, spec.offset).tolist(),
    }


def _write_split(world: Path, data_split: str, name: str, entries: list[TwoStageEntry]) -> Path:
    stage_one = list(dict.fromkeys(t for e in entries for t in (e.stage_one, e.previous)))
    synthetic = [t for e in entries for t in e.synthetic_tokens]
    scene_filter = SceneFilter(
        num_history_frames=NUM_HISTORY,
        num_future_frames=NUM_FUTURE,
        frame_interval=1,
        tokens=tuple(stage_one),
        include_synthetic_scenes=True,
        reactive_synthetic_initial_tokens=tuple(synthetic),
    )
    return write_split(world / "splits", Split(name, data_split, scene_filter, name, tuple(entries)))
