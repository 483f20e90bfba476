"""Everything the scorer needs about one scene, computed once (NAVSIM's MetricCache, one object for v1 and v2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import EgoState

NUM_SCORING_STEPS = 41  # 4 s at 10 Hz, t = 0 included
V1_OBSERVATION_STEPS = 51  # v1 keeps 5 s of objects so that TTC can look 0.9 s past the horizon


class SceneType(Enum):
    ORIGINAL = "original"  # a logged scene with a human trajectory (the human filter applies)
    SYNTHETIC = "synthetic"  # a pseudo-simulated follow-up scene without a human trajectory


@dataclass
class MetricCache:
    """The scene as the scorer sees it: initial ego, drivable map, route, centerline, future objects, red lights,
    the PDM-Closed reference, the logged history (for HC) and the logged human future (for the human filter)."""

    token: str
    ego: EgoState  # initial state; ego.time_us is t0
    drivable_map: DrivableMap
    route_lane_ids: tuple[str, ...]
    centerline: Centerline
    observation: Observation  # 51 steps (5 s) for v1 scoring
    red_lights: list[list[str]]  # per 10 Hz step (41): lane-connector tokens whose light is red
    reference_poses: np.ndarray  # [41, 3] PDM-Closed rear-axle poses at t0 + 0.1 s * k
    past_ego_states: list[EgoState] | None = None  # logged ego at about t0-1.5, -1, -0.5, 0 s
    human_trajectory: np.ndarray | None = None  # [8, 3] logged future in the ego frame
    # v2 interpolates only the first 4 s of frames, which is not always the first 41 steps of the v1 observation
    # (a track seen once before 4 s and again after it); None = truncate ``observation``.
    observation_v2: Observation | None = None
    scene_type: SceneType = SceneType.ORIGINAL
    log_name: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.route_lane_ids = tuple(self.route_lane_ids)
        self.reference_poses = np.asarray(self.reference_poses, dtype=np.float64)
        if self.reference_poses.shape != (NUM_SCORING_STEPS, 3) or not np.all(np.isfinite(self.reference_poses)):
            raise InvalidSceneError(
                f"metric cache {self.token}: reference_poses must be finite [{NUM_SCORING_STEPS}, 3], "
                f"got {list(self.reference_poses.shape)}"
            )
        if len(self.route_lane_ids) == 0:
            raise InvalidSceneError(f"metric cache {self.token}: the scene has no route (route_lane_ids is empty)")
        if self.observation.num_steps < NUM_SCORING_STEPS:
            raise InvalidSceneError(
                f"metric cache {self.token}: observation has {self.observation.num_steps} steps, "
                f"at least {NUM_SCORING_STEPS} are needed"
            )
        if len(self.red_lights) < NUM_SCORING_STEPS:
            self.red_lights = list(self.red_lights) + [[]] * (NUM_SCORING_STEPS - len(self.red_lights))
        if self.human_trajectory is not None:
            self.human_trajectory = np.asarray(self.human_trajectory, dtype=np.float64)

    @property
    def t0_us(self) -> int:
        return self.ego.time_us
