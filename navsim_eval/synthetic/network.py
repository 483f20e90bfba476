"""Procedural road networks for the synthetic world, in nuPlan's map vocabulary.

A :class:`TownLayout` names junction nodes and the roads between them (lanes per direction, speed limit, corner
points rounded into circular arcs, or an explicit centre polyline). :func:`build_network` turns it into lanes,
lane connectors, roadblocks, junction polygons, crosswalks, car parks and signal groups:

* a road is one roadblock per direction (lanes indexed from the left, as nuPlan does); lanes only link through
  lane connectors, so a road between two junctions, curves included, is one roadblock per direction;
* every node is a junction whose connectors join each arriving lane to the lanes it may drive into: straight
  (lane k to lane k, and where the lane count changes, the outer lanes merge into or split from the nearest one),
  left (leftmost to leftmost) and right (rightmost to rightmost); no U-turns;
* a node's ``control`` says who goes first: ``signal`` (fixed-time lights, left turns yield to oncoming traffic),
  ``yield`` (roads flagged ``priority``, else the straightest pair, go first), ``roundabout`` (the ring goes first)
  or ``merge`` (a lane drop: the merging lane yields to the lane it joins);
* a junction's polygon (an nuPlan intersection) is the convex hull of its road ends and connectors, so the
  drivable surface is one piece.

Everything is plain geometry; :mod:`navsim_eval.synthetic.mapfile` writes it as a nuPlan GeoPackage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely

LANE_WIDTH = 3.7
SHOULDER_WIDTH = 1.0  # paved strip beyond the edge line: part of the roadblock, not of any lane
JUNCTION_APRON = 1.0  # metres of pavement around a junction's hull
JUNCTION_MARGIN = 3.0  # metres between the road ends and the conflict area of a junction (crosswalk room)
CURVE_RADIUS = 34.0  # default radius of a road's rounded corners (centre line)
SAMPLE_SPACING = 1.0  # metres between centerline samples
MERGE_CLEARANCE = 17.0  # half the length of a lane drop's taper
STRAIGHT_TOLERANCE = math.radians(35.0)  # a connector turning less than this is "straight"
CONTROLS = ("signal", "yield", "roundabout", "merge")
TURN_SPEED_MPS = 8.0
CORNER_LATERAL_ACCEL = 3.5  # m/s^2: a road with a sharp corner gets the speed limit that corner allows


@dataclass
class Lane:
    """A lane or lane connector: centerline samples (x, y, heading), width, boundaries and graph links."""

    id: str
    roadblock_id: str
    centerline: np.ndarray  # [N, 3]
    width: float
    speed_limit: float
    is_connector: bool = False
    predecessors: list[str] = field(default_factory=list)
    successors: list[str] = field(default_factory=list)
    lane_index: int = 0  # 0 = next to the road's centre line (the leftmost lane of its direction)
    turn: str = "straight"  # connectors: straight, left or right
    node: str | None = None  # connectors: the junction they cross
    yield_to: list[str] = field(default_factory=list)  # connectors: the conflicting connectors that go first
    # Road lanes get their boundaries from the road's centre line, so that neighbours share identical vertices.
    left: np.ndarray | None = None
    right: np.ndarray | None = None

    @property
    def left_boundary(self) -> np.ndarray:
        return self.left if self.left is not None else _offset(self.centerline, self.width / 2.0)

    @property
    def right_boundary(self) -> np.ndarray:
        return self.right if self.right is not None else _offset(self.centerline, -self.width / 2.0)

    @property
    def polygon(self) -> shapely.Polygon:
        ring = np.concatenate([self.left_boundary, self.right_boundary[::-1]])
        polygon = shapely.Polygon(ring)
        return polygon if polygon.is_valid else polygon.buffer(0)

    @property
    def length(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.centerline[:, :2], axis=0), axis=1)))


@dataclass
class Roadblock:
    """A lane group (ROADBLOCK) or, inside a junction, a group of connectors (ROADBLOCK_CONNECTOR)."""

    id: str
    lane_ids: list[str]
    is_connector: bool = False
    intersection_id: str | None = None
    polygon: shapely.Polygon | None = None
    road: int | None = None  # lane groups: index of the road in the layout


@dataclass
class TrafficLightGroup:
    """Lane connectors that share one signal head; ``approach`` ("ns" or "ew") is the phase they belong to."""

    node: str
    approach: str
    connector_ids: list[str]


@dataclass
class Junction:
    """A node of the layout as built: its intersection polygon, control and connectors."""

    node: str
    intersection_id: str
    control: str
    polygon: shapely.Polygon
    connector_ids: list[str]
    crosswalk_ids: list[str] = field(default_factory=list)


@dataclass
class RoadNetwork:
    """The whole town: lanes, roadblocks, intersections, car parks, crosswalks and signal groups (global metres)."""

    lanes: dict[str, Lane]
    roadblocks: dict[str, Roadblock]
    intersections: dict[str, shapely.Polygon]
    carparks: dict[str, shapely.Polygon]
    lights: list[TrafficLightGroup]
    origin: tuple[float, float]
    junctions: dict[str, Junction] = field(default_factory=dict)
    crosswalks: dict[str, shapely.Polygon] = field(default_factory=dict)

    def lane_polygons(self) -> dict[str, shapely.Polygon]:
        return {lane_id: lane.polygon for lane_id, lane in self.lanes.items()}

    def drivable_polygons(self) -> list[shapely.Polygon]:
        """Every surface a car may be on (for rendering and sanity checks)."""
        roadblocks = [rb.polygon for rb in self.roadblocks.values() if rb.polygon is not None and not rb.is_connector]
        return roadblocks + list(self.intersections.values()) + list(self.carparks.values())

    def neighbour_lane(self, lane_id: str, side: int) -> str | None:
        """The same-direction lane beside a road lane (side +1 = left, -1 = right), if any."""
        lane = self.lanes[lane_id]
        if lane.is_connector:
            return None
        target = lane.lane_index - side  # lane 0 is the leftmost of its direction
        return next(
            (i for i in self.roadblocks[lane.roadblock_id].lane_ids if self.lanes[i].lane_index == target), None
        )


# ------------------------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class NodeSpec:
    """A junction at (x, y) metres from the town origin; ``clearance`` overrides the computed road-end distance."""

    x: float
    y: float
    control: str = "signal"
    clearance: float | None = None

    def __post_init__(self) -> None:
        if self.control not in CONTROLS:
            raise ValueError(f"node control {self.control!r}: expected one of {CONTROLS}")


@dataclass(frozen=True)
class RoadSpec:
    """A two-way (or one-way, ``lanes_ba = 0``) road from node ``a`` to node ``b``.

    The centre line runs through ``via`` corner points, each rounded into an arc of ``radius`` (one value or one
    per corner), unless ``points`` gives the whole polyline (from ``a`` to ``b``, metres from the town origin).
    Lanes of direction a -> b lie right of the centre line. ``carpark`` puts a car park beside the a -> b side;
    ``priority`` gives the road right of way at ``yield`` and ``roundabout`` nodes.
    """

    a: str
    b: str
    lanes_ab: int = 1
    lanes_ba: int = 1
    speed_limit: float = 11.0
    via: tuple[tuple[float, float], ...] = ()
    radius: float | tuple[float, ...] = CURVE_RADIUS
    points: tuple[tuple[float, float], ...] | None = None
    carpark: bool = False
    priority: bool = False

    def __post_init__(self) -> None:
        if self.lanes_ab < 1 or self.lanes_ba < 0:
            raise ValueError(f"road {self.a}-{self.b}: needs lanes_ab >= 1 and lanes_ba >= 0")


@dataclass(frozen=True)
class TownLayout:
    """Junction nodes and the roads joining them (local metres; the town's origin is added when building)."""

    nodes: Mapping[str, NodeSpec]
    roads: Sequence[RoadSpec]


# ------------------------------------------------------------------------------------------------ geometry


def _headings(points: np.ndarray) -> np.ndarray:
    deltas = np.diff(points, axis=0)
    heading = np.arctan2(deltas[:, 1], deltas[:, 0])
    return np.concatenate([heading, heading[-1:]])


def _with_headings(points: np.ndarray) -> np.ndarray:
    return np.column_stack([points, _headings(points)])


def _offset(path: np.ndarray, distance: float) -> np.ndarray:
    """Points shifted ``distance`` to the left of each pose."""
    return path[:, :2] + distance * np.column_stack([-np.sin(path[:, 2]), np.cos(path[:, 2])])


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _resample(points: np.ndarray, spacing: float = SAMPLE_SPACING) -> np.ndarray:
    """A polyline [N, 2] resampled at about ``spacing`` metres (ends kept), with headings."""
    points = np.asarray(points, dtype=np.float64)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-9])
    points = points[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    count = max(2, math.ceil(s[-1] / spacing) + 1)
    grid = np.linspace(0.0, s[-1], count)
    return _with_headings(np.column_stack([np.interp(grid, s, points[:, 0]), np.interp(grid, s, points[:, 1])]))


def _fillet(corner: np.ndarray, d_in: np.ndarray, d_out: np.ndarray, radius: float) -> np.ndarray:
    """Points of the circular arc of ``radius`` tangent to both legs of a corner (in driving order)."""
    cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
    turn = math.atan2(cross, float(d_in @ d_out))
    if abs(turn) < 1e-6:
        return corner[None]
    tangent = radius * math.tan(abs(turn) / 2.0)
    start = corner - tangent * d_in
    normal = np.array([-d_in[1], d_in[0]]) * (1.0 if turn > 0 else -1.0)
    center = start + radius * normal
    first = math.atan2(*(start - center)[::-1])
    count = max(3, math.ceil(radius * abs(turn) / SAMPLE_SPACING) + 1)
    angles = first + np.linspace(0.0, turn, count)
    return np.column_stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)])


