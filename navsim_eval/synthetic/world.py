"""Generate the embedded synthetic world in the real NAVSIM formats.

``generate_world(out, config)`` builds a town, simulates ``num_logs`` drives through it and writes exactly what a
NAVSIM user has on disk for real data, so the same readers load it:

    <out>/maps/synthetic-town/<version>/map.gpkg          nuPlan GeoPackage map (+ <out>/maps/nuplan-maps-v1.0.json)
    <out>/navsim_logs/<split>/<log>.pkl                  OpenScene log pickles (2 Hz frame dicts)
    <out>/sensor_blobs/<split>/<log>/CAM_F0/<token>.jpg  rendered camera images
    <out>/splits/<name>.yaml + scene_filter/<name>.yaml  NAVSIM split files (all, train and test; log-disjoint)

Everything is deterministic in ``seed``: the same config writes the same files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navsim_eval.data.openscene_writer import write_log
from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.data.splits import Split, write_split
from navsim_eval.synthetic.cameras import LIDAR2EGO_TRANSLATION, default_rig
from navsim_eval.synthetic.mapfile import SYNTHETIC_LOCATION, write_town_map
from navsim_eval.synthetic.network import RoadNetwork, build_town
from navsim_eval.synthetic.recording import (
    CAMERA_NAMES,
    Snapshot,
    route_roadblocks,
    run_log,
    to_ego_frame,
    yaw_quaternion,
)
from navsim_eval.synthetic.render import Marking, RenderScene, TrafficLightLamp, render_rig, save_jpeg
from navsim_eval.synthetic.traffic import populate

NUM_HISTORY_FRAMES = 4
NUM_FUTURE_FRAMES = 10
LAMP_HEIGHT_M = 4.5


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. The defaults make the small world used by the tests and the demo."""

    num_logs: int = 4
    seed: int = 0
    frames_per_log: int = 60  # 2 Hz frames: 30 s per log
    data_split: str = "synthetic"  # navsim_logs/<data_split>
    cameras: tuple[str, ...] = ("CAM_F0",)
    image_size: tuple[int, int] = (320, 180)
    jpeg_quality: int = 85
    grid: tuple[int, int] = (3, 3)
    num_vehicles: int = 18
    num_pedestrians: int = 3
    num_statics: int = 6
    test_fraction: float = 0.25  # share of logs in the held-out test split

    def __post_init__(self) -> None:
        if self.num_logs < 1:
            raise ValueError(f"num_logs must be >= 1, got {self.num_logs}")
        needed = NUM_HISTORY_FRAMES + NUM_FUTURE_FRAMES
        if self.frames_per_log < needed:
            raise ValueError(
                f"frames_per_log must be >= {needed} (one scene = {needed} frames), got {self.frames_per_log}"
            )
        unknown = sorted(set(self.cameras) - set(CAMERA_NAMES))
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; expected some of {list(CAMERA_NAMES)}")


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
    scene_tokens: dict[str, list[str]] = field(default_factory=dict)  # split name -> tokens
    seconds: float = 0.0

    @property
    def num_scenes(self) -> int:
        return len(self.scene_tokens.get(f"{self.data_split}_all", []))


