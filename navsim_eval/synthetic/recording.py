"""Record a simulated log as OpenScene frames: what the ego's sensors and the annotators would have produced.

Every 0.5 s (every fifth 10 Hz step) we store an OpenScene v1.1 frame dict: the ego pose as a quaternion, its
body-frame velocity and acceleration, the driving command derived from its route, the route's roadblocks, the
signals near it, the annotated boxes around it in its frame, and camera calibration with blob paths. The same
readers that load the real OpenScene logs load these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from navsim_eval.synthetic.network import RoadNetwork
from navsim_eval.synthetic.traffic import DT, TrafficState, Vehicle, step

FRAME_STEPS = 5  # 10 Hz steps per 2 Hz frame
HISTORY_FRAMES = 4  # a scene: 4 frames up to the current one and 10 after it
FUTURE_FRAMES = 10
ANNOTATION_RADIUS_M = 80.0
SIGNAL_RADIUS_M = 100.0
COMMAND_LOOKAHEAD_M = 20.0
COMMAND_LATERAL_M = 2.0
CAMERA_NAMES = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")


@dataclass
class Snapshot:
    """The world at one 2 Hz frame, in global coordinates."""

    time_s: float
    ego_pose: np.ndarray  # rear axle x, y, heading
    ego_dynamics: np.ndarray  # vx, vy, ax, ay (body frame)
    driving_command: np.ndarray  # one-hot left, forward, right, unknown
    boxes: np.ndarray  # [N, 7] centre x, y, z, length, width, height, yaw
    velocities: np.ndarray  # [N, 2] global
    names: list[str]
    tokens: list[str]
    red_lights: list[tuple[int, bool]]  # (lane connector id, is red)
    light_states: dict[str, str]  # connector id -> green / yellow / red, near the ego (for rendering)
    ego_lane_index: int = 0  # where on its route the ego is (index into its route's lanes)


def driving_command(ego: Vehicle) -> np.ndarray:
    """OpenScene's command: the route point 20 m ahead, in the ego frame, left / right if 2 m or more aside."""
    x, y, h = ego.pose()
    tx, ty, _ = ego.path.pose(ego.s + COMMAND_LOOKAHEAD_M)
    lateral = -math.sin(h) * (tx - x) + math.cos(h) * (ty - y)
    command = np.zeros(4, dtype=np.int64)
    command[0 if lateral >= COMMAND_LATERAL_M else 2 if lateral <= -COMMAND_LATERAL_M else 1] = 1
    return command


def snapshot(state: TrafficState, network: RoadNetwork) -> Snapshot:
    """Everything the log records at the current time."""
    ego = state.ego
    pose = ego.pose()
    curvature = ego.path.curvature(ego.s)
    dynamics = np.array([ego.v, 0.0, ego.a, ego.v**2 * curvature])
    boxes, velocities, names, tokens = [], [], [], []

    def add(center_xy, z_height, size, yaw, velocity, name, token) -> None:
        if math.hypot(center_xy[0] - pose[0], center_xy[1] - pose[1]) > ANNOTATION_RADIUS_M:
            return
        boxes.append([center_xy[0], center_xy[1], z_height / 2.0, size[0], size[1], size[2], yaw])
        velocities.append(velocity)
        names.append(name)
        tokens.append(token)

    for vehicle in state.vehicles:
        if vehicle.is_ego:
            continue
        x, y, h = vehicle.box_center()
        velocity = vehicle.v * np.array([math.cos(h), math.sin(h)])
        add(
            (x, y),
            vehicle.height,
            (vehicle.length, vehicle.width, vehicle.height),
            h,
            velocity,
            "vehicle",
            vehicle.token,
        )
    for person in state.pedestrians:
        if not person.active(state.t):
            continue
        position, velocity = person.state(state.t)
        yaw = math.atan2(person.direction[1], person.direction[0])
        add(position, person.size[2], person.size, yaw, velocity, person.kind, person.token)
    for static in state.statics:
        add(static.pose[:2], static.size[2], static.size, static.pose[2], np.zeros(2), static.kind, static.token)

    light_states: dict[str, str] = {}
    lights: list[tuple[int, bool]] = []
    for connector_id in state.signals.connectors:
        start = network.lanes[connector_id].centerline[0, :2]
        if math.hypot(start[0] - pose[0], start[1] - pose[1]) <= SIGNAL_RADIUS_M:
            status = state.signals.state(connector_id, state.t)
            light_states[connector_id] = status
            lights.append((int(connector_id), status == "red"))
    return Snapshot(
        time_s=state.t,
        ego_pose=pose,
        ego_dynamics=dynamics,
        driving_command=driving_command(ego),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 7),
        velocities=np.array(velocities, dtype=np.float64).reshape(-1, 2),
        names=names,
        tokens=tokens,
        red_lights=lights,
        light_states=light_states,
        ego_lane_index=ego.path.lane_index_at(ego.s),
    )


