"""What the ego will encounter: every other object at each 10 Hz step, as padded arrays (PDMObservation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_eval.errors import InvalidSceneError
from navsim_eval.scene import AGENT_TYPE_MASK, OBJECT_TYPE_CODE, ObjectType


@dataclass
class Observation:
    """Objects over T steps of 0.1 s (step 0 = the current frame), one column per distinct track token.

    ``boxes[t, n]`` is (centre x, centre y, yaw, length, width) in the global frame and ``velocity[t, n]`` the
    global velocity; both are NaN where ``present[t, n]`` is False (before the first or after the last appearance).
    """

    tokens: list[str]
    types: np.ndarray  # [N] int8 codes into scene.OBJECT_TYPES
    present: np.ndarray  # [T, N] bool
    boxes: np.ndarray  # [T, N, 5]
    velocity: np.ndarray  # [T, N, 2]

    def __post_init__(self) -> None:
        num_steps, num_objects = self.present.shape
        if len(self.tokens) != num_objects or self.types.shape != (num_objects,):
            raise InvalidSceneError(f"observation: {len(self.tokens)} tokens for {num_objects} object columns")
        if self.boxes.shape != (num_steps, num_objects, 5) or self.velocity.shape != (num_steps, num_objects, 2):
            raise InvalidSceneError(
                f"observation: boxes {list(self.boxes.shape)} / velocity {list(self.velocity.shape)} do not match "
                f"present {[num_steps, num_objects]}"
            )
        if not np.all(np.isfinite(self.boxes[self.present])) or not np.all(np.isfinite(self.velocity[self.present])):
            raise InvalidSceneError("observation: non-finite box or velocity for a present object")

    @property
    def num_steps(self) -> int:
        return self.present.shape[0]

    @property
    def is_agent(self) -> np.ndarray:
        """[N] True for vehicles, pedestrians and bicycles; False for static objects."""
        return AGENT_TYPE_MASK[self.types]

    def first_appearance(self) -> np.ndarray:
        """[N] index of the first step at which each object is present (NAVSIM's ``unique_objects``)."""
        return np.argmax(self.present, axis=0)

    def truncated(self, num_steps: int) -> Observation:
        """The first ``num_steps`` steps; objects never present in them are dropped."""
        if num_steps > self.num_steps:
            raise InvalidSceneError(f"observation has {self.num_steps} steps, {num_steps} requested")
        return self.select(np.arange(num_steps), self.present[:num_steps].any(axis=0))

    def without(self, drop: np.ndarray) -> Observation:
        """The observation without the objects flagged in the bool mask ``drop`` [N]."""
        return self.select(np.arange(self.num_steps), ~np.asarray(drop, dtype=bool))

    def select(self, steps: np.ndarray, keep: np.ndarray) -> Observation:
        keep_idx = np.flatnonzero(keep)
        return Observation(
            tokens=[self.tokens[i] for i in keep_idx],
            types=self.types[keep_idx],
            present=self.present[np.ix_(steps, keep_idx)],
            boxes=self.boxes[np.ix_(steps, keep_idx)],
            velocity=self.velocity[np.ix_(steps, keep_idx)],
        )

    @classmethod
    def from_steps(cls, steps: list[list[dict]]) -> Observation:
        """Build from per-step lists of objects ``{token, type, x, y, heading, length, width, vx, vy}``.

        Static objects get zero velocity, as NAVSIM gives them.
        """
        order: dict[str, int] = {}
        types: list[int] = []
        for step in steps:
            for obj in step:
                token = str(obj["token"])
                if token not in order:
                    order[token] = len(order)
                    types.append(OBJECT_TYPE_CODE[ObjectType.parse(obj["type"])])
        num_steps, num_objects = len(steps), len(order)
        present = np.zeros((num_steps, num_objects), dtype=bool)
        boxes = np.full((num_steps, num_objects, 5), np.nan)
        velocity = np.full((num_steps, num_objects, 2), np.nan)
        type_codes = np.array(types, dtype=np.int8)
        is_agent = AGENT_TYPE_MASK[type_codes] if num_objects else np.zeros(0, dtype=bool)
        for t, step in enumerate(steps):
            for obj in step:
                n = order[str(obj["token"])]
                if present[t, n]:
                    raise InvalidSceneError(f"observation step {t}: token {obj['token']!r} appears twice")
                present[t, n] = True
                boxes[t, n] = (obj["x"], obj["y"], obj["heading"], obj["length"], obj["width"])
                velocity[t, n] = (obj["vx"], obj["vy"]) if is_agent[n] else (0.0, 0.0)
        return cls(list(order), type_codes, present, boxes, velocity)
