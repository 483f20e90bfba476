"""Fast flat-shaded camera images of the synthetic world: what a planner needs to see, no photorealism.

An image is sky and off-road ground split at the horizon, the drivable surface projected from the ground plane,
lane markings as ground-plane quads (white dashed between same-direction lanes, yellow solid or double between
opposite directions, white solid road edges and stop lines), objects as shaded cuboids in one colour per OpenScene
class (front faces lighter, so heading shows), and traffic-light heads whose lit lens shows the state to the traffic
they face. Geometry crossing the camera plane is clipped in 3-D against a near plane before projection; objects are
painted far to near. Rendering is deterministic: the same scene and camera give the same bytes.

Speed comes from doing the per-scene work once (global to ego frame, culling at ``max_distance_m``, dash layout,
cuboid corners and shading) and the per-camera work in a few numpy passes; PIL only fills polygons. Use
:func:`render_rig` for several cameras of one scene.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from navsim_eval.synthetic.cameras import CameraSpec

BOX_CLASSES = ("vehicle", "pedestrian", "bicycle", "traffic_cone", "barrier", "czone_sign", "generic_object")
LAMP_STATES = ("red", "yellow", "green", "unknown")  # "unknown": no lens lit (nuPlan's third status)
MARKING_STYLES = ("solid", "dashed", "double")
MARKING_COLORS = ("white", "yellow")

NEAR_PLANE_M = 0.2  # camera-z of the clipping plane
LAMP_MIN_RADIUS_PX = 1.5  # a lens stays visible at any distance (output pixels)
LENS_VISOR_COS = 0.5  # lenses show within 60° of their axis (visors hide them from cross traffic)
GLOW_SCALE = 1.8  # a lit lens is drawn over a halo this many radii wide, as cameras bloom

# Colours (RGB). Class colours avoid the saturated red / amber / green of the lenses.
SKY_ZENITH = np.array([92.0, 140.0, 206.0])
SKY_HORIZON = np.array([196.0, 214.0, 232.0])
OFFROAD_COLOR = (104, 118, 84)
ROAD_COLOR = (74, 75, 80)
MARKING_RGB = {"white": (236, 236, 230), "yellow": (238, 184, 34)}
CLASS_RGB = {
    "vehicle": (58, 98, 196),
    "pedestrian": (222, 84, 196),
    "bicycle": (40, 196, 214),
    "traffic_cone": (255, 120, 20),
    "barrier": (226, 226, 214),
    "czone_sign": (146, 88, 222),
    "generic_object": (142, 102, 62),
}
HOUSING_RGB = (34, 34, 38)
LENS_LIT_RGB = {"red": (255, 36, 28), "yellow": (255, 196, 0), "green": (30, 255, 110)}
LENS_DIM_RGB = {"red": (72, 22, 22), "yellow": (70, 58, 14), "green": (16, 62, 34)}

# Traffic-light head: a housing cuboid (depth along the facing direction, width, height) with three lenses.
HOUSING_SIZE_M = (0.35, 0.45, 1.2)
LENS_RADIUS_M = 0.14
LENS_HEIGHT_OFFSET_M = {"red": 0.38, "yellow": 0.0, "green": -0.38}

_LIGHT_DIRECTION = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])  # global frame, towards the sun

# Cuboid corners in units of half extents: front (+x) then rear, left (+y) before right, bottom before top.
_CORNER_SIGNS = np.array(
    [[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1], [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], float
)
# Faces as corner cycles, with their outward normal in units of the box axes: front, rear, left, right, top, bottom.
_FACES = np.array([[0, 1, 5, 4], [2, 3, 7, 6], [3, 0, 4, 7], [1, 2, 6, 5], [4, 5, 6, 7], [0, 3, 2, 1]])
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)


# ------------------------------------------------------------------------------------------------ scene


@dataclass(frozen=True)
class Marking:
    """A painted line on the ground: a polyline [N, 2] (global, metres) drawn ``width_m`` wide.

    ``style`` is ``solid``, ``dashed`` (``dash_m`` painted, ``gap_m`` empty, the pattern starting at the first point,
    so dashes stay fixed in the world from frame to frame) or ``double`` (two solid lines ``width_m`` apart).
    """

    points: np.ndarray
    style: str = "solid"
    color: str = "white"
    width_m: float = 0.15
    dash_m: float = 3.0
    gap_m: float = 6.0

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"Marking.points: expected an array [N >= 2, 2], got shape {points.shape}")
        if self.style not in MARKING_STYLES:
            raise ValueError(f"Marking.style: expected one of {MARKING_STYLES}, got {self.style!r}")
        if self.color not in MARKING_COLORS:
            raise ValueError(f"Marking.color: expected one of {MARKING_COLORS}, got {self.color!r}")
        if not (self.width_m > 0 and self.dash_m > 0 and self.gap_m >= 0):
            raise ValueError("Marking: width_m and dash_m must be positive and gap_m non-negative")
        object.__setattr__(self, "points", points)


@dataclass(frozen=True)
class TrafficLightLamp:
    """A traffic-light head centred at ``position`` (global x, y, z; z above the ground), showing ``state``.

    ``facing_yaw`` is the global direction the lenses point to: towards the traffic the light controls, i.e. the
    opposite of that traffic's heading. From behind, only the dark housing is seen.
    """

    position: np.ndarray
    state: str
    facing_yaw: float

    def __post_init__(self) -> None:
        position = np.asarray(self.position, dtype=np.float64).reshape(-1)
        if position.shape != (3,):
            raise ValueError(f"TrafficLightLamp.position: expected (x, y, z), got shape {position.shape}")
        if self.state not in LAMP_STATES:
            raise ValueError(f"TrafficLightLamp.state: expected one of {LAMP_STATES}, got {self.state!r}")
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "facing_yaw", float(self.facing_yaw))

    def lens_position(self, color: str | None = None) -> np.ndarray:
        """Global centre of the lens of ``color`` (default: the lit one; the middle one when none is lit)."""
        color = color or (self.state if self.state in LENS_HEIGHT_OFFSET_M else "yellow")
        forward = np.array([np.cos(self.facing_yaw), np.sin(self.facing_yaw), 0.0])
        return self.position + forward * (HOUSING_SIZE_M[0] / 2 + 0.01) + [0.0, 0.0, LENS_HEIGHT_OFFSET_M[color]]


@dataclass
class RenderScene:
    """Everything one camera image shows, in the global frame (metres, radians; the ground is z = 0).

    ``ego_pose`` is the rear-axle pose (x, y, heading). ``boxes`` rows are OpenScene boxes in the global frame:
    centre x, y, z (z of the centre above the ground: h / 2 for an object standing on it), length, width, height,
    yaw; ``box_classes`` their OpenScene ``gt_names``. ``road_polygons`` are drivable-surface outlines [M, 2].
    """

    ego_pose: tuple[float, float, float]
    road_polygons: list[np.ndarray] = field(default_factory=list)
    markings: list[Marking] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    box_classes: list[str] = field(default_factory=list)
    traffic_lights: list[TrafficLightLamp] = field(default_factory=list)

    def __post_init__(self) -> None:
        pose = np.asarray(self.ego_pose, dtype=np.float64).reshape(-1)
        if pose.shape != (3,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"RenderScene.ego_pose: expected finite (x, y, heading), got {self.ego_pose!r}")
        self.ego_pose = (float(pose[0]), float(pose[1]), float(pose[2]))
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = np.zeros((0, 7))
        if boxes.ndim != 2 or boxes.shape[1] != 7:
            raise ValueError(f"RenderScene.boxes: expected an array [N, 7], got shape {boxes.shape}")
        self.boxes = boxes
        self.box_classes = [str(name) for name in self.box_classes]
        if len(self.box_classes) != len(boxes):
            raise ValueError(f"RenderScene: {len(boxes)} boxes but {len(self.box_classes)} box_classes")
        unknown = sorted(set(self.box_classes) - set(BOX_CLASSES))
        if unknown:
            raise ValueError(f"RenderScene.box_classes: unknown classes {unknown}; expected OpenScene {BOX_CLASSES}")


# ------------------------------------------------------------------------------------------------ per-scene work


@dataclass(frozen=True)
class _Cuboids:
    """Boxes and traffic-light housings in the ego frame, with per-face colours (camera independent)."""

    centers: np.ndarray  # [B, 3]
    corners: np.ndarray  # [B, 8, 3]
    face_centers: np.ndarray  # [B, 6, 3]
    face_normals: np.ndarray  # [B, 6, 3]
    face_rgb: np.ndarray  # [B, 6, 3] uint8
    lamp: np.ndarray  # [B] index into the lamps, -1 for boxes


@dataclass(frozen=True)
class _Lenses:
    """Traffic-light lenses in the ego frame: three per lamp (red, yellow, green)."""

    centers: np.ndarray  # [L, 3, 3]
    facing: np.ndarray  # [L, 3] unit, horizontal
    rgb: np.ndarray  # [L, 3, 3] uint8
    lit: np.ndarray  # [L] index of the lit lens, -1 when none


@dataclass(frozen=True)
class _EgoGeometry:
    """A scene culled to ``max_distance_m`` around the ego and expressed in the ego frame."""

    road_vertices: np.ndarray  # [V, 3] concatenated polygons
    road_starts: np.ndarray  # [P] first vertex of each polygon
    road_counts: np.ndarray  # [P]
    marking_quads: np.ndarray  # [Q, 4, 3]
    marking_rgb: np.ndarray  # [Q, 3] uint8
    cuboids: _Cuboids
    lenses: _Lenses


def _to_ego(points_xy: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
    """Global (x, y) [..., 2] to the ego frame of ``pose``."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = points_xy - np.array(pose[:2])
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def _prepare_roads(polygons: Sequence[np.ndarray], pose: tuple[float, float, float], radius: float) -> tuple:
    """Road polygons near the ego: concatenated ego-frame vertices (z = 0), starts and counts."""
    if not polygons:
        return np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int)
    arrays = [np.asarray(p, dtype=np.float64) for p in polygons]
    for i, array in enumerate(arrays):
        if array.ndim != 2 or array.shape[1] != 2 or len(array) < 3:
            raise ValueError(f"RenderScene.road_polygons[{i}]: expected an array [M >= 3, 2], got shape {array.shape}")
    counts = np.array([len(a) for a in arrays])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    xy = _to_ego(np.concatenate(arrays), pose)
    lo, hi = np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)
    nearest = np.clip(0.0, lo, hi)  # the point of each bounding box nearest to the ego
    keep = np.hypot(nearest[:, 0], nearest[:, 1]) <= radius
    if not keep.any():
        return np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int)
    kept_counts = counts[keep]
    kept_starts = np.concatenate([[0], np.cumsum(kept_counts)[:-1]])
    index = np.arange(kept_counts.sum()) + np.repeat(starts[keep] - kept_starts, kept_counts)
    vertices = np.concatenate([xy[index], np.zeros((len(index), 1))], axis=1)
    return vertices, kept_starts, kept_counts