def rounded_path(points: Sequence[Sequence[float]], radius: float | Sequence[float] = CURVE_RADIUS) -> np.ndarray:
    """A polyline through ``points`` whose interior corners are circular arcs, resampled with headings."""
    points = np.asarray(points, dtype=np.float64)
    radii = [float(radius)] * max(0, len(points) - 2) if np.isscalar(radius) else [float(r) for r in radius]
    if len(radii) != max(0, len(points) - 2):
        raise ValueError(f"rounded_path: {len(radii)} radii for {len(points) - 2} corners")
    pieces = [points[:1]]
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    for index in range(1, len(points) - 1):
        d_in, d_out = _unit(points[index] - points[index - 1]), _unit(points[index + 1] - points[index])
        half_turn = 0.5 * abs(math.atan2(d_in[0] * d_out[1] - d_in[1] * d_out[0], float(d_in @ d_out)))
        # The arcs of neighbouring corners must not overlap: each may use at most half of either leg.
        fits = 0.5 * min(lengths[index - 1], lengths[index]) / max(math.tan(half_turn), 1e-9)
        pieces.append(_fillet(points[index], d_in, d_out, min(radii[index - 1], fits)))
    pieces.append(points[-1:])
    return _resample(np.concatenate(pieces))


def _trim(path: np.ndarray, start: float, end: float) -> np.ndarray:
    """The part of a path between ``start`` metres from its beginning and ``end`` metres from its end."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1))])
    lo, hi = start, s[-1] - end
    if hi - lo < 2.0:
        raise ValueError(f"a road is too short for its junctions: {s[-1]:.1f} m long, {start + end:.1f} m needed")
    inner = (s > lo + 0.5 * SAMPLE_SPACING) & (s < hi - 0.5 * SAMPLE_SPACING)
    grid = np.concatenate([[lo], s[inner], [hi]])
    xy = np.column_stack([np.interp(grid, s, path[:, 0]), np.interp(grid, s, path[:, 1])])
    return _with_headings(xy)


def _reverse(path: np.ndarray) -> np.ndarray:
    reverse = path[::-1].copy()
    reverse[:, 2] = (reverse[:, 2] + 2 * np.pi) % (2 * np.pi) - np.pi
    return reverse


def _cubic(start: np.ndarray, d_in: np.ndarray, end: np.ndarray, d_out: np.ndarray, turn: float) -> np.ndarray:
    """A cubic Bezier from ``start`` (heading ``d_in``) to ``end`` (heading ``d_out``) close to a circular arc."""
    chord = float(np.linalg.norm(end - start))
    half = max(abs(turn) / 2.0, 1e-6)
    handle = chord * (4.0 / 3.0) * math.tan(half / 2.0) / (2.0 * math.sin(half)) if abs(turn) > 1e-3 else chord / 3.0
    c1, c2 = start + handle * d_in, end - handle * d_out
    count = max(3, math.ceil(chord * (1.0 + abs(turn) / 3.0) / SAMPLE_SPACING) + 1)
    t = np.linspace(0.0, 1.0, count)[:, None]
    points = (1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end
    return _with_headings(points)


# ------------------------------------------------------------------------------------------------ building


@dataclass
class _RoadEnd:
    """One end of a road at a node: the lanes arriving and departing there and where the road meets the node."""

    road: int
    node: str
    heading_out: float  # direction from the node into the road
    arriving: list[str] = field(default_factory=list)  # lane ids, leftmost first
    departing: list[str] = field(default_factory=list)
    cross_section: np.ndarray | None = None  # [2, 2] outer edge points at the road end
    point: np.ndarray | None = None  # centre-line point at the road end


def _half_width(road: RoadSpec) -> float:
    return max(road.lanes_ab, road.lanes_ba if road.lanes_ba else road.lanes_ab / 2.0) * LANE_WIDTH + SHOULDER_WIDTH


def _node_clearances(layout: TownLayout, paths: list[np.ndarray]) -> dict[str, float]:
    """How far from each node its roads end: enough for neighbouring roads not to overlap, plus a margin."""
    directions: dict[str, list[tuple[float, float]]] = {name: [] for name in layout.nodes}
    for index, road in enumerate(layout.roads):
        path = paths[index]
        directions[road.a].append((float(path[0, 2]), _half_width(road)))
        directions[road.b].append((float(_wrap(path[-1, 2] + math.pi)), _half_width(road)))
    clearances = {}
    for name, node in layout.nodes.items():
        ends = sorted(directions[name])
        if len(ends) < 2:
            raise ValueError(f"node {name!r} has {len(ends)} road end(s); every node joins at least two")
        if node.clearance is not None:
            clearances[name] = node.clearance
            continue
        if node.control == "merge":
            clearances[name] = MERGE_CLEARANCE
            continue
        needed = 0.0
        for k, (angle, width) in enumerate(ends):
            next_angle, next_width = ends[(k + 1) % len(ends)]
            gap = (next_angle - angle) % (2 * math.pi) or 2 * math.pi
            if gap < math.pi - 1e-3:
                needed = max(needed, max(width, next_width) / math.tan(gap / 2.0))
        clearances[name] = needed + JUNCTION_MARGIN
    return clearances


def _road_path(road: RoadSpec, nodes: Mapping[str, NodeSpec]) -> np.ndarray:
    a, b = nodes[road.a], nodes[road.b]
    if road.points is not None:
        return _resample(np.asarray(road.points, dtype=np.float64))
    return rounded_path([(a.x, a.y), *road.via, (b.x, b.y)], road.radius)


class _Ids:
    """Map object ids are integers (as strings) like nuPlan's: the logs store lane connector ids as ints."""

    def __init__(self, start: int = 10_000):
        self.value = start

    def __call__(self) -> str:
        self.value += 1
        return str(self.value)


