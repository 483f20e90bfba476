"""Procedural road networks for the synthetic world: a grid town in nuPlan's map vocabulary.

The town is a grid of nodes joined by two-way roads. The outer ring has two lanes per direction, the inner cross one.
Nodes with three or four roads are signalised intersections whose lane connectors join every arriving lane to the
lanes it may turn into; the corners of the ring are curves (circular arcs). As in nuPlan, lanes only link through
lane connectors, so a road between two intersections, corner included, is one roadblock per direction. Car parks
sit beside some roads. Everything is plain geometry; :mod:`navsim_eval.synthetic.mapfile` writes it as a nuPlan
GeoPackage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely

LANE_WIDTH = 3.7
SHOULDER_WIDTH = 0.4  # paved strip beyond the edge line: part of the roadblock, not of any lane
INTERSECTION_MARGIN = 3.0  # metres between the outermost lane and the intersection edge (crosswalk room)
CURVE_CLEARANCE = 34.0  # metres from a corner node to where its curve starts (the centre line's radius)
SAMPLE_SPACING = 1.0  # metres between centerline samples
CURVE_SAMPLES = 41  # samples of every arc of a corner (shared angles)


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
    """A lane group (ROADBLOCK) or, inside an intersection, a group of connectors (ROADBLOCK_CONNECTOR)."""

    id: str
    lane_ids: list[str]
    is_connector: bool = False
    intersection_id: str | None = None
    polygon: shapely.Polygon | None = None


@dataclass
class TrafficLightGroup:
    """Lane connectors that share one signal head; ``phase_offset_s`` staggers the approaches of a node."""

    node: tuple[int, int]
    approach: str  # "ns" or "ew": which axis the approach lies on
    connector_ids: list[str]


@dataclass
class RoadNetwork:
    """The whole town: lanes, roadblocks, intersections, car parks and signal groups (global metres)."""

    lanes: dict[str, Lane]
    roadblocks: dict[str, Roadblock]
    intersections: dict[str, shapely.Polygon]
    carparks: dict[str, shapely.Polygon]
    lights: list[TrafficLightGroup]
    origin: tuple[float, float]

    def lane_polygons(self) -> dict[str, shapely.Polygon]:
        return {lane_id: lane.polygon for lane_id, lane in self.lanes.items()}

    def drivable_polygons(self) -> list[shapely.Polygon]:
        """Every surface a car may be on (for rendering and sanity checks)."""
        roadblocks = [rb.polygon for rb in self.roadblocks.values() if rb.polygon is not None]
        return roadblocks + list(self.intersections.values()) + list(self.carparks.values())


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


def _line(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    count = max(2, math.ceil(np.linalg.norm(end - start) / SAMPLE_SPACING) + 1)
    points = np.linspace(start, end, count)
    return _with_headings(points)


def _bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(control - start) + np.linalg.norm(end - control)
    count = max(3, math.ceil(length / SAMPLE_SPACING) + 1)
    t = np.linspace(0.0, 1.0, count)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    return _with_headings(points)


def _ray_intersection(p: np.ndarray, d: np.ndarray, q: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Intersection of the lines p + s d and q + u e (falls back to the midpoint for parallel lines)."""
    matrix = np.array([[d[0], -e[0]], [d[1], -e[1]]])
    if abs(np.linalg.det(matrix)) < 1e-9:
        return (p + q) / 2.0
    s, _ = np.linalg.solve(matrix, q - p)
    return p + s * d


_DIRECTIONS = {
    "E": np.array([1.0, 0.0]),
    "N": np.array([0.0, 1.0]),
    "W": np.array([-1.0, 0.0]),
    "S": np.array([0.0, -1.0]),
}
_LEFT_OF = {"E": "N", "N": "W", "W": "S", "S": "E"}
_RIGHT_OF = {v: k for k, v in _LEFT_OF.items()}
_OPPOSITE = {"E": "W", "W": "E", "N": "S", "S": "N"}


