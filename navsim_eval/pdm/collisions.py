"""No at-fault collision (NC) and time-to-collision (TTC), vectorised with an exact box-overlap test.

The official code queries an STRtree of object polygons at every step and classifies each hit in Python. We find
all ego/object overlaps for all proposals and steps at once (a circle broad phase, then the separating-axis test
on rectangles, which agrees with shapely's ``intersects`` for boxes, touching included), and run NAVSIM's
order-dependent bookkeeping only over the few overlapping pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction

import numpy as np
import shapely

from navsim_eval.geometry import box_corners
from navsim_eval.pdm.observation import Observation
from navsim_eval.sim.state import StateIndex

EGO_STOPPED_SPEED = 5e-2  # m/s, collision classification
TRACK_STOPPED_SPEED = 5e-2  # m/s
TTC_STOPPED_SPEED = 5e-3  # m/s
TTC_PROJECTION_STEPS = (0, 3, 6, 9)  # look-ahead of 0, 0.3, 0.6, 0.9 s at constant velocity
AHEAD_ANGLE = np.deg2rad(30.0)
BEHIND_ANGLE = np.deg2rad(150.0)
# Dot products this close to a value where the decision changes (1 and -1: an angle of 0 or pi, or NaN above;
# cos 30 deg: ahead; cos 150 deg: behind) are recomputed in the official code's own arithmetic.
DECISION_DOTS = np.array([1.0, -1.0, np.cos(AHEAD_ANGLE), np.cos(BEHIND_ANGLE)])
NEAR_DECISION = 1e-12


class CollisionType(Enum):
    STOPPED_EGO_COLLISION = 0
    STOPPED_TRACK_COLLISION = 1
    ACTIVE_FRONT_COLLISION = 2
    ACTIVE_REAR_COLLISION = 3
    ACTIVE_LATERAL_COLLISION = 4


@dataclass
class CollisionEvent:
    step: int
    token: str
    type: CollisionType
    at_fault: bool


@dataclass
class CollisionResult:
    """NC per proposal, the first at-fault step (-1 = none), the at-fault object and every classified event."""

    no_collision: np.ndarray
    first_step: np.ndarray
    at_fault_token: list[str]
    events: list[list[CollisionEvent]] = field(default_factory=list)


@dataclass
class ObjectGeometry:
    """Corners and bounding circles of every observed box per step, computed once per scene."""

    corners: np.ndarray  # [T, N, 4, 2], NaN where absent
    centers: np.ndarray  # [T, N, 2]
    radius: np.ndarray  # [T, N]
    present: np.ndarray  # [T, N]

    @classmethod
    def from_observation(cls, observation: Observation) -> ObjectGeometry:
        b = observation.boxes
        corners = box_corners(b[..., 0], b[..., 1], b[..., 2], b[..., 3] / 2.0, b[..., 4] / 2.0)
        return cls(corners, b[..., :2], 0.5 * np.hypot(b[..., 3], b[..., 4]), observation.present)


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis test for rectangles a, b [..., 4, 2] (corners in ring order); touching counts as overlap."""
    a, b = np.broadcast_arrays(a, b)
    axes = np.concatenate([a[..., 1:3, :] - a[..., 0:2, :], b[..., 1:3, :] - b[..., 0:2, :]], axis=-2)  # [..., 4, 2]
    proj_a = np.einsum("...ad,...vd->...av", axes, a)
    proj_b = np.einsum("...ad,...vd->...av", axes, b)
    separated = (proj_a.max(-1) < proj_b.min(-1)) | (proj_b.max(-1) < proj_a.min(-1))
    return ~separated.any(-1)