def build_network(layout: TownLayout, origin: tuple[float, float] = (0.0, 0.0)) -> RoadNetwork:
    """Lanes, connectors, roadblocks, junctions, crosswalks, car parks and signal groups of ``layout``, placed at
    ``origin`` (UTM metres of the town's map location)."""
    base = np.asarray(origin, dtype=np.float64)
    nodes = {name: NodeSpec(n.x + base[0], n.y + base[1], n.control, n.clearance) for name, n in layout.nodes.items()}
    roads = [
        RoadSpec(
            r.a,
            r.b,
            r.lanes_ab,
            r.lanes_ba,
            r.speed_limit,
            tuple((x + base[0], y + base[1]) for x, y in r.via),
            r.radius,
            None if r.points is None else tuple((x + base[0], y + base[1]) for x, y in r.points),
            r.carpark,
            r.priority,
        )
        for r in layout.roads
    ]
    for road in roads:
        for name in (road.a, road.b):
            if name not in nodes:
                raise ValueError(f"road {road.a}-{road.b}: unknown node {name!r}")
    full_paths = [_road_path(road, nodes) for road in roads]
    shifted = TownLayout(nodes, roads)
    clearance = _node_clearances(shifted, full_paths)

    lanes: dict[str, Lane] = {}
    roadblocks: dict[str, Roadblock] = {}
    new_id = _Ids()
    ends: dict[str, list[_RoadEnd]] = {name: [] for name in nodes}
    for index, road in enumerate(roads):
        centre = _trim(full_paths[index], clearance[road.a], clearance[road.b])
        if road.lanes_ba == 0:  # one-way: the lanes straddle the given line
            centre = np.column_stack([_offset(centre, road.lanes_ab * LANE_WIDTH / 2.0), centre[:, 2]])
        end_a = _RoadEnd(index, road.a, float(centre[0, 2]), point=centre[0, :2].copy())
        end_b = _RoadEnd(index, road.b, _wrap(float(centre[-1, 2]) + math.pi), point=centre[-1, :2].copy())
        for path, count, start_end, stop_end in (
            (centre, road.lanes_ab, end_a, end_b),
            (_reverse(centre), road.lanes_ba, end_b, end_a),
        ):
            if count == 0:
                continue
            roadblock_id = new_id()
            edges = [_offset(path, -k * LANE_WIDTH) for k in range(count + 1)]
            ids = []
            for k in range(count):
                lane_id = new_id()
                centerline = np.column_stack([_offset(path, -(k + 0.5) * LANE_WIDTH), path[:, 2]])
                lanes[lane_id] = Lane(
                    lane_id,
                    roadblock_id,
                    centerline,
                    LANE_WIDTH,
                    road.speed_limit,
                    lane_index=k,
                    left=edges[k],
                    right=edges[k + 1],
                )
                ids.append(lane_id)
            left_edge = _offset(path, SHOULDER_WIDTH) if road.lanes_ba == 0 else edges[0]
            outer = _offset(path, -(count * LANE_WIDTH + SHOULDER_WIDTH))
            outline = shapely.Polygon(np.concatenate([left_edge, outer[::-1]]))
            roadblocks[roadblock_id] = Roadblock(
                roadblock_id, ids, polygon=outline if outline.is_valid else outline.buffer(0), road=index
            )
            start_end.departing, stop_end.arriving = ids, ids
        left_outer = _offset(centre, (road.lanes_ba * LANE_WIDTH if road.lanes_ba else 0.0) + SHOULDER_WIDTH)
        right_outer = _offset(centre, -(road.lanes_ab * LANE_WIDTH + SHOULDER_WIDTH))
        end_a.cross_section = np.array([left_outer[0], right_outer[0]])
        end_b.cross_section = np.array([left_outer[-1], right_outer[-1]])
        ends[road.a].append(end_a)
        ends[road.b].append(end_b)

    intersections: dict[str, shapely.Polygon] = {}
    junctions: dict[str, Junction] = {}
    crosswalks: dict[str, shapely.Polygon] = {}
    lights: list[TrafficLightGroup] = []
    for name, node in nodes.items():
        intersection_id = new_id()
        connectors, groups = _connect_junction(ends[name], lanes, roadblocks, new_id, intersection_id, name)
        _assign_priorities(node.control, ends[name], roads, connectors, lanes)
        points = [end.cross_section for end in ends[name]]
        points += [np.concatenate([lanes[c].left_boundary, lanes[c].right_boundary]) for c in connectors]
        # A little paved margin around the junction (the curbs' radius): cars off-track in tight turns.
        hull = shapely.MultiPoint(np.concatenate(points)).convex_hull.buffer(JUNCTION_APRON, join_style="round")
        intersections[intersection_id] = hull
        junction = Junction(name, intersection_id, node.control, hull, connectors)
        if node.control in ("signal", "yield"):
            for end in ends[name]:
                crosswalk_id = new_id()
                crosswalks[crosswalk_id] = _crosswalk(end)
                junction.crosswalk_ids.append(crosswalk_id)
        junctions[name] = junction
        if node.control == "signal":
            lights.extend(_signal_groups(name, ends[name], groups))

    for roadblock in roadblocks.values():
        if roadblock.polygon is None:  # connector groups: the outline is the union of their lanes
            # Neighbouring connectors touch only up to rounding; a 0.1 mm close makes the union one polygon.
            pieces = [lanes[i].polygon.buffer(1e-4, join_style="mitre") for i in roadblock.lane_ids]
            roadblock.polygon = shapely.union_all(pieces).buffer(-1e-4, join_style="mitre")

    carparks = {}
    for index, road in enumerate(roads):
        if road.carpark:
            carparks[new_id()] = _carpark(full_paths[index], road)
    return RoadNetwork(lanes, roadblocks, intersections, carparks, lights, tuple(origin), junctions, crosswalks)