def run_log(state: TrafficState, network: RoadNetwork, num_frames: int, warmup_s: float = 5.0) -> list[Snapshot]:
    """Simulate ``num_frames`` frames at 2 Hz after a short warm-up and return their snapshots."""
    for _ in range(round(warmup_s / DT)):
        step(state)
    snapshots = [snapshot(state, network)]
    while len(snapshots) < num_frames:
        for _ in range(FRAME_STEPS):
            step(state)
        snapshots.append(snapshot(state, network))
    return snapshots


@dataclass
class Recording:
    """The frames of one scenario log, cut to what its scenes need, and which of them are scenes."""

    snapshots: list[Snapshot]
    scene_frames: list[int]  # indices into ``snapshots`` of the scenes' current frames
    start_s: float  # log time of the first live frame
    ego_lanes: list[str]  # the ego's route


def record_scenario(run, network: RoadNetwork, num_frames: int | None = None) -> Recording | None:
    """Simulate a :class:`~navsim_eval.synthetic.scenarios.ScenarioRun` and keep the frames of its scenes.

    The scenes are the frames where the run is live (within ``max_live_s`` of the first); the log keeps 3 history
    frames before the first and 10 future frames after the last. With ``num_frames`` the log has that many frames
    from the same start and every window in it is a scene. None if the run never became live.
    """
    state = run.state
    frame_s = FRAME_STEPS * DT
    snapshots = [snapshot(state, network)]
    live = [bool(run.live(state))]
    while True:
        first = live.index(True) if True in live else None
        if first is None:
            if state.t > run.max_start_s:
                return None
        else:
            start = max(first, HISTORY_FRAMES - 1)
            span = round(run.max_live_s / frame_s)
            if num_frames is not None:
                end = start - (HISTORY_FRAMES - 1) + num_frames - 1
                if len(snapshots) > end:
                    kept = snapshots[start - (HISTORY_FRAMES - 1) : end + 1]
                    scenes = list(range(HISTORY_FRAMES - 1, len(kept) - FUTURE_FRAMES))
                    return Recording(kept, scenes, snapshots[start].time_s, list(state.ego.path.lane_ids))
            else:
                flags = [k for k in range(start, min(len(live), start + span + 1)) if live[k]]
                last = flags[-1] if flags else start
                quiet = len(live) - 1 - last  # frames since the situation was last live
                if len(live) > start + span or quiet > 6:
                    if not flags:
                        return None  # live only before a scene could start (too early in the log)
                    if len(snapshots) > last + FUTURE_FRAMES:
                        offset = start - (HISTORY_FRAMES - 1)
                        kept = snapshots[offset : last + FUTURE_FRAMES + 1]
                        scenes = [k - offset for k in flags]
                        return Recording(kept, scenes, snapshots[start].time_s, list(state.ego.path.lane_ids))
        for _ in range(FRAME_STEPS):
            step(state)
        snapshots.append(snapshot(state, network))
        live.append(bool(run.live(state)))


def route_roadblocks(network: RoadNetwork, lane_ids: list[str]) -> list[str]:
    """The roadblocks and roadblock connectors of a route's lanes, in driving order."""
    ids: list[str] = []
    for lane_id in lane_ids:
        roadblock = network.lanes[lane_id].roadblock_id
        if not ids or ids[-1] != roadblock:
            ids.append(roadblock)
    return ids


def yaw_quaternion(yaw: float) -> np.ndarray:
    """[w, x, y, z] of a rotation about z."""
    return np.array([math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)])


def to_ego_frame(pose: np.ndarray, boxes: np.ndarray, velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and velocities in the ego frame as OpenScene stores them (yaw relative, not wrapped)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    local = boxes.copy()
    dx, dy = boxes[:, 0] - pose[0], boxes[:, 1] - pose[1]
    local[:, 0], local[:, 1] = c * dx + s * dy, -s * dx + c * dy
    local[:, 6] = boxes[:, 6] - pose[2]
    velocity = np.zeros((len(boxes), 3))
    velocity[:, 0] = c * velocities[:, 0] + s * velocities[:, 1]
    velocity[:, 1] = -s * velocities[:, 0] + c * velocities[:, 1]
    return local, velocity
