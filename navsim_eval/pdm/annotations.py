"""From 2 Hz log annotations to the 10 Hz inputs of the scorer: object observation and red traffic lights.

Official behaviour reproduced here (read in ``autonomousvision/navsim``, branch ``v1.1`` and ``main``):

* ``navsim/planning/metric_caching/metric_caching_utils.py`` (``StateInterpolator``): per track, a SciPy
  ``interp1d`` (linear, no ``fill_value``) over the rows ``(time, x, y, heading, vx, vy)`` with the heading column
  ``np.unwrap``-ped first; ``interpolate(t)`` returns ``None`` outside ``[start_time, end_time]`` (no extrapolation)
  and wraps the interpolated heading with ``arctan2(sin, cos)``.
* ``navsim/planning/metric_caching/metric_cache_processor.py`` (``_interpolate_gt_observation``): the tracked objects of
  the current frame and the following 2 Hz frames up to the horizon (5 s in v1.1, ``proposal_sampling.time_horizon``
  = 4 s in ``main``) are keyed by ``track_token`` at the *nominal* times ``0, 0.5, 1.0, ...`` (the frames' real
  timestamps are not used). Non-agent (static) objects get ``vx = vy = 0``. The 10 Hz times are
  ``arange(0, horizon / 0.1 + 1) * 0.1``. Box length / width / type are those of the first appearance. A track whose
  start and end times are equal, i.e. seen in exactly ONE 2 Hz frame, is appended *unchanged* (its first-appearance
  object) at EVERY 10 Hz step, including the steps before and after the frame it was seen in.
* ``main`` ``_interpolate_traffic_light_status``: the traffic lights of frames ``0 .. horizon/0.5`` are each repeated
  ``0.5 / 0.1 = 5`` times and the list is cut to ``horizon / 0.1 + 1`` (41) entries; ``PDMObservation`` then keeps
  only RED lights whose lane-connector id is in the route's lane dictionary (``_get_traffic_light_geometries``).

Because the horizon decides which frames are interpolated, a v1 observation (51 steps from 11 frames) truncated to 41
steps is NOT always equal to the v2 observation (41 steps from 9 frames): a track seen at 4.0 s and 4.5 s only is a
single-appearance track (present at all steps) in v2 but only present from step 40 in v1. Build each with its own
``num_steps``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from scipy.interpolate import interp1d

from navsim_eval.errors import InvalidSceneError
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import AGENT_TYPE_MASK, OBJECT_TYPE_CODE, Frame

ANNOTATION_INTERVAL_S = 0.5  # 2 Hz log frames
OBSERVATION_INTERVAL_S = 0.1  # 10 Hz observation steps
STEPS_PER_FRAME = 5  # round(ANNOTATION_INTERVAL_S / OBSERVATION_INTERVAL_S)
V1_OBSERVATION_STEPS = 51  # 5 s horizon (v1.1)
V2_OBSERVATION_STEPS = 41  # 4 s horizon (main)


def frames_needed(num_steps: int) -> int:
    """Number of 2 Hz frames (the current one included) that a ``num_steps`` 10 Hz observation interpolates."""
    if num_steps < 1 or (num_steps - 1) % STEPS_PER_FRAME:
        raise InvalidSceneError(f"observation num_steps must be 5*k + 1 (e.g. 41 or 51), got {num_steps}")
    return (num_steps - 1) // STEPS_PER_FRAME + 1


def observation_from_frames(frames: Sequence[Frame], num_steps: int) -> Observation:
    """Interpolate the 2 Hz annotations of ``frames`` (``frames[0]`` = current frame) to ``num_steps`` 10 Hz steps.

    Uses exactly the frames within the horizon (``(num_steps - 1) / 5 + 1`` of them; extra frames are ignored, too few
    raise). Tracks are ordered by first appearance. See the module docstring for the official rules, including the
    single-appearance quirk.
    """
    num_frames = frames_needed(num_steps)
    if len(frames) < num_frames:
        raise InvalidSceneError(
            f"observation of {num_steps} steps needs {num_frames} frames (current + {num_frames - 1} future), "
            f"got {len(frames)}"
        )
    frames = list(frames)[:num_frames]
    frame_times = np.arange(num_frames, dtype=np.float64) * ANNOTATION_INTERVAL_S
    step_times = np.arange(num_steps, dtype=np.float64) * OBSERVATION_INTERVAL_S

    # Collect per-track rows (time, x, y, heading, vx, vy) in first-appearance order.
    order: dict[str, int] = {}
    rows: list[list[np.ndarray]] = []
    first: list[tuple[int, float, float]] = []  # (type code, length, width) at the first appearance
    for frame_index, frame in enumerate(frames):
        boxes = frame.boxes
        seen: set[str] = set()
        for i, token in enumerate(boxes.tokens):
            if token in seen:
                raise InvalidSceneError(f"frame {frame.token}: track token {token!r} appears twice")
            seen.add(token)
            code = OBJECT_TYPE_CODE[boxes.types[i]]
            velocity = boxes.velocity[i] if AGENT_TYPE_MASK[code] else np.zeros(2)
            row = np.array([frame_times[frame_index], *boxes.xyh[i], *velocity], dtype=np.float64)
            if not np.all(np.isfinite(row)):
                raise InvalidSceneError(f"frame {frame.token}: object {token!r} has a non-finite box or velocity")
            if token not in order:
                order[token] = len(order)
                rows.append([])
                first.append((code, float(boxes.size[i, 0]), float(boxes.size[i, 1])))
            rows[order[token]].append(row)

    num_objects = len(order)
    present = np.zeros((num_steps, num_objects), dtype=bool)
    boxes_out = np.full((num_steps, num_objects, 5), np.nan)
    velocity_out = np.full((num_steps, num_objects, 2), np.nan)
    for n, track_rows in enumerate(rows):
        states = np.stack(track_rows)
        _, length, width = first[n]
        if len(states) == 1:
            # Quirk: the first-appearance object, unchanged (heading not re-wrapped), at every step.
            present[:, n] = True
            boxes_out[:, n] = (*states[0, 1:4], length, width)
            velocity_out[:, n] = states[0, 4:6]
            continue
        start, end = states[0, 0], states[-1, 0]
        mask = (start <= step_times) & (step_times <= end)
        values = _interpolate_track(states, step_times[mask])
        present[mask, n] = True
        boxes_out[mask, n, :3] = values[:, :3]
        boxes_out[mask, n, 3:] = (length, width)
        velocity_out[mask, n] = values[:, 3:5]

    types = np.array([code for code, _, _ in first], dtype=np.int8)
    return Observation(list(order), types, present, boxes_out, velocity_out)


def _interpolate_track(states: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``StateInterpolator``: linear interp1d of (x, y, unwrapped heading, vx, vy), heading wrapped back."""
    values = states[:, 1:].copy()
    values[:, 2] = np.unwrap(values[:, 2], axis=0)
    result = interp1d(states[:, 0], values, axis=0)(times)
    result[:, 2] = np.arctan2(np.sin(result[:, 2]), np.cos(result[:, 2]))
    return result


def red_lights_from_frames(
    frames: Sequence[Frame], route_lane_connector_ids: Collection[str], num_steps: int = V2_OBSERVATION_STEPS
) -> list[list[str]]:
    """Red on-route lane connectors per 10 Hz step: each 2 Hz frame's red lights held for 5 steps, cut to ``num_steps``.

    ``frames[0]`` is the current frame. Only lights whose status is red and whose lane-connector id is in
    ``route_lane_connector_ids`` are kept (``PDMObservation._get_traffic_light_geometries``); order within a step is
    the frame's order. Frames beyond the log give no lights (``NavSimScenario`` in ``main`` yields nothing there).
    """
    num_frames = frames_needed(num_steps)
    allowed = set(route_lane_connector_ids)
    per_step: list[list[str]] = []
    for frame_index in range(num_frames):
        red: list[str] = []
        if frame_index < len(frames):
            red = [str(lane_id) for lane_id, is_red in frames[frame_index].traffic_lights if is_red]
            red = [lane_id for lane_id in red if lane_id in allowed]
        per_step.extend([list(red) for _ in range(STEPS_PER_FRAME)])
    return per_step[:num_steps]