def _connect_junction(ends, lanes, roadblocks, new_id, intersection_id, node) -> tuple[list[str], dict[int, list[str]]]:
    """The lane connectors of a junction, one roadblock connector per (arriving road, departing road).

    Returns every connector id and the connector ids per arriving road end (one signal head each).
    """
    connector_ids: list[str] = []
    groups: dict[int, list[str]] = {}
    for k, arrival in enumerate(ends):
        if not arrival.arriving:
            continue
        heading_in = _wrap(arrival.heading_out + math.pi)
        for departure in ends:
            if departure is arrival or not departure.departing:
                continue
            delta = _wrap(departure.heading_out - heading_in)
            turn = "straight" if abs(delta) < STRAIGHT_TOLERANCE else ("left" if delta > 0 else "right")
            arriving, leaving = arrival.arriving, departure.departing
            if turn == "straight":
                pairs = [
                    (arriving[min(i, len(arriving) - 1)], leaving[min(i, len(leaving) - 1)])
                    for i in range(max(len(arriving), len(leaving)))
                ]
            elif turn == "left":
                pairs = [(arriving[0], leaving[0])]
            else:
                pairs = [(arriving[-1], leaving[-1])]
            roadblock_id = new_id()
            ids = []
            for index, (lane_id, exit_id) in enumerate(pairs):
                entry, exit_lane = lanes[lane_id], lanes[exit_id]
                connector_id = new_id()
                start, end = entry.centerline[-1], exit_lane.centerline[0]
                d_in = np.array([math.cos(start[2]), math.sin(start[2])])
                d_out = np.array([math.cos(end[2]), math.sin(end[2])])
                path = _cubic(start[:2], d_in, end[:2], d_out, _wrap(end[2] - start[2]))
                speed = min(entry.speed_limit, exit_lane.speed_limit) if turn == "straight" else TURN_SPEED_MPS
                lanes[connector_id] = Lane(
                    connector_id,
                    roadblock_id,
                    path,
                    LANE_WIDTH,
                    speed,
                    is_connector=True,
                    lane_index=index,
                    turn=turn,
                    node=node,
                )
                entry.successors.append(connector_id)
                lanes[connector_id].predecessors.append(lane_id)
                lanes[connector_id].successors.append(exit_id)
                exit_lane.predecessors.append(connector_id)
                ids.append(connector_id)
            roadblocks[roadblock_id] = Roadblock(roadblock_id, ids, is_connector=True, intersection_id=intersection_id)
            groups.setdefault(k, []).extend(ids)
            connector_ids.extend(ids)
    return connector_ids, groups