def generate_world(out: str | Path, config: WorldConfig | None = None) -> WorldSummary:
    """Build the town, simulate and record every log, render the cameras and write all files under ``out``."""
    config = config or WorldConfig()
    started = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng(config.seed)
    network = build_town(rng, grid=config.grid)
    maps_root = out / "maps"
    write_town_map(network, maps_root)
    rig = {name: spec for name, spec in default_rig(*config.image_size).items() if name in config.cameras}
    full_rig = default_rig(*config.image_size)
    static_scene = _static_render_geometry(network)

    logs, tokens_by_log, num_frames = [], {}, 0
    for index in range(config.num_logs):
        log_rng = np.random.default_rng([config.seed, index])
        duration = config.frames_per_log * 0.5 + 8.0
        state = populate(network, log_rng, duration, config.num_vehicles, config.num_pedestrians, config.num_statics)
        snapshots = run_log(state, network, config.frames_per_log)
        log_name = f"synthetic-{config.seed:04d}-{index:03d}"
        frame_tokens = [f"{int(t):016x}" for t in log_rng.integers(0, 2**63, size=len(snapshots))]
        route = route_roadblocks(state, network)
        frames = []
        for k, snapshot in enumerate(snapshots):
            frame = _frame_dict(snapshot, k, index, log_name, frame_tokens[k], route, full_rig, config)
            frames.append(frame)
            scene = _render_scene(static_scene, snapshot, network)
            for camera_name, image in render_rig(scene, rig).items():
                save_jpeg(
                    image,
                    out / "sensor_blobs" / config.data_split / frame["cams"][camera_name]["data_path"],
                    quality=config.jpeg_quality,
                )
        write_log(out / "navsim_logs" / config.data_split / f"{log_name}.pkl", frames)
        logs.append(log_name)
        tokens_by_log[log_name] = frame_tokens[NUM_HISTORY_FRAMES - 1 : len(frame_tokens) - NUM_FUTURE_FRAMES]
        num_frames += len(frames)

    splits_dir = out / "splits"
    num_test = max(1, round(config.num_logs * config.test_fraction)) if config.num_logs > 1 else 0
    groups = {
        f"{config.data_split}_all": logs,
        f"{config.data_split}_train": logs[: len(logs) - num_test] if num_test else logs,
        f"{config.data_split}_test": logs[len(logs) - num_test :] if num_test else logs,
    }
    scene_tokens = {}
    for name, group in groups.items():
        tokens = [token for log in group for token in tokens_by_log[log]]
        scene_filter = SceneFilter(
            num_history_frames=NUM_HISTORY_FRAMES,
            num_future_frames=NUM_FUTURE_FRAMES,
            frame_interval=1,
            has_route=True,
            log_names=tuple(group),
            tokens=tuple(tokens),
        )
        write_split(splits_dir, Split(name, config.data_split, scene_filter, name))
        scene_tokens[name] = tokens
    return WorldSummary(
        out,
        maps_root,
        out,
        splits_dir,
        config.data_split,
        logs,
        num_frames,
        scene_tokens,
        time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------------------------ frames


def _frame_dict(
    snapshot: Snapshot, k: int, log_index: int, log_name: str, token: str, route: list[str], rig, config: WorldConfig
) -> dict:
    """One OpenScene v1.1 frame dict (keys and types of ``create_openscene_metadata.py``)."""
    x, y, heading = snapshot.ego_pose
    quaternion = yaw_quaternion(heading)
    ego2global = np.eye(4)
    ego2global[:2, :2] = [[math.cos(heading), -math.sin(heading)], [math.sin(heading), math.cos(heading)]]
    ego2global[:3, 3] = [x, y, 0.0]
    lidar2ego = np.eye(4)
    lidar2ego[:3, 3] = LIDAR2EGO_TRANSLATION
    local_boxes, local_velocity = to_ego_frame(snapshot.ego_pose, snapshot.boxes, snapshot.velocities)
    vx, vy, ax, ay = (float(v) for v in snapshot.ego_dynamics)
    can_bus = np.zeros(18)
    can_bus[:3] = [x, y, 0.0]
    can_bus[3:7] = quaternion
    can_bus[7:9] = [ax, ay]
    can_bus[10:12] = [vx, vy]
    timestamp = 1_620_000_000_000_000 + log_index * 10_000_000_000 + round(snapshot.time_s * 1e6)
    return {
        "token": token,
        "frame_idx": k,
        "timestamp": int(timestamp),
        "log_name": log_name,
        "log_token": f"{log_index:016x}",
        "scene_name": f"log-{log_index:04d}-{log_name}",
        "scene_token": f"{log_index:08x}{k // 40:08x}",
        "map_location": SYNTHETIC_LOCATION,
        "roadblock_ids": list(route),
        "vehicle_name": "synthetic-pacifica",
        "can_bus": can_bus,
        "lidar_path": f"{log_name}/MergedPointCloud/{token}.pcd",
        "lidar2ego_translation": np.array(LIDAR2EGO_TRANSLATION, dtype=np.float64),
        "lidar2ego_rotation": [1.0, 0.0, 0.0, 0.0],
        "ego2global_translation": np.array([x, y, 0.0]),
        "ego2global_rotation": quaternion,
        "ego_dynamic_state": [vx, vy, ax, ay],
        "traffic_lights": list(snapshot.red_lights),
        "driving_command": snapshot.driving_command.astype(np.int64),
        "cams": {name: rig[name].to_openscene(f"{log_name}/{name}/{token}.jpg") for name in CAMERA_NAMES},
        "sample_prev": None,
        "sample_next": None,
        "ego2global": ego2global,
        "lidar2ego": lidar2ego,
        "lidar2global": ego2global @ lidar2ego,
        "anns": {
            "gt_boxes": local_boxes,
            "gt_names": np.array(snapshot.names) if snapshot.names else np.zeros(0),
            "gt_velocity_3d": local_velocity,
            "instance_tokens": list(snapshot.tokens),
            "track_tokens": list(snapshot.tokens),
        },
    }


# ------------------------------------------------------------------------------------------------ rendering


@dataclass
class _StaticGeometry:
    roads: list[np.ndarray]
    markings: list[Marking]
    lamps: list[tuple[list[str], np.ndarray, float]]  # (connector ids, position, facing yaw)


def _static_render_geometry(network: RoadNetwork) -> _StaticGeometry:
    """Road surfaces, painted lines and signal heads of the town (they never move)."""
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
    lamps = []
    signalised = {c for group in network.lights for c in group.connector_ids}
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


def _render_scene(static: _StaticGeometry, snapshot: Snapshot, network: RoadNetwork) -> RenderScene:
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