# ------------------------------------------------------------------------------------------------ town


@dataclass
class _Edge:
    a: tuple[int, int]
    b: tuple[int, int]
    lanes_per_direction: int
    speed_limit: float


def build_town(
    rng: np.random.Generator,
    grid: tuple[int, int] = (3, 3),
    spacing: float = 170.0,
    origin: tuple[float, float] = (587_000.0, 4_477_000.0),
    num_carparks: int = 2,
) -> RoadNetwork:
    """A grid town of ``grid`` nodes ``spacing`` metres apart, placed at a UTM-like ``origin``."""
    nx, ny = grid
    if nx < 3 or ny < 3:
        raise ValueError(f"grid must be at least 3 x 3 nodes (corners need intersections beside them), got {grid}")
    base = np.asarray(origin, dtype=np.float64)

    def position(node: tuple[int, int]) -> np.ndarray:
        return base + spacing * np.asarray(node, dtype=np.float64)

    def ring_edge(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return (a[0] == b[0] and a[0] in (0, nx - 1)) or (a[1] == b[1] and a[1] in (0, ny - 1))

    edges: list[_Edge] = []
    for i in range(nx):
        for j in range(ny):
            for di, dj in ((1, 0), (0, 1)):
                a, b = (i, j), (i + di, j + dj)
                if b[0] < nx and b[1] < ny:
                    ring = ring_edge(a, b)
                    edges.append(_Edge(a, b, 2 if ring else 1, 15.0 if ring else 11.0))
    incident: dict[tuple[int, int], list[_Edge]] = {}
    for edge in edges:
        incident.setdefault(edge.a, []).append(edge)
        incident.setdefault(edge.b, []).append(edge)

    def clearance(node: tuple[int, int]) -> float:
        return max(e.lanes_per_direction for e in incident[node]) * LANE_WIDTH + INTERSECTION_MARGIN

    lanes: dict[str, Lane] = {}
    roadblocks: dict[str, Roadblock] = {}
    counter = {"n": 10_000}

    def new_id() -> str:
        """Map object ids are integers (as strings) like nuPlan's: the logs store lane connector ids as ints."""
        counter["n"] += 1
        return str(counter["n"])

    # Roads: chains of edges between two intersections, through any corners; one roadblock per direction.
    arrivals: dict[tuple[int, int], dict[str, list[str]]] = {}
    departures: dict[tuple[int, int], dict[str, list[str]]] = {}
    for nodes, edge in _road_chains(incident):
        points = [position(node) for node in nodes]
        centre = _road_centre(points, clearance(nodes[0]), clearance(nodes[-1]))
        for direction_nodes, path in ((nodes, centre), (nodes[::-1], _reverse(centre))):
            roadblock_id = new_id()
            ids = []
            edges_of_lanes = [_offset(path, -k * LANE_WIDTH) for k in range(edge.lanes_per_direction + 1)]
            for k in range(edge.lanes_per_direction):
                lane_id = new_id()
                centerline = np.column_stack([_offset(path, -(k + 0.5) * LANE_WIDTH), path[:, 2]])
                lanes[lane_id] = Lane(
                    lane_id,
                    roadblock_id,
                    centerline,
                    LANE_WIDTH,
                    edge.speed_limit,
                    lane_index=k,
                    left=edges_of_lanes[k],
                    right=edges_of_lanes[k + 1],
                )
                ids.append(lane_id)
            road_edge = _offset(path, -(edge.lanes_per_direction * LANE_WIDTH + SHOULDER_WIDTH))
            outline = shapely.Polygon(np.concatenate([edges_of_lanes[0], road_edge[::-1]]))
            roadblocks[roadblock_id] = Roadblock(roadblock_id, ids, polygon=outline)
            first, last = direction_nodes[0], direction_nodes[-1]
            departures.setdefault(first, {})[_compass(path[1, :2] - path[0, :2])] = ids
            arrivals.setdefault(last, {})[_compass(path[-1, :2] - path[-2, :2])] = ids

    # Intersections: connectors joining every arriving lane to the lanes it may turn into.
    intersections: dict[str, shapely.Polygon] = {}
    lights: list[TrafficLightGroup] = []
    for node in arrivals:
        half = clearance(node)
        center = position(node)
        intersection_id = new_id()
        intersections[intersection_id] = shapely.box(
            center[0] - half, center[1] - half, center[0] + half, center[1] + half
        )
        groups = _connect_intersection(arrivals[node], departures[node], lanes, roadblocks, new_id, intersection_id)
        for approach, connector_ids in groups.items():
            lights.append(TrafficLightGroup(node, "ns" if approach in ("N", "S") else "ew", connector_ids))

    for roadblock in roadblocks.values():
        if roadblock.polygon is None:  # connector groups: the outline is the union of their lanes
            # Neighbouring connectors touch only up to rounding; a 0.1 mm close makes the union one polygon.
            pieces = [lanes[i].polygon.buffer(1e-4, join_style="mitre") for i in roadblock.lane_ids]
            roadblock.polygon = shapely.union_all(pieces).buffer(-1e-4, join_style="mitre")

    carparks = _carparks(rng, edges, position, num_carparks, new_id)
    return RoadNetwork(lanes, roadblocks, intersections, carparks, lights, tuple(origin))


def _road_chains(incident: dict[tuple[int, int], list[_Edge]]) -> list[tuple[list[tuple[int, int]], _Edge]]:
    """Node sequences from one intersection (degree >= 3) to the next through degree-2 corners."""
    chains, used = [], set()
    for start, edges in incident.items():
        if len(edges) < 3:
            continue
        for edge in edges:
            if id(edge) in used:
                continue
            nodes, current, node = [start], edge, start
            while True:
                used.add(id(current))
                node = current.b if current.a == node else current.a
                nodes.append(node)
                if len(incident[node]) != 2:
                    break
                current = next(e for e in incident[node] if e is not current)
            chains.append((nodes, edge))
    return chains


def _road_centre(points: list[np.ndarray], start_clearance: float, end_clearance: float) -> np.ndarray:
    """The road's centre line (x, y, heading): straight runs joined by circular arcs of radius CURVE_CLEARANCE."""
    pieces = []
    start = points[0] + start_clearance * _unit(points[1] - points[0])
    for index in range(1, len(points) - 1):
        corner, d_in, d_out = (
            points[index],
            _unit(points[index] - points[index - 1]),
            _unit(points[index + 1] - points[index]),
        )
        arc_start = corner - CURVE_CLEARANCE * d_in
        pieces.append(_line(start, arc_start)[:-1])
        pieces.append(_arc(corner, d_in, d_out)[:-1])
        start = corner + CURVE_CLEARANCE * d_out
    pieces.append(_line(start, points[-1] - end_clearance * _unit(points[-1] - points[-2])))
    return np.concatenate(pieces)


def _arc(corner: np.ndarray, d_in: np.ndarray, d_out: np.ndarray) -> np.ndarray:
    """A quarter circle from corner - c d_in to corner + c d_out, sampled at CURVE_SAMPLES angles."""
    center = corner + CURVE_CLEARANCE * (d_out - d_in)
    left_turn = d_in[0] * d_out[1] - d_in[1] * d_out[0] > 0
    start = math.atan2(*(corner - CURVE_CLEARANCE * d_in - center)[::-1])
    angles = start + np.linspace(0.0, np.pi / 2 if left_turn else -np.pi / 2, CURVE_SAMPLES)
    heading = angles + (np.pi / 2 if left_turn else -np.pi / 2)
    return np.column_stack(
        [
            center[0] + CURVE_CLEARANCE * np.cos(angles),
            center[1] + CURVE_CLEARANCE * np.sin(angles),
            (heading + np.pi) % (2 * np.pi) - np.pi,
        ]
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _reverse(path: np.ndarray) -> np.ndarray:
    reverse = path[::-1].copy()
    reverse[:, 2] = (reverse[:, 2] + 2 * np.pi) % (2 * np.pi) - np.pi
    return reverse


def _compass(direction: np.ndarray) -> str:
    """The compass direction of travel of a unit axis-aligned vector."""
    if abs(direction[0]) > abs(direction[1]):
        return "E" if direction[0] > 0 else "W"
    return "N" if direction[1] > 0 else "S"


def _link(lanes: dict[str, Lane], before: str, connector: str, after: str) -> None:
    lanes[before].successors.append(connector)
    lanes[connector].predecessors.append(before)
    lanes[connector].successors.append(after)
    lanes[after].predecessors.append(connector)


def _connector_path(entry: Lane, exit_lane: Lane, turn: str) -> np.ndarray:
    start, end = entry.centerline[-1, :2], exit_lane.centerline[0, :2]
    if turn == "straight":
        return _line(start, end)
    d_in = np.array([np.cos(entry.centerline[-1, 2]), np.sin(entry.centerline[-1, 2])])
    d_out = np.array([np.cos(exit_lane.centerline[0, 2]), np.sin(exit_lane.centerline[0, 2])])
    return _bezier(start, _ray_intersection(start, d_in, end, d_out), end)


def _connect_intersection(arrivals, departures, lanes, roadblocks, new_id, intersection_id) -> dict[str, list[str]]:
    """Lane connectors of an intersection, grouped per (arrival road, departure road) into roadblock connectors.

    Straight: lane k to lane k; left: the leftmost lane to the leftmost lane; right: the rightmost to the rightmost.
    Returns the connector ids per arrival direction (one signal head each).
    """
    groups: dict[str, list[str]] = {}
    for heading, arriving in arrivals.items():
        for turn, target in (("straight", heading), ("left", _LEFT_OF[heading]), ("right", _RIGHT_OF[heading])):
            if target not in departures:
                continue
            leaving = departures[target]
            if turn == "straight":
                pairs = [(arriving[k], leaving[min(k, len(leaving) - 1)]) for k in range(len(arriving))]
            elif turn == "left":
                pairs = [(arriving[0], leaving[0])]
            else:
                pairs = [(arriving[-1], leaving[-1])]
            roadblock_id = new_id()
            ids = []
            for k, (lane_id, exit_id) in enumerate(pairs):
                entry, exit_lane = lanes[lane_id], lanes[exit_id]
                connector_id = new_id()
                lanes[connector_id] = Lane(
                    connector_id,
                    roadblock_id,
                    _connector_path(entry, exit_lane, turn),
                    LANE_WIDTH,
                    entry.speed_limit if turn == "straight" else 8.0,
                    is_connector=True,
                    lane_index=k,
                    turn=turn,
                )
                _link(lanes, lane_id, connector_id, exit_id)
                ids.append(connector_id)
            roadblocks[roadblock_id] = Roadblock(roadblock_id, ids, is_connector=True, intersection_id=intersection_id)
            groups.setdefault(heading, []).extend(ids)
    return groups


def _carparks(rng, edges, position, count, new_id) -> dict[str, shapely.Polygon]:
    """Rectangular car parks flush with the right edge of some straight roads (touching, so they are reachable)."""
    carparks: dict[str, shapely.Polygon] = {}
    for index in rng.choice(len(edges), size=min(count, len(edges)), replace=False):
        edge = edges[int(index)]
        pa, pb = position(edge.a), position(edge.b)
        d = (pb - pa) / np.linalg.norm(pb - pa)
        right = np.array([d[1], -d[0]])
        center = (pa + pb) / 2.0 + right * (edge.lanes_per_direction * LANE_WIDTH + 12.0)
        half_long, half_wide = 20.0, 12.0
        corners = [
            center + sl * half_long * d + sw * half_wide * right for sl, sw in ((1, 1), (-1, 1), (-1, -1), (1, -1))
        ]
        carparks[new_id()] = shapely.Polygon(corners)
    return carparks