def _marking_segments(markings: Sequence[Marking]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Painted pieces of all markings (global): start [S, 2], end [S, 2], half width [S], RGB [S, 3]."""
    empty = (np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3), np.uint8))
    if not markings:
        return empty
    counts = np.array([len(m.points) for m in markings])
    points = np.concatenate([m.points for m in markings])
    owner = np.repeat(np.arange(len(markings)), counts)
    same = owner[1:] == owner[:-1]
    seg_len = np.hypot(*(points[1:] - points[:-1]).T)
    # Arc length over all polylines laid end to end, with a large jump between polylines so that interpolation
    # never blends two of them.
    step = np.where(same, seg_len, 1e6)
    arc = np.concatenate([[0.0], np.cumsum(step)])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    arc_start, arc_end = arc[first], arc[first + counts - 1]

    dashed = np.array([m.style == "dashed" for m in markings])
    half_width = np.array([m.width_m / 2 for m in markings])
    rgb = np.array([MARKING_RGB[m.color] for m in markings], dtype=np.uint8)
    pieces_a, pieces_b, pieces_owner = [], [], []

    solid_segments = same & ~dashed[owner[:-1]]
    pieces_a.append(points[:-1][solid_segments])
    pieces_b.append(points[1:][solid_segments])
    pieces_owner.append(owner[:-1][solid_segments])

    dashed_ids = np.flatnonzero(dashed)
    if dashed_ids.size:
        period = np.array([markings[i].dash_m + markings[i].gap_m for i in dashed_ids])
        dash = np.array([markings[i].dash_m for i in dashed_ids])
        length = arc_end[dashed_ids] - arc_start[dashed_ids]
        n_dashes = np.ceil(length / period).astype(int)
        which = np.repeat(np.arange(dashed_ids.size), n_dashes)
        k = np.arange(which.size) - np.repeat(np.cumsum(n_dashes) - n_dashes, n_dashes)
        s0 = arc_start[dashed_ids][which] + k * period[which]
        s1 = np.minimum(s0 + dash[which], arc_end[dashed_ids][which])
        # Dashes are chords between their end points: at 3 m the error on curved lanes is negligible.
        a = np.stack([np.interp(s0, arc, points[:, 0]), np.interp(s0, arc, points[:, 1])], axis=1)
        b = np.stack([np.interp(s1, arc, points[:, 0]), np.interp(s1, arc, points[:, 1])], axis=1)
        pieces_a.append(a)
        pieces_b.append(b)
        pieces_owner.append(dashed_ids[which])

    a, b, who = np.concatenate(pieces_a), np.concatenate(pieces_b), np.concatenate(pieces_owner)
    double = np.array([m.style == "double" for m in markings])[who]
    if double.any():
        # Two lines one line width apart (edge to edge), centred on the polyline.
        d = b[double] - a[double]
        normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        offset = normal * (2.0 * half_width[who[double]])[:, None]
        a = np.concatenate([a[~double], a[double] + offset, a[double] - offset])
        b = np.concatenate([b[~double], b[double] + offset, b[double] - offset])
        who = np.concatenate([who[~double], who[double], who[double]])
    return a, b, half_width[who], rgb[who]


def _prepare_markings(
    markings: Sequence[Marking], pose: tuple[float, float, float], radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Marking pieces near the ego as ego-frame ground quads [Q, 4, 3] and their colours [Q, 3]."""
    a, b, half_width, rgb = _marking_segments(markings)
    if len(a) == 0:
        return np.zeros((0, 4, 3)), np.zeros((0, 3), np.uint8)
    a, b = _to_ego(a, pose), _to_ego(b, pose)
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    t = np.clip(-(a * d).sum(1) / np.maximum(length**2, 1e-12), 0.0, 1.0)  # ego origin onto the piece
    closest = a + t[:, None] * d
    keep = (length > 1e-6) & (np.hypot(closest[:, 0], closest[:, 1]) <= radius)
    a, d, length, half_width, rgb = a[keep], d[keep], length[keep], half_width[keep], rgb[keep]
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / length[:, None] * half_width[:, None]
    quads_xy = np.stack([a + normal, a + d + normal, a + d - normal, a - normal], axis=1)
    quads = np.concatenate([quads_xy, np.zeros((*quads_xy.shape[:2], 1))], axis=2)
    return quads, rgb


def _cuboids(
    centers: np.ndarray, sizes: np.ndarray, yaws: np.ndarray, rgb: np.ndarray, light: np.ndarray, lamp: np.ndarray
) -> _Cuboids:
    """Corners, faces and shaded face colours of ego-frame cuboids (centre [B, 3], l/w/h [B, 3], yaw [B])."""
    c, s = np.cos(yaws), np.sin(yaws)
    zeros, ones = np.zeros_like(c), np.ones_like(c)
    axes = np.stack(
        [np.stack([c, s, zeros], -1), np.stack([-s, c, zeros], -1), np.stack([zeros, zeros, ones], -1)], axis=1
    )  # [B, 3 box axes, 3 ego coords]
    half = sizes / 2
    corners = centers[:, None, :] + np.einsum("kj,bj,bjd->bkd", _CORNER_SIGNS, half, axes)
    normals = np.einsum("fj,bjd->bfd", _FACE_NORMALS, axes)
    face_centers = centers[:, None, :] + np.einsum("fj,bj,bjd->bfd", _FACE_NORMALS, half, axes)
    shade = 0.62 + 0.38 * np.clip(normals @ light, 0.0, 1.0)  # [B, 6] Lambert with ambient
    shaded = rgb[:, None, :].astype(float) * shade[..., None]
    # Heading cue on objects (not on traffic-light housings): the front face mixed towards white, the rear darkened.
    cue = lamp < 0
    shaded[cue, 0] = 0.6 * shaded[cue, 0] + 0.4 * 255.0
    shaded[cue, 1] *= 0.8
    face_rgb = np.clip(np.round(shaded), 0, 255).astype(np.uint8)
    return _Cuboids(
        centers=centers,
        corners=corners,
        face_centers=face_centers,
        face_normals=normals,
        face_rgb=face_rgb,
        lamp=lamp,
    )


def _prepare_objects(scene: RenderScene, radius: float) -> tuple[_Cuboids, _Lenses]:
    """Boxes and traffic-light heads near the ego, in the ego frame."""
    pose = scene.ego_pose
    c, s = np.cos(pose[2]), np.sin(pose[2])
    light = np.array(
        [
            c * _LIGHT_DIRECTION[0] + s * _LIGHT_DIRECTION[1],
            -s * _LIGHT_DIRECTION[0] + c * _LIGHT_DIRECTION[1],
            _LIGHT_DIRECTION[2],
        ]
    )

    boxes = scene.boxes
    box_xy = _to_ego(boxes[:, :2], pose)
    box_keep = np.hypot(box_xy[:, 0], box_xy[:, 1]) - np.linalg.norm(boxes[:, 3:6], axis=1) / 2 <= radius
    box_rgb = np.array([CLASS_RGB[name] for name in scene.box_classes], dtype=np.uint8).reshape(-1, 3)[box_keep]
    box_centers = np.concatenate([box_xy, boxes[:, 2:3]], axis=1)[box_keep]

    lamps = scene.traffic_lights
    lamp_pos = np.array([lamp.position for lamp in lamps]).reshape(-1, 3)
    lamp_xy = _to_ego(lamp_pos[:, :2], pose)
    lamp_keep = np.flatnonzero(np.hypot(lamp_xy[:, 0], lamp_xy[:, 1]) <= radius)
    lamp_centers = np.concatenate([lamp_xy, lamp_pos[:, 2:3]], axis=1)[lamp_keep]
    lamp_yaw = np.array([lamps[i].facing_yaw for i in lamp_keep]) - pose[2]
    n_lamps = len(lamp_keep)

    cuboids = _cuboids(
        centers=np.concatenate([box_centers, lamp_centers]),
        sizes=np.concatenate([boxes[box_keep, 3:6], np.tile(HOUSING_SIZE_M, (n_lamps, 1))]),
        yaws=np.concatenate([boxes[box_keep, 6] - pose[2], lamp_yaw]),
        rgb=np.concatenate([box_rgb, np.tile(np.array(HOUSING_RGB, np.uint8), (n_lamps, 1))]),
        light=light,
        lamp=np.concatenate([np.full(len(box_centers), -1), np.arange(n_lamps)]),
    )
    facing = np.stack([np.cos(lamp_yaw), np.sin(lamp_yaw), np.zeros(n_lamps)], axis=1)
    lens_colors = ("red", "yellow", "green")
    offsets = np.array([[0.0, 0.0, LENS_HEIGHT_OFFSET_M[color]] for color in lens_colors])
    centers = lamp_centers[:, None, :] + facing[:, None, :] * (HOUSING_SIZE_M[0] / 2 + 0.01) + offsets[None]
    rgb = np.array(
        [[LENS_LIT_RGB[col] if lamps[i].state == col else LENS_DIM_RGB[col] for col in lens_colors] for i in lamp_keep],
        dtype=np.uint8,
    ).reshape(-1, 3, 3)
    lit = np.array([lens_colors.index(lamps[i].state) if lamps[i].state in lens_colors else -1 for i in lamp_keep])
    return cuboids, _Lenses(centers=centers.reshape(-1, 3, 3), facing=facing, rgb=rgb, lit=lit.astype(int))


def _prepare(scene: RenderScene, max_distance_m: float) -> _EgoGeometry:
    """The camera-independent part of rendering ``scene``."""
    radius = max_distance_m + 5.0  # cameras sit up to a few metres from the rear axle
    road_vertices, road_starts, road_counts = _prepare_roads(scene.road_polygons, scene.ego_pose, radius)
    quads, quad_rgb = _prepare_markings(scene.markings, scene.ego_pose, radius)
    cuboids, lenses = _prepare_objects(scene, radius)
    return _EgoGeometry(road_vertices, road_starts, road_counts, quads, quad_rgb, cuboids, lenses)


# ------------------------------------------------------------------------------------------------ per-camera work


def _clip_near(polygons: np.ndarray, z_near: float) -> tuple[np.ndarray, np.ndarray]:
    """Sutherland–Hodgman clipping of K polygons [K, N, 3] (camera frame) to z >= ``z_near``, all at once.

    Returns vertices [K, 2N, 3] (the first ``counts[k]`` valid, in order) and counts [K]. Padding a polygon by
    repeating its last vertex is harmless.
    """
    k, n, _ = polygons.shape
    following = np.roll(polygons, -1, axis=1)
    z0, z1 = polygons[..., 2], following[..., 2]
    inside, inside_next = z0 >= z_near, z1 >= z_near
    crossing = inside != inside_next
    t = (z_near - z0) / np.where(crossing, z1 - z0, 1.0)
    cut = polygons + t[..., None] * (following - polygons)
    cut[..., 2] = z_near
    candidates = np.stack([polygons, cut], axis=2).reshape(k, 2 * n, 3)
    valid = np.stack([inside, crossing], axis=2).reshape(k, 2 * n)
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(candidates, order[..., None], axis=1), valid.sum(axis=1)


def _outside_planes(points: np.ndarray, camera: CameraSpec) -> np.ndarray:
    """For camera-frame points [..., 3]: [..., 4] True where outside the left, right, top, bottom frustum planes."""
    k = camera.intrinsics
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    margin = 2.0 * z  # two pixels of slack
    u_num, v_num = k[0, 0] * x + k[0, 1] * y + k[0, 2] * z, k[1, 1] * y + k[1, 2] * z
    return np.stack(
        [
            u_num < -margin,
            u_num > (camera.width + 1) * z + margin,
            v_num < -margin,
            v_num > (camera.height + 1) * z + margin,
        ],
        axis=-1,
    )


def _flat(pixels: np.ndarray) -> list[float]:
    return pixels.ravel().tolist()


def _draw_roads(draw: ImageDraw.ImageDraw, geometry: _EgoGeometry, camera: CameraSpec) -> None:
    if len(geometry.road_counts) == 0:
        return
    cam = camera.ego_to_camera(geometry.road_vertices)
    starts, counts = geometry.road_starts, geometry.road_counts
    z = cam[:, 2]
    z_min, z_max = np.minimum.reduceat(z, starts), np.maximum.reduceat(z, starts)
    culled = np.logical_and.reduceat(_outside_planes(cam, camera), starts, axis=0).any(axis=1)
    visible = (z_max >= NEAR_PLANE_M) & ~culled
    pixels = camera.camera_to_pixels(np.where(z[:, None] >= NEAR_PLANE_M, cam, 1.0))
    straddling = np.flatnonzero(visible & (z_min < NEAR_PLANE_M))
    clipped = {}
    if straddling.size:
        width = int(counts[straddling].max())
        index = starts[straddling, None] + np.minimum(np.arange(width), counts[straddling, None] - 1)
        polygons, n_out = _clip_near(cam[index], NEAR_PLANE_M)
        projected = camera.camera_to_pixels(polygons)
        clipped = {int(p): projected[i, : n_out[i]] for i, p in enumerate(straddling) if n_out[i] >= 3}
    for p in np.flatnonzero(visible).tolist():
        if p in clipped:
            draw.polygon(_flat(clipped[p]), fill=ROAD_COLOR)
        elif z_min[p] >= NEAR_PLANE_M:
            draw.polygon(_flat(pixels[starts[p] : starts[p] + counts[p]]), fill=ROAD_COLOR)


def _convex_pieces(polygons: np.ndarray, camera: CameraSpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """Visible pixel outlines of camera-frame convex polygons [K, N, 3]: indices of the kept ones and outlines."""
    z = polygons[..., 2]
    keep = (z.max(axis=1) >= NEAR_PLANE_M) & ~_outside_planes(polygons, camera).all(axis=1).any(axis=1)
    index = np.flatnonzero(keep)
    polygons = polygons[index]
    clip = polygons[..., 2].min(axis=1) < NEAR_PLANE_M
    outlines: list[np.ndarray] = [np.empty(0)] * len(index)
    if (~clip).any():
        pixels = camera.camera_to_pixels(polygons[~clip])
        for j, i in enumerate(np.flatnonzero(~clip)):
            outlines[i] = pixels[j]
    if clip.any():
        clipped, n_out = _clip_near(polygons[clip], NEAR_PLANE_M)
        pixels = camera.camera_to_pixels(clipped)
        for j, i in enumerate(np.flatnonzero(clip)):
            outlines[i] = pixels[j, : n_out[j]]
    return index, outlines


def _draw_markings(draw: ImageDraw.ImageDraw, geometry: _EgoGeometry, camera: CameraSpec) -> None:
    if len(geometry.marking_quads) == 0:
        return
    index, outlines = _convex_pieces(camera.ego_to_camera(geometry.marking_quads), camera)
    rgb = geometry.marking_rgb[index].tolist()
    for outline, color in zip(outlines, rgb, strict=True):
        if len(outline) >= 3:
            draw.polygon(_flat(outline), fill=tuple(color))


def _draw_objects(draw: ImageDraw.ImageDraw, geometry: _EgoGeometry, camera: CameraSpec, scale: int) -> None:
    """Cuboids far to near (each with its visible faces), a traffic-light head's lenses right after its housing."""
    cuboids, lenses = geometry.cuboids, geometry.lenses
    if len(cuboids.centers) == 0:
        return
    centers = camera.ego_to_camera(cuboids.centers)
    corners = camera.ego_to_camera(cuboids.corners)
    in_front = corners[..., 2].max(axis=1) >= NEAR_PLANE_M
    culled = _outside_planes(corners, camera).all(axis=1).any(axis=1)
    candidates = np.flatnonzero(in_front & ~culled)
    if candidates.size == 0:
        return
    depth = np.linalg.norm(centers[candidates], axis=1)
    order = candidates[np.lexsort((candidates, -depth))]  # far to near, ties by index (deterministic)

    eye = camera.translation
    facing_camera = ((eye - cuboids.face_centers[order]) * cuboids.face_normals[order]).sum(-1) > 1e-9  # [B', 6]
    owner, face = np.nonzero(facing_camera)
    polygons = corners[order[owner][:, None], _FACES[face]]  # [F, 4, 3]
    kept, outlines = _convex_pieces(polygons, camera)
    face_rgb = cuboids.face_rgb[order[owner[kept]], face[kept]].tolist()
    drawn_by = owner[kept]

    limit = 4 * max(camera.width, camera.height)
    f = camera.intrinsics[0, 0]
    position = 0
    for rank, b in enumerate(order):
        while position < len(kept) and drawn_by[position] == rank:
            outline, color = outlines[position], tuple(face_rgb[position])
            position += 1
            if len(outline) < 3:
                continue
            # Edges help tell faces apart; skipped on clipped / huge faces where PIL's outline is slow.
            small = len(outline) == 4 and np.abs(outline).max() < limit
            edge = tuple(int(0.6 * v) for v in color) if small else None
            draw.polygon(_flat(outline), fill=color, outline=edge)
        lamp = cuboids.lamp[b]
        if lamp >= 0:
            _draw_lenses(draw, lenses, int(lamp), camera, f, scale)


def _draw_lenses(
    draw: ImageDraw.ImageDraw, lenses: _Lenses, lamp: int, camera: CameraSpec, f: float, scale: int
) -> None:
    """The three lenses of one head when the camera is in front of it; radius by distance, with a floor."""
    centers = lenses.centers[lamp]
    to_eye = camera.translation - centers[1]
    if np.dot(to_eye, lenses.facing[lamp]) <= LENS_VISOR_COS * np.linalg.norm(to_eye):
        return
    cam = camera.ego_to_camera(centers)
    if (cam[:, 2] < NEAR_PLANE_M).any():
        return
    pixels = camera.camera_to_pixels(cam)
    lit = lenses.lit[lamp]
    for i, ((u, v), z, color) in enumerate(
        zip(pixels.tolist(), cam[:, 2].tolist(), lenses.rgb[lamp].tolist(), strict=True)
    ):
        r = max(LAMP_MIN_RADIUS_PX * scale, f * LENS_RADIUS_M / z)
        if i == lit:
            g = GLOW_SCALE * r
            halo = tuple((c + h) // 2 for c, h in zip(color, HOUSING_RGB, strict=True))
            draw.ellipse((u - g, v - g, u + g, v + g), fill=halo)
        draw.ellipse((u - r, v - r, u + r, v + r), fill=tuple(color))


@functools.lru_cache(maxsize=16)  # a 1920 x 1080 background is 6 MB
def _background(width: int, height: int, intrinsics: bytes, rotation: bytes) -> Image.Image:
    """Sky (gradient by elevation) above the horizon, off-road ground below, for one camera geometry."""
    k = np.frombuffer(intrinsics).reshape(3, 3)
    r = np.frombuffer(rotation).reshape(3, 3)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(k).T
    up = rays @ r[2]  # ego z of each ray (r maps camera axes to ego axes)
    elevation = up / np.linalg.norm(rays, axis=-1)
    t = np.clip(elevation / 0.5, 0.0, 1.0)[..., None] ** 0.7
    sky = SKY_HORIZON * (1 - t) + SKY_ZENITH * t
    image = np.where((up > 0)[..., None], sky, np.array(OFFROAD_COLOR, dtype=float))
    return Image.fromarray(np.round(image).astype(np.uint8), "RGB")


def _render_prepared(geometry: _EgoGeometry, camera: CameraSpec, supersample: int) -> Image.Image:
    if supersample > 1:
        camera = camera.resized(camera.width * supersample, camera.height * supersample)
    image = _background(camera.width, camera.height, camera.intrinsics.tobytes(), camera.rotation.tobytes()).copy()
    draw = ImageDraw.Draw(image)
    _draw_roads(draw, geometry, camera)
    _draw_markings(draw, geometry, camera)
    _draw_objects(draw, geometry, camera, supersample)
    if supersample > 1:
        image = image.reduce(supersample)
    return image


# ------------------------------------------------------------------------------------------------ public API


def render_camera(
    scene: RenderScene, camera: CameraSpec, *, max_distance_m: float = 80.0, supersample: int = 1
) -> Image.Image:
    """RGB image of ``scene`` seen by ``camera`` (mounted on the ego at ``scene.ego_pose``).

    Geometry farther than ``max_distance_m`` from the ego is culled (road polygons reaching inside are kept whole).
    ``supersample`` > 1 renders that many times larger and box-filters down (anti-aliasing, slower).
    """
    return render_rig(scene, {camera.name: camera}, max_distance_m=max_distance_m, supersample=supersample)[camera.name]


def render_rig(
    scene: RenderScene, cameras: Mapping[str, CameraSpec], *, max_distance_m: float = 80.0, supersample: int = 1
) -> dict[str, Image.Image]:
    """Images of several cameras of one scene, sharing the per-scene work; keys as in ``cameras``."""
    if supersample < 1:
        raise ValueError(f"render: supersample must be >= 1, got {supersample}")
    geometry = _prepare(scene, max_distance_m)
    return {name: _render_prepared(geometry, camera, int(supersample)) for name, camera in cameras.items()}


def save_jpeg(image: Image.Image, path: str | os.PathLike[str], quality: int = 90) -> Path:
    """Write ``image`` as a JPEG at ``path`` (atomically: a partial file never appears), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            image.convert("RGB").save(stream, format="JPEG", quality=int(quality))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def example_scene(
    ego_pose: tuple[float, float, float] = (0.0, -1.75, 0.0), light_state: str = "red", piece_m: float = 10.0
) -> RenderScene:
    """A fixed four-way intersection for tests, benchmarks and docs (right-hand traffic, 3.5 m lanes).

    Main road along x (two lanes each way, y in [-7, 7]), cross road along y centred at x = 40; lanes are cut into
    ``piece_m`` pieces (about 250 polygons at 10 m) as a map's lane polygons are. The ego approaches eastbound in the
    right lane; its signal head hangs over the far side of the junction showing ``light_state``, the cross road's
    heads show the opposite phase. Twenty objects of every class stand around.
    """
    lane, half_road, arm_m = 3.5, 7.0, 140.0
    center = np.array([40.0, 0.0])
    stop_s = half_road + 1.0  # stop lines and signal heads stand 1 m outside the junction box
    polygons: list[np.ndarray] = [center + half_road * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])]
    markings: list[Marking] = []
    lights: list[TrafficLightLamp] = []
    other_state = {"red": "green", "green": "red", "yellow": "red", "unknown": "unknown"}[light_state]
    for arm, theta in enumerate((0.0, np.pi / 2, np.pi, -np.pi / 2)):
        # Arm frame: s outward from the junction, t to the left of s; inbound traffic drives on t > 0.
        e_s, e_t = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])

        def to_global(s_t: np.ndarray, e_s: np.ndarray = e_s, e_t: np.ndarray = e_t) -> np.ndarray:
            return center + s_t[..., :1] * e_s + s_t[..., 1:] * e_t

        cuts = np.append(np.arange(half_road, half_road + arm_m, piece_m), half_road + arm_m)
        for k in range(4):
            t0, t1 = -half_road + k * lane, -half_road + (k + 1) * lane
            for s0, s1 in itertools.pairwise(cuts):
                polygons.append(to_global(np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]])))
        for t, style, color in (
            (0.0, "double", "yellow"),
            (lane, "dashed", "white"),
            (-lane, "dashed", "white"),
            (half_road, "solid", "white"),
            (-half_road, "solid", "white"),
        ):
            markings.append(Marking(to_global(np.stack([cuts, np.full_like(cuts, t)], axis=1)), style, color, 0.15))
        markings.append(Marking(to_global(np.array([[stop_s, 0.0], [stop_s, half_road]])), "solid", "white", 0.5))
        # The head for this arm's inbound traffic hangs over the far side of the junction, above its lanes.
        heading_in = theta + np.pi
        far_side = center + stop_s * np.array([np.cos(heading_in), np.sin(heading_in)])
        over_lanes = far_side - lane * np.array([-np.sin(heading_in), np.cos(heading_in)])
        state = light_state if arm in (0, 2) else other_state
        lights.append(TrafficLightLamp(np.array([*over_lanes, 5.5]), state, theta))

    cross_x = float(center[0])
    rows = [
        # x, y, z, l, w, h, yaw, class
        (14.0, -1.75, 0.8, 4.6, 1.9, 1.6, 0.0, "vehicle"),
        (26.0, -5.25, 0.8, 4.8, 2.0, 1.6, 0.0, "vehicle"),
        (30.0, -1.75, 1.6, 10.0, 2.5, 3.2, 0.0, "vehicle"),
        (22.0, 1.75, 0.8, 4.5, 1.9, 1.5, np.pi, "vehicle"),
        (48.0, 5.25, 0.8, 4.6, 1.9, 1.6, np.pi, "vehicle"),
        (70.0, 1.75, 0.8, 4.6, 1.9, 1.6, np.pi, "vehicle"),
        (-12.0, -1.75, 0.8, 4.6, 1.9, 1.6, 0.0, "vehicle"),
        (-25.0, -5.25, 0.8, 4.6, 1.9, 1.6, 0.0, "vehicle"),
        (cross_x - 1.75, 16.0, 0.8, 4.6, 1.9, 1.6, -np.pi / 2, "vehicle"),
        (cross_x + 1.75, -20.0, 0.8, 4.6, 1.9, 1.6, np.pi / 2, "vehicle"),
        (cross_x - half_road - 2.5, -8.5, 0.9, 0.6, 0.6, 1.75, np.pi / 2, "pedestrian"),
        (cross_x - half_road - 3.0, 8.5, 0.9, 0.6, 0.6, 1.7, -np.pi / 2, "pedestrian"),
        (18.0, -7.8, 0.9, 0.6, 0.6, 1.8, 0.0, "pedestrian"),
        (10.0, -6.4, 0.8, 1.8, 0.6, 1.6, 0.0, "bicycle"),
        (55.0, -6.4, 0.8, 1.8, 0.6, 1.6, 0.0, "bicycle"),
        (8.0, -7.4, 0.35, 0.4, 0.4, 0.7, 0.0, "traffic_cone"),
        (11.0, -7.4, 0.35, 0.4, 0.4, 0.7, 0.0, "traffic_cone"),
        (60.0, -8.0, 0.5, 3.0, 0.5, 1.0, 0.0, "barrier"),
        (62.0, -9.0, 0.6, 0.7, 0.1, 1.2, np.pi, "czone_sign"),
        (35.0, -9.5, 0.5, 1.0, 1.0, 1.0, 0.3, "generic_object"),
    ]
    boxes = np.array([row[:7] for row in rows], dtype=np.float64)
    return RenderScene(
        ego_pose=ego_pose,
        road_polygons=polygons,
        markings=markings,
        boxes=boxes,
        box_classes=[row[7] for row in rows],
        traffic_lights=lights,
    )