def _major_ends(control: str, ends: list[_RoadEnd], roads: list[RoadSpec]) -> set[int]:
    """Indices (into ``ends``) of the road ends with right of way at an unsignalised node."""
    flagged = {k for k, end in enumerate(ends) if roads[end.road].priority}
    if flagged:
        return flagged
    best, pair = -1.0, set()
    for i in range(len(ends)):
        for j in range(i + 1, len(ends)):
            opposite = abs(_wrap(ends[i].heading_out - ends[j].heading_out))
            if opposite > best:
                best, pair = opposite, {i, j}
    return pair


def _assign_priorities(control: str, ends: list[_RoadEnd], roads, connectors: list[str], lanes) -> None:
    """Fill ``Lane.yield_to``: who a connector lets go first among the connectors whose paths it crosses or joins."""
    if len(connectors) < 2:
        return
    end_of_lane = {lane_id: k for k, end in enumerate(ends) for lane_id in end.arriving}
    major = _major_ends(control, ends, roads)
    lines = {c: shapely.LineString(lanes[c].centerline[:, :2]) for c in connectors}
    for c in connectors:
        lane = lanes[c]
        source = end_of_lane[lane.predecessors[0]]
        for other in connectors:
            if other == c or lanes[other].predecessors[0] == lane.predecessors[0]:
                continue
            joins = lanes[other].successors[0] == lane.successors[0]
            if not (joins or lines[c].intersects(lines[other])):
                continue
            other_source = end_of_lane[lanes[other].predecessors[0]]
            opposite = abs(_wrap(ends[source].heading_out - ends[other_source].heading_out)) > math.pi * 0.75
            if control == "signal":
                yields = lane.turn == "left" and opposite and lanes[other].turn != "left"
            elif control == "merge":
                yields = joins and lane.lane_index > 0 and lanes[other].lane_index == 0
                yields = yields or (joins and source not in major and other_source in major)
            elif source not in major:
                yields = other_source in major
            else:
                yields = lane.turn == "left" and other_source in major and lanes[other].turn != "left"
            if yields:
                lane.yield_to.append(other)


