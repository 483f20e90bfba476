"""Everything the scorer needs about one scene, computed once (NAVSIM's MetricCache, one object for v1 and v2).

The official pipeline caches v1.1 and v2 separately: PDM-Closed ranks its proposals with the scorer of the version,
so the two caches can hold different references. One of our caches serves both versions and so holds both picks
(``references``); a cache imported from an official cache holds the one version it was made for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.pdm.observation import Observation

if TYPE_CHECKING:
    from navsim_eval.pdm.idm_traffic import ReactiveTraffic
from navsim_eval.scene import EgoState

NUM_SCORING_STEPS = 41  # 4 s at 10 Hz, t = 0 included
V1_OBSERVATION_STEPS = 51  # v1 keeps 5 s of objects so that TTC can look 0.9 s past the horizon
SCORING_VERSIONS = ("v1", "v2")


class SceneType(Enum):
    ORIGINAL = "original"  # a logged scene with a human trajectory (the human filter applies)
    SYNTHETIC = "synthetic"  # a pseudo-simulated follow-up scene without a human trajectory


@dataclass
class MetricCache:
    """The scene as the scorer sees it: initial ego, drivable map, route, centerline, future objects, red lights,
    the PDM-Closed reference of each scoring version, the logged history (for HC) and the logged human future (for
    the human filter)."""

    token: str
    ego: EgoState  # initial state; ego.time_us is t0
    drivable_map: DrivableMap
    route_lane_ids: tuple[str, ...]
    centerline: Centerline
    observation: Observation  # 51 steps (5 s) for v1 scoring
    red_lights: list[list[str]]  # per 10 Hz step (41): lane-connector tokens whose light is red
    # version -> [41, 3] PDM-Closed rear-axle poses at t0 + 0.1 s * k, chosen with that version's scorer
    references: dict[str, np.ndarray]
    past_ego_states: list[EgoState] | None = None  # logged ego at about t0-1.5, -1, -0.5, 0 s
    human_trajectory: np.ndarray | None = None  # [8, 3] logged future in the ego frame
    # v2 interpolates only the first 4 s of frames, which is not always the first 41 steps of the v1 observation
    # (a track seen once before 4 s and again after it); None = truncate ``observation``.
    observation_v2: Observation | None = None
    scene_type: SceneType = SceneType.ORIGINAL
    log_name: str = ""
    metadata: dict = field(default_factory=dict)
    # The t0 objects as logged (one step; the interpolated observation's step 0 also holds single-appearance
    # tracks) and what the reactive IDM traffic of two-stage scoring needs from the map; None: no reactive traffic.
    current_objects: Observation | None = None
    reactive_traffic: ReactiveTraffic | None = None

    def __post_init__(self) -> None:
        self.route_lane_ids = tuple(self.route_lane_ids)
        unknown = [version for version in self.references if version not in SCORING_VERSIONS]
        if not self.references or unknown:
            raise InvalidSceneError(
                f"metric cache {self.token}: references must map some of {list(SCORING_VERSIONS)} to PDM-Closed "
                f"poses, got keys {list(self.references)}"
            )
        self.references = {
            version: self.references[version] for version in SCORING_VERSIONS if version in self.references
        }
        for version, poses in self.references.items():
            poses = np.asarray(poses, dtype=np.float64)
            if poses.shape != (NUM_SCORING_STEPS, 3) or not np.all(np.isfinite(poses)):
                raise InvalidSceneError(
                    f"metric cache {self.token}: the {version} reference poses must be finite "
                    f"[{NUM_SCORING_STEPS}, 3], got {list(poses.shape)}"
                )
            self.references[version] = poses
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

    @property
    def is_synthetic(self) -> bool:
        """A two-stage follow-up scene (no human trajectory, no human filter)."""
        return self.scene_type == SceneType.SYNTHETIC

    @property
    def versions(self) -> tuple[str, ...]:
        """The scoring versions this cache holds a PDM-Closed reference for."""
        return tuple(self.references)

    def reference(self, version: str) -> np.ndarray:
        """The PDM-Closed reference [41, 3] that ``version`` normalises ego progress by.

        Refused in one line for a version the cache was not made for (an imported official cache holds one).
        """
        try:
            return self.references[version]
        except KeyError:
            origin = self.metadata.get("imported_from")
            made = f"imported from {origin}" if origin else f"made for {' and '.join(self.versions)}"
            raise InvalidSceneError(
                f"metric cache {self.token}: holds no {version} PDM-Closed reference ({made}); score it with "
                f"--version {self.versions[0]}, or build a cache for both versions with `navsim-eval cache`"
            ) from None