def overlapping_pairs(
    ego_corners: np.ndarray, ego_centers: np.ndarray, ego_radius: float, objects: ObjectGeometry, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (k, i, n) where ego box [K, S, 4, 2] at slot i overlaps object n at observation step steps[i]."""
    centers, radius, present = objects.centers[steps], objects.radius[steps], objects.present[steps]  # [S, N]
    if centers.shape[-2] == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    delta = ego_centers[:, :, None, :] - centers[None]  # [K, S, N, 2]
    reach = ego_radius + radius[None]
    with np.errstate(invalid="ignore"):
        near = (delta[..., 0] ** 2 + delta[..., 1] ** 2 <= reach * reach) & present[None]
    k, i, n = np.nonzero(near)
    if len(k) == 0:
        return k, i, n
    hit = boxes_overlap(ego_corners[k, i], objects.corners[steps[i], n])
    return k[hit], i[hit], n[hit]


def relative_angles(ego_xyh: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Angles between ego headings [P, 3] and the ego->point vectors [P, 2] (nuPlan's ``get_agent_relative_angle``).

    The official formula, arccos of the dot product of the heading with the unit vector, without clipping: a
    coincident point or a dot product rounded above 1 gives NaN, which is neither ahead nor behind. Near a decision
    value (``DECISION_DOTS``) the last bit decides, so there the dot product is evaluated as the official code's
    ``np.dot`` / ``np.linalg.norm`` evaluate it (:func:`official_dot`): for an object exactly on the heading ray the
    official result is 1 (angle 0, ahead) or 1 + 1 ulp (NaN, ignored) and flips under shifts of 1e-9 m.
    """
    vx, vy = points[:, 0] - ego_xyh[:, 0], points[:, 1] - ego_xyh[:, 1]
    cos, sin = np.cos(ego_xyh[:, 2]), np.sin(ego_xyh[:, 2])
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.sqrt(vx * vx + vy * vy)
        dot = cos * (vx / norm) + sin * (vy / norm)
        near = np.abs(dot[:, None] - DECISION_DOTS).min(axis=1, initial=np.inf) < NEAR_DECISION
        for i in np.flatnonzero(near):
            dot[i] = official_dot(float(cos[i]), float(sin[i]), float(vx[i]), float(vy[i]))
        return np.arccos(dot)


def fused_dot2(a0: float, a1: float, b0: float, b1: float) -> float:
    """``a0 * b0 + a1 * b1`` rounded as numpy's ``np.dot`` computes two terms (OpenBLAS ``ddot`` on FMA hardware, the
    machine of the official conformance runs): the second product fused with the sum, ``round(a1 * b1 +
    round(a0 * b0))``. Exact rational arithmetic, so the result does not depend on this machine's BLAS."""
    return float(Fraction(a1) * Fraction(b1) + Fraction(a0 * b0))


def official_dot(heading_cos: float, heading_sin: float, vx: float, vy: float) -> float:
    """The official ``np.dot(ego_vector, agent_vector / np.linalg.norm(agent_vector))`` of one ego/point pair."""
    norm = math.sqrt(fused_dot2(vx, vy, vx, vy))  # np.linalg.norm(v) is sqrt(np.dot(v, v))
    if norm == 0.0:
        return math.nan
    return fused_dot2(heading_cos, heading_sin, vx / norm, vy / norm)


def _box_polygon(corners: np.ndarray) -> shapely.Polygon:
    return shapely.Polygon(corners)


def object_centroids(corners: np.ndarray) -> np.ndarray:
    """Centroids [P, 2] of box polygons [P, 4, 2], computed by shapely like the official ``polygon.centroid``."""
    if len(corners) == 0:
        return np.zeros((0, 2))
    return shapely.get_coordinates(shapely.centroid(shapely.polygons(corners)))


def classify_collision(
    ego_state: np.ndarray,
    ego_corners: np.ndarray,
    object_corners: np.ndarray,
    angle_to_object: float,
    object_is_agent: bool,
    object_first_speed: float,
) -> CollisionType:
    """NAVSIM's ``get_collision_type``; the object's stopped state comes from its first appearance and
    ``angle_to_object`` is the relative angle of its polygon centroid."""
    if np.hypot(ego_state[StateIndex.VELOCITY_X], ego_state[StateIndex.VELOCITY_Y]) <= EGO_STOPPED_SPEED:
        return CollisionType.STOPPED_EGO_COLLISION
    if not object_is_agent or object_first_speed <= TRACK_STOPPED_SPEED:
        return CollisionType.STOPPED_TRACK_COLLISION
    if angle_to_object > BEHIND_ANGLE:
        return CollisionType.ACTIVE_REAR_COLLISION
    bumper = shapely.LineString([ego_corners[0], ego_corners[3]])  # front-left to front-right
    if bumper.intersects(_box_polygon(object_corners)):
        return CollisionType.ACTIVE_FRONT_COLLISION
    return CollisionType.ACTIVE_LATERAL_COLLISION


def no_at_fault_collisions(
    states: np.ndarray,
    ego_corners: np.ndarray,
    ego_centers: np.ndarray,
    ego_radius: float,
    ego_lateral_risk: np.ndarray,
    observation: Observation,
    objects: ObjectGeometry,
    num_steps: int,
) -> CollisionResult:
    """NC for proposals [K, T, 11] over steps 0..num_steps-1.

    ``ego_lateral_risk`` [K, T] is MULTIPLE_LANES or NON_DRIVABLE_AREA: a lateral contact there is at fault.
    An at-fault contact scores 0 against agents and 0.5 against static objects; a contact that is not at fault
    puts the object on an ignore list for the rest of the horizon.
    """
    num_proposals = states.shape[0]
    steps = np.arange(num_steps)
    k_idx, t_idx, n_idx = overlapping_pairs(
        ego_corners[:, :num_steps], ego_centers[:, :num_steps], ego_radius, objects, steps
    )
    scores = np.ones(num_proposals)
    first_step = np.full(num_proposals, -1, dtype=np.int64)
    at_fault_token = [""] * num_proposals
    events: list[list[CollisionEvent]] = [[] for _ in range(num_proposals)]
    if len(k_idx) == 0:
        return CollisionResult(scores, first_step, at_fault_token, events)

    first = observation.first_appearance()
    first_speed = np.hypot(*observation.velocity[first, np.arange(len(first))].T)
    is_agent = observation.is_agent
    angles = relative_angles(states[k_idx, t_idx], object_centroids(objects.corners[t_idx, n_idx]))
    ignored: list[set[int]] = [set() for _ in range(num_proposals)]
    for p in np.lexsort((n_idx, t_idx, k_idx)):  # per proposal, in time order
        k, t, n = int(k_idx[p]), int(t_idx[p]), int(n_idx[p])
        if n in ignored[k]:
            continue
        kind = classify_collision(
            states[k, t], ego_corners[k, t], objects.corners[t, n], angles[p], bool(is_agent[n]), float(first_speed[n])
        )
        at_fault = kind in (CollisionType.ACTIVE_FRONT_COLLISION, CollisionType.STOPPED_TRACK_COLLISION) or (
            kind == CollisionType.ACTIVE_LATERAL_COLLISION and bool(ego_lateral_risk[k, t])
        )
        events[k].append(CollisionEvent(t, observation.tokens[n], kind, at_fault))
        if at_fault:
            scores[k] = min(scores[k], 0.0 if is_agent[n] else 0.5)
            if first_step[k] < 0:
                first_step[k], at_fault_token[k] = t, observation.tokens[n]
        else:
            ignored[k].add(n)
    return CollisionResult(scores, first_step, at_fault_token, events)


def time_to_collision(
    states: np.ndarray,
    ego_corners: np.ndarray,
    ego_centers: np.ndarray,
    ego_radius: float,
    ego_lateral_risk: np.ndarray,
    rear_axle_in_intersection: np.ndarray,
    observation: Observation,
    objects: ObjectGeometry,
    num_steps: int,
    dt: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """TTC within bound for proposals [K, T, 11], checked at steps 0..num_steps-1.

    At each step the ego box is moved along its heading at its current speed by 0, 0.3, 0.6 and 0.9 s and
    tested against the objects of that future step. A hit is a violation if the object is ahead (< 30 deg), or
    if the ego straddles lanes, is off-road or in an intersection and the object is not behind (> 150 deg);
    otherwise the object is ignored from then on. Returns (ttc [K] in {0, 1}, first violation step [K], -1 = none).
    """
    num_proposals = states.shape[0]
    speed = np.hypot(states[:, :num_steps, StateIndex.VELOCITY_X], states[:, :num_steps, StateIndex.VELOCITY_Y])
    heading = states[:, :num_steps, StateIndex.HEADING]
    velocity = np.stack([np.cos(heading) * speed, np.sin(heading) * speed], axis=-1)  # [K, S, 2]
    pairs = []
    for order, offset in enumerate(TTC_PROJECTION_STEPS):
        shift = velocity * (offset * dt)
        k, t, n = overlapping_pairs(
            ego_corners[:, :num_steps] + shift[:, :, None, :],
            ego_centers[:, :num_steps] + shift,
            ego_radius,
            objects,
            np.arange(num_steps) + offset,
        )
        pairs.append(np.stack([k, t, np.full_like(k, order), n], axis=-1))
    all_pairs = np.concatenate(pairs, axis=0)
    scores = np.ones(num_proposals)
    first_step = np.full(num_proposals, -1, dtype=np.int64)
    if len(all_pairs) == 0:
        return scores, first_step
    all_pairs = all_pairs[np.lexsort((all_pairs[:, 3], all_pairs[:, 2], all_pairs[:, 1], all_pairs[:, 0]))]
    steps = all_pairs[:, 1] + np.asarray(TTC_PROJECTION_STEPS)[all_pairs[:, 2]]
    centroids = object_centroids(objects.corners[steps, all_pairs[:, 3]])
    angles = relative_angles(states[all_pairs[:, 0], all_pairs[:, 1]], centroids).tolist()
    ignored: list[set[int]] = [set() for _ in range(num_proposals)]
    for (k, t, _, n), angle in zip(all_pairs.tolist(), angles, strict=True):
        if n in ignored[k] or speed[k, t] < TTC_STOPPED_SPEED:
            continue
        ahead = angle < AHEAD_ANGLE
        behind = angle > BEHIND_ANGLE
        if ahead or ((ego_lateral_risk[k, t] or rear_axle_in_intersection[k, t]) and not behind):
            scores[k] = 0.0
            if first_step[k] < 0:
                first_step[k] = t
        else:
            ignored[k].add(n)
    return scores, first_step
