"""Scene data model: ego states, object boxes, 2 Hz frames, scenes and planned trajectories.

Plain dataclasses over numpy arrays. Poses are rear-axle poses in a global metric frame unless a name says
``ego frame``; ego velocities and accelerations are body-frame (x forward, y left); object velocities are global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from navsim_eval.errors import InvalidSceneError, InvalidTrajectoryError
from navsim_eval.geometry import absolute_to_relative_poses
from navsim_eval.sim.state import STATE_SIZE, StateIndex

TRAJECTORY_NUM_POSES = 8
TRAJECTORY_INTERVAL_S = 0.5


class ObjectType(Enum):
    """Tracked-object classes as NAVSIM names them (the OpenScene ``gt_names``)."""

    VEHICLE = "vehicle"
    PEDESTRIAN = "pedestrian"
    BICYCLE = "bicycle"
    TRAFFIC_CONE = "traffic_cone"
    BARRIER = "barrier"
    CZONE_SIGN = "czone_sign"
    GENERIC_OBJECT = "generic_object"
    EGO = "ego"

    @property
    def is_agent(self) -> bool:
        """Agents move and have a velocity; the rest are static objects (NAVSIM's ``AGENT_TYPES``)."""
        return self in _AGENT_TYPES

    @classmethod
    def parse(cls, name: str) -> ObjectType:
        """Accept both the OpenScene lower-case names and the upper-case enum names."""
        try:
            return cls(name.lower())
        except ValueError:
            raise InvalidSceneError(f"unknown object type {name!r}; expected one of {[t.value for t in cls]}") from None


_AGENT_TYPES = frozenset({ObjectType.VEHICLE, ObjectType.PEDESTRIAN, ObjectType.BICYCLE, ObjectType.EGO})
OBJECT_TYPES = tuple(ObjectType)
OBJECT_TYPE_CODE = {t: i for i, t in enumerate(OBJECT_TYPES)}
AGENT_TYPE_MASK = np.array([t.is_agent for t in OBJECT_TYPES])


@dataclass(frozen=True)
class EgoState:
    """Ego at one instant: rear-axle pose (global), body-frame velocity and acceleration, microsecond time."""

    x: float
    y: float
    heading: float
    vx: float = 0.0
    vy: float = 0.0
    ax: float = 0.0
    ay: float = 0.0
    time_us: int = 0

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.heading, self.vx, self.vy, self.ax, self.ay)
        if not np.all(np.isfinite(values)):
            raise InvalidSceneError(f"ego state has non-finite values: {values}")

    @property
    def pose(self) -> np.ndarray:
        return np.array([self.x, self.y, self.heading])

    def to_array(self) -> np.ndarray:
        """The 11-float state (steering, steering rate and yaw rates are zero, as NAVSIM builds them)."""
        state = np.zeros(STATE_SIZE)
        state[StateIndex.X], state[StateIndex.Y], state[StateIndex.HEADING] = self.x, self.y, self.heading
        state[StateIndex.VELOCITY_X], state[StateIndex.VELOCITY_Y] = self.vx, self.vy
        state[StateIndex.ACCELERATION_X], state[StateIndex.ACCELERATION_Y] = self.ax, self.ay
        return state


@dataclass
class Boxes:
    """Oriented 3-D boxes of the objects seen in one frame (global frame): columns of equal length N."""

    tokens: list[str]
    types: list[ObjectType]
    xyh: np.ndarray  # [N, 3] box centre x, y and yaw
    size: np.ndarray  # [N, 3] length, width, height
    velocity: np.ndarray  # [N, 2] global

    def __post_init__(self) -> None:
        n = len(self.tokens)
        self.xyh = np.asarray(self.xyh, dtype=np.float64).reshape(n, 3)
        self.size = np.asarray(self.size, dtype=np.float64).reshape(n, 3)
        self.velocity = np.asarray(self.velocity, dtype=np.float64).reshape(n, 2)
        if len(self.types) != n:
            raise InvalidSceneError(f"boxes: {len(self.types)} types for {n} tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def empty(cls) -> Boxes:
        return cls([], [], np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 2)))


@dataclass
class Frame:
    """One 2 Hz log frame: the ego, the annotated objects, traffic lights and the route at that time."""

    token: str
    timestamp_us: int
    ego: EgoState
    boxes: Boxes
    roadblock_ids: list[str] = field(default_factory=list)
    traffic_lights: list[tuple[str, bool]] = field(default_factory=list)  # (lane connector id, is red)
    driving_command: np.ndarray = field(default_factory=lambda: np.zeros(4))  # one-hot left, forward, right, unknown
    cameras: dict[str, str] = field(default_factory=dict)  # camera name -> image path


@dataclass
class Scene:
    """A NAVSIM scene: history frames, the current frame (index ``num_history - 1``) and future frames."""

    token: str
    log_name: str
    map_name: str
    frames: list[Frame]
    num_history: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.num_history <= len(self.frames):
            raise InvalidSceneError(
                f"scene {self.token}: num_history={self.num_history} but the scene has {len(self.frames)} frames"
            )

    @property
    def current_frame(self) -> Frame:
        return self.frames[self.num_history - 1]

    @property
    def future_frames(self) -> list[Frame]:
        return self.frames[self.num_history :]

    def future_trajectory(self, num_poses: int = TRAJECTORY_NUM_POSES) -> Trajectory:
        """The logged human future in the current ego rear-axle frame, as NAVSIM's ``get_future_trajectory``."""
        future = self.future_frames[:num_poses]
        if len(future) < num_poses:
            raise InvalidSceneError(f"scene {self.token}: {len(future)} future frames, {num_poses} needed")
        poses = np.array([f.ego.pose for f in future])
        return Trajectory(absolute_to_relative_poses(self.current_frame.ego.pose, poses))


@dataclass
class Trajectory:
    """A planned trajectory: ``num_poses`` rear-axle poses (x, y, heading) in the current ego frame every 0.5 s."""

    poses: np.ndarray
    interval_s: float = TRAJECTORY_INTERVAL_S

    def __post_init__(self) -> None:
        self.poses = validate_trajectory_array(self.poses)


def validate_trajectory_array(poses: np.ndarray, name: str = "trajectory", require_finite: bool = True) -> np.ndarray:
    """Check one trajectory [8, 3] or a batch [K, 8, 3] of ego-frame poses (finite unless ``require_finite`` is
    False: the scorer turns a NaN candidate into an invalid row); return it as float64."""
    try:
        array = np.asarray(poses, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidTrajectoryError(f"{name}: cannot convert to a float array ({error})") from None
    if array.ndim not in (2, 3) or array.shape[-2:] != (TRAJECTORY_NUM_POSES, 3):
        raise InvalidTrajectoryError(
            f"{name}: expected shape [{TRAJECTORY_NUM_POSES}, 3] or [K, {TRAJECTORY_NUM_POSES}, 3] "
            f"(x, y, heading every {TRAJECTORY_INTERVAL_S} s), got {list(array.shape)}"
        )
    if require_finite and not np.all(np.isfinite(array)):
        raise InvalidTrajectoryError(f"{name}: contains NaN or infinite poses")
    return array