def _signal_groups(node: str, ends: list[_RoadEnd], groups: dict[int, list[str]]) -> list[TrafficLightGroup]:
    """One signal head per arriving road; approaches within 45 degrees of the first one's axis share a phase."""
    axis = None
    result = []
    for k, connector_ids in sorted(groups.items()):
        heading = ends[k].heading_out
        if axis is None:
            axis = heading
        along = abs(math.cos(heading - axis)) >= math.cos(math.pi / 4)
        result.append(TrafficLightGroup(node, "ns" if along else "ew", connector_ids))
    return result


def _crosswalk(end: _RoadEnd) -> shapely.Polygon:
    """A 2.4 m strip across the road just inside the junction (the margin left for it)."""
    into = -np.array([math.cos(end.heading_out), math.sin(end.heading_out)])
    near, far = 0.3, 0.3 + 2.4
    a, b = end.cross_section
    return shapely.Polygon([a + near * into, b + near * into, b + far * into, a + far * into])


def _carpark(path: np.ndarray, road: RoadSpec) -> shapely.Polygon:
    """A rectangle flush with the right edge (a -> b) of a road's middle, so it is reachable from the road."""
    middle = path[len(path) // 2]
    d = np.array([math.cos(middle[2]), math.sin(middle[2])])
    right = np.array([d[1], -d[0]])
    half_long, half_wide = 20.0, 12.0
    center = middle[:2] + right * (road.lanes_ab * LANE_WIDTH + half_wide)
    return shapely.Polygon(
        [center + sl * half_long * d + sw * half_wide * right for sl, sw in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    )


# ------------------------------------------------------------------------------------------------ the grid town


def grid_layout(
    grid: tuple[int, int] = (3, 3),
    spacing: float = 170.0,
    ring_lanes: int = 2,
    inner_lanes: int = 1,
    ring_speed: float = 15.0,
    inner_speed: float = 11.0,
    corner_radius: float = CURVE_RADIUS,
    t_control: str = "signal",
    carparks: Sequence[int] = (),
) -> TownLayout:
    """A grid of ``grid`` nodes ``spacing`` metres apart: a ring road whose corners are curves, inner cross roads,
    signalised 4-way junctions and 3-way junctions (``t_control``) where the cross roads meet the ring."""
    nx, ny = grid
    if nx < 3 or ny < 3:
        raise ValueError(f"grid must be at least 3 x 3 nodes (corners need junctions beside them), got {grid}")
    corners = {(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1)}
    nodes = {}
    for i in range(nx):
        for j in range(ny):
            if (i, j) in corners:
                continue
            border = i in (0, nx - 1) or j in (0, ny - 1)
            nodes[f"{i},{j}"] = NodeSpec(spacing * i, spacing * j, t_control if border else "signal")

    def ring(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return (a[0] == b[0] and a[0] in (0, nx - 1)) or (a[1] == b[1] and a[1] in (0, ny - 1))

    roads = []
    for i in range(nx):
        for j in range(ny):
            for di, dj in ((1, 0), (0, 1)):
                a, b = (i, j), (i + di, j + dj)
                if b[0] >= nx or b[1] >= ny or a in corners or b in corners:
                    continue
                lanes = ring_lanes if ring(a, b) else inner_lanes
                speed = ring_speed if ring(a, b) else inner_speed
                roads.append(RoadSpec(f"{a[0]},{a[1]}", f"{b[0]},{b[1]}", lanes, lanes, speed))
    corner_speed = min(ring_speed, round(math.sqrt(CORNER_LATERAL_ACCEL * corner_radius), 1))
    for ci, cj in sorted(corners):
        neighbours = [(ci + (1 if ci == 0 else -1), cj), (ci, cj + (1 if cj == 0 else -1))]
        (ai, aj), (bi, bj) = neighbours
        roads.append(
            RoadSpec(
                f"{ai},{aj}",
                f"{bi},{bj}",
                ring_lanes,
                ring_lanes,
                corner_speed,
                via=((spacing * ci, spacing * cj),),
                radius=corner_radius,
            )
        )
    roads = [RoadSpec(**{**road.__dict__, "carpark": k in carparks}) for k, road in enumerate(roads)]
    return TownLayout(nodes, roads)


def build_town(
    rng: np.random.Generator,
    grid: tuple[int, int] = (3, 3),
    spacing: float = 170.0,
    origin: tuple[float, float] = (587_000.0, 4_477_000.0),
    num_carparks: int = 2,
) -> RoadNetwork:
    """A grid town (see :func:`grid_layout`) at a UTM-like ``origin``, with car parks beside random straight roads."""
    layout = grid_layout(grid, spacing)
    straight = [k for k, road in enumerate(layout.roads) if not road.via]
    chosen = rng.choice(straight, size=min(num_carparks, len(straight)), replace=False)
    return build_network(grid_layout(grid, spacing, carparks=[int(k) for k in chosen]), origin)
