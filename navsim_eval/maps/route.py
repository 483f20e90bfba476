"""NAVSIM's route handling on a :class:`NuPlanMap`: route lookup, roadblock correction, starting lane and centerline.

Mirrors the PDM planner code the metric cache runs (``navsim/planning/simulation/planner/pdm_planner/``):
``abstract_pdm_planner.py`` (``_load_route_dicts``, ``_get_starting_lane``, ``_get_intersecting_lanes``,
``_get_discrete_centerline``), ``utils/route_utils.py`` (``route_roadblock_correction``,
``get_current_roadblock_candidates``, ``remove_route_loops``), ``utils/graph_search/bfs_roadblock.py`` and
``utils/graph_search/dijkstra.py``, including their tie-breaking and search-order quirks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError
from navsim_eval.geometry import ego_corners_and_center
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap
from navsim_eval.maps.nuplan_map import Lane, LaneConnector, NuPlanMap, Roadblock, RoadblockConnector, SemanticMapLayer
from navsim_eval.scene import EgoState
from navsim_eval.vehicle import PACIFICA, VehicleParameters

RouteBlock = Roadblock | RoadblockConnector
RouteLane = Lane | LaneConnector

SEARCH_DEPTH_BACKWARD = 15
SEARCH_DEPTH_FORWARD = 30
CENTERLINE_SEARCH_DEPTH = 30  # roadblocks in the Dijkstra window
HEADING_ERROR_THRESHOLD = np.pi / 4
DISPLACEMENT_ERROR_THRESHOLD = 3.0
CANDIDATE_QUERY_RADIUS = 1.0
DRIVABLE_MAP_RADIUS = 100.0  # the metric cache's map radius


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Node = TypeVar("Node", bound=_HasId)


@dataclass(frozen=True)
class SceneMapInputs:
    """The map-derived inputs of a metric cache (``build_metric_cache``'s map arguments and more)."""

    drivable_map: DrivableMap
    route_lane_ids: list[str]  # of the corrected route, in route order
    centerline: Centerline
    speed_limit_mps: float | None  # of the starting lane (None: PDM-Closed falls back to 15 m/s)
    uncorrected_route_lane_ids: list[str]  # of the logged route (official main filters red lights with these)
    route_roadblock_ids: list[str]  # corrected
    starting_lane_id: str


def _normalize_angle(angle: np.ndarray | float) -> np.ndarray | float:
    return np.arctan2(np.sin(angle), np.cos(angle))


def lookup_route(nuplan_map: NuPlanMap, roadblock_ids: list[str]) -> dict[str, RouteBlock]:
    """De-duplicate the ids keeping order and look each up as ROADBLOCK, else ROADBLOCK_CONNECTOR."""
    route: dict[str, RouteBlock] = {}
    for roadblock_id in dict.fromkeys(str(i) for i in roadblock_ids):
        block = nuplan_map.roadblock(roadblock_id) or nuplan_map.roadblock_connector(roadblock_id)
        if block is None:
            raise InvalidSceneError(
                f"{nuplan_map.path}: route roadblock {roadblock_id!r} is neither a roadblock nor a roadblock connector"
            )
        route[block.id] = block
    return route


def route_lanes(route: dict[str, RouteBlock]) -> dict[str, RouteLane]:
    """The interior lanes and lane connectors of the route blocks, in route order."""
    return {lane.id: lane for block in route.values() for lane in block.interior()}


def _roadblock_like(nuplan_map: NuPlanMap, block_id: str) -> RouteBlock | None:
    return nuplan_map.roadblock(block_id) or nuplan_map.roadblock_connector(block_id)


def breadth_first_search(
    start: Node, target_ids: set[str], max_depth: int, neighbours: Callable[[Node], Sequence[Node]]
) -> list[Node] | None:
    """``BreadthFirstSearchRoadBlock.search`` on any graph: the path start -> first target found, None if none.

    The official search queues an edge again each time it is reached (no visited set) and keeps, per (id, depth),
    the parent written last. Both are reproduced level by level without the duplicates: targets are checked in
    order of first queue entry and a node's parent is the predecessor whose last queue entry comes last.
    """
    level: list[Node] = [start]  # distinct nodes in order of first queue entry
    last_order: list[Node] = [start]  # the same nodes in order of last queue entry
    parents: list[dict[str, Node]] = [{}]
    for _depth in range(1, max_depth + 1):
        goal = next((node for node in level if node.id in target_ids), None)
        if goal is not None:
            path = [goal]
            for depth_parents in reversed(parents[1:]):
                path.append(depth_parents[path[-1].id])
            return path[::-1]
        next_level: dict[str, Node] = {}
        for node in level:
            for neighbour in neighbours(node):
                next_level.setdefault(neighbour.id, neighbour)
        if not next_level:
            return None
        next_parents: dict[str, Node] = {}
        next_last: dict[str, Node] = {}
        for node in last_order:
            for neighbour in neighbours(node):
                next_parents[neighbour.id] = node
                next_last.pop(neighbour.id, None)
                next_last[neighbour.id] = neighbour
        level, last_order = list(next_level.values()), list(next_last.values())
        parents.append(next_parents)
    return None


def bfs_roadblocks(
    nuplan_map: NuPlanMap, start_id: str, target_ids: str | list[str], max_depth: int, forward: bool = True
) -> list[RouteBlock] | None:
    """Roadblock-graph BFS from ``start_id`` (roadblock, else connector) to a target; the path is returned in
    driving direction for both search directions, as the official search returns it."""
    start = _roadblock_like(nuplan_map, start_id)
    if start is None:
        raise InvalidSceneError(f"{nuplan_map.path}: roadblock {start_id!r} not found for the route search")
    targets = {target_ids} if isinstance(target_ids, str) else set(target_ids)
    if forward:
        return breadth_first_search(start, targets, max_depth, lambda block: block.outgoing())
    path = breadth_first_search(start, targets, max_depth, lambda block: block.incoming())
    return None if path is None else path[::-1]


def current_roadblock_candidates(
    nuplan_map: NuPlanMap, rear_axle: np.ndarray, route: dict[str, RouteBlock]
) -> tuple[RouteBlock, list[RouteBlock]]:
    """``get_current_roadblock_candidates``: the most promising block under the ego and all candidates."""
    layers = [SemanticMapLayer.ROADBLOCK, SemanticMapLayer.ROADBLOCK_CONNECTOR]
    point = rear_axle[:2]
    nearby = nuplan_map.get_proximal_map_objects(point, CANDIDATE_QUERY_RADIUS, layers)
    candidates: list[RouteBlock] = nearby[layers[0]] + nearby[layers[1]]
    if not candidates:
        for layer in layers:
            nearest_id, _ = nuplan_map.get_distance_to_nearest_map_object(point, layer)
            block = nuplan_map.get_map_object(nearest_id, layer) if nearest_id is not None else None
            if block is not None:
                candidates.append(block)
    if not candidates:
        raise InvalidSceneError(f"{nuplan_map.path}: the map has no roadblocks to start the route from")

    on_route, on_route_errors, off_route, off_route_errors = [], [], [], []
    block_displacement_errors = []
    for block in candidates:
        best_displacement = np.inf
        for lane in block.interior():
            path = lane.baseline_path.discrete_path
            distances = ((path[:, :2] - point[None, :]) ** 2.0).sum(axis=-1) ** 0.5
            nearest = np.argmin(distances)
            heading_error = np.abs(_normalize_angle(path[nearest, 2] - rear_axle[2]))
            displacement = distances[nearest]
            best_displacement = min(best_displacement, displacement)
            if heading_error < HEADING_ERROR_THRESHOLD and displacement < DISPLACEMENT_ERROR_THRESHOLD:
                if block.id in route:
                    on_route.append(block)
                    on_route_errors.append(displacement)
                else:
                    off_route.append(block)
                    off_route_errors.append(displacement)
        block_displacement_errors.append(best_displacement)
    if on_route:
        return on_route[int(np.argmin(on_route_errors))], on_route
    if off_route:
        return off_route[int(np.argmin(off_route_errors))], off_route
    return candidates[int(np.argmin(block_displacement_errors))], candidates


def remove_route_loops(blocks: list[RouteBlock]) -> list[RouteBlock]:
    """Cut the route at the first roadblock connector overlapping (area > 1 m²) an earlier one on the route."""
    seen: dict[str, shapely.Geometry] = {}
    for index, block in enumerate(blocks):
        if not isinstance(block, RoadblockConnector):
            continue
        if seen and any(block.polygon.intersection(other).area > 1 for other in seen.values()):
            return blocks[:index]
        seen[block.id] = block.polygon
    return blocks


def route_roadblock_correction(nuplan_map: NuPlanMap, rear_axle: np.ndarray, route: dict[str, RouteBlock]) -> list[str]:
    """``route_roadblock_correction``: prepend a path when the ego starts off-route, fill gaps, cut loops."""
    rear_axle = np.asarray(rear_axle, dtype=np.float64)
    starting_block, starting_candidates = current_roadblock_candidates(nuplan_map, rear_axle, route)
    starting_ids = [block.id for block in starting_candidates]
    blocks = list(route.values())
    ids = list(route.keys())

    # Fix 1: the ego starts off-route
    if starting_block.id not in ids:
        path = bfs_roadblocks(nuplan_map, ids[0], starting_ids, SEARCH_DEPTH_BACKWARD, forward=False)
        if path is not None:
            blocks[:0] = path[:-1]
            ids[:0] = [block.id for block in path[:-1]]
        else:
            path = bfs_roadblocks(nuplan_map, starting_block.id, ids[:3], SEARCH_DEPTH_FORWARD, forward=True)
            if path is not None:
                end = ids.index(path[-1].id)
                blocks = path + blocks[end + 1 :]
                ids = [block.id for block in path] + ids[end + 1 :]

    # Fix 2: link consecutive blocks that are not connected
    insertions: dict[int, list[RouteBlock]] = {}
    for i in range(len(blocks) - 1):
        if ids[i] in blocks[i + 1].incoming_edges:
            continue
        path = bfs_roadblocks(nuplan_map, ids[i], ids[i + 1], SEARCH_DEPTH_FORWARD, forward=True)
        if path is not None and len(path) >= 3:
            insertions[i] = path[1:-1]
    offset = 1
    for i, path in insertions.items():
        blocks[i + offset : i + offset] = path
        ids[i + offset : i + offset] = [block.id for block in path]
        offset += len(path)

    # Fix 3: cut route loops
    return [block.id for block in remove_route_loops(blocks)]


def _intersecting_route_lanes(
    drivable_map: DrivableMap, rear_axle: np.ndarray, lanes: dict[str, RouteLane]
) -> tuple[list[RouteLane], list[float]]:
    """``_get_intersecting_lanes``: route lanes whose polygon intersects the rear axle, with heading errors.

    The candidates come in the order of an STRtree (node capacity 10) query over the drivable-map polygons, as in
    ``PDMOccupancyMap.intersects``; the order decides ties of the heading error.
    """
    tree = shapely.STRtree(drivable_map.polygons, node_capacity=10)
    indices = tree.query(shapely.Point(rear_axle[0], rear_axle[1]), predicate="intersects")
    found, errors = [], []
    for index in indices:
        lane = lanes.get(drivable_map.tokens[index])
        if lane is None:
            continue
        path = lane.baseline_path.discrete_path
        distances = ((rear_axle[None, :2] - path[:, :2]) ** 2).sum(axis=-1) ** 0.5
        heading_error = path[np.argmin(distances), 2] - rear_axle[2]
        found.append(lane)
        errors.append(float(np.abs(_normalize_angle(heading_error))))
    return found, errors


def starting_lane(
    drivable_map: DrivableMap, ego: EgoState, lanes: dict[str, RouteLane], vehicle: VehicleParameters = PACIFICA
) -> RouteLane:
    """``_get_starting_lane``: the intersecting route lane with the smallest heading error, else the first route
    lane containing the ego centre, else the route lane closest to the ego footprint."""
    candidates, errors = _intersecting_route_lanes(drivable_map, ego.pose, lanes)
    if candidates:
        return candidates[int(np.argmin(np.abs(errors)))]
    corners_and_center = ego_corners_and_center(ego.pose, vehicle)
    footprint = shapely.Polygon(corners_and_center[:4])
    center_point = shapely.Point(corners_and_center[4])
    chosen, closest = None, np.inf
    for lane in lanes.values():
        if lane.polygon is None:
            raise InvalidSceneError(f"route lane {lane.id} has no polygon")
        if lane.polygon.contains(center_point):
            return lane
        distance = lane.polygon.distance(footprint)
        if distance < closest:
            chosen, closest = lane, distance
    if chosen is None:
        raise InvalidSceneError("the route has no lanes to start the centerline from")
    return chosen


def dijkstra_lanes(
    nuplan_map: NuPlanMap, start: RouteLane, candidate_ids: list[str], target_block_id: str
) -> tuple[list[RouteLane], bool]:
    """NAVSIM's ``Dijkstra.search`` over lane graph edges within ``candidate_ids`` to any lane of the target block.

    Reproduced as written: costs start at 1 and add the baseline length of each entered edge, the queue pops the
    first minimum, expanded edges are never relaxed; without a path it returns the cheapest deepest expansion.
    """
    candidates = set(candidate_ids)
    queue, frontier, dist, depth = [start], [start.id], [1.0], [1]
    parent: dict[str, RouteLane | None] = {start.id: None}
    expanded, expanded_ids, expanded_dist, expanded_depth = [], set(), [], []
    end, found = start, False
    while queue:
        current_dist, index = min((value, i) for i, value in enumerate(dist))
        current, current_depth = queue[index], depth[index]
        del dist[index], queue[index], frontier[index], depth[index]
        if current.get_roadblock_id() == target_block_id:
            end, found = current, True
            break
        expanded.append(current)
        expanded_ids.add(current.id)
        expanded_dist.append(current_dist)
        expanded_depth.append(current_depth)
        for edge in current.outgoing():
            if edge.id not in candidates:
                continue
            alternative = current_dist + edge.baseline_path.length
            if edge.id not in expanded_ids and edge.id not in frontier:
                parent[edge.id] = current
                queue.append(edge)
                frontier.append(edge.id)
                dist.append(alternative)
                depth.append(current_depth + 1)
            elif edge.id in frontier:
                at = frontier.index(edge.id)
                if alternative < dist[at]:
                    parent[edge.id] = current
                    dist[at] = alternative
                    depth[at] = current_depth + 1
    if not found:
        deepest = max(expanded_depth)
        at_deepest = [i for i, d in enumerate(expanded_depth) if d == deepest]
        _, best = min((expanded_dist[i], k) for k, i in enumerate(at_deepest))
        end = expanded[at_deepest[best]]
    path = [end]
    while parent[path[-1].id] is not None:
        path.append(parent[path[-1].id])
    return path[::-1], found


def discrete_centerline(
    nuplan_map: NuPlanMap, start: RouteLane, route: dict[str, RouteBlock], lanes: dict[str, RouteLane]
) -> np.ndarray:
    """``_get_discrete_centerline``: the concatenated baseline poses [M, 3] of the Dijkstra lane path to the end of
    the 30-roadblock window that starts at the starting lane's roadblock (joint points kept twice)."""
    block_ids = list(route.keys())
    start_index = block_ids.index(start.get_roadblock_id()) if start.get_roadblock_id() in block_ids else 0
    window = block_ids[start_index : start_index + CENTERLINE_SEARCH_DEPTH]
    path, _ = dijkstra_lanes(nuplan_map, start, list(lanes.keys()), window[-1])
    return np.concatenate([lane.baseline_path.discrete_path for lane in path], axis=0)


def scene_map_inputs(
    nuplan_map: NuPlanMap,
    ego: EgoState,
    roadblock_ids: list[str],
    radius: float = DRIVABLE_MAP_RADIUS,
    vehicle: VehicleParameters = PACIFICA,
) -> SceneMapInputs:
    """Everything the metric cache takes from the map for the current frame, as NAVSIM's PDM-Closed computes it:
    route lookup, route correction at the rear axle, drivable map around the ego centre, starting lane, centerline
    and the starting lane's speed limit."""
    if not roadblock_ids:
        raise InvalidSceneError("roadblock_ids is empty: the scene has no route (NAVSIM filters such scenes)")
    route = lookup_route(nuplan_map, roadblock_ids)
    uncorrected_lane_ids = list(route_lanes(route))
    corrected_ids = route_roadblock_correction(nuplan_map, ego.pose, route)
    route = lookup_route(nuplan_map, corrected_ids)
    lanes = route_lanes(route)
    if not lanes:
        raise InvalidSceneError(f"{nuplan_map.path}: the corrected route {corrected_ids} has no lanes")
    drivable_map = nuplan_map.drivable_map_around(ego_corners_and_center(ego.pose, vehicle)[4], radius)
    start = starting_lane(drivable_map, ego, lanes, vehicle)
    centerline = Centerline(discrete_centerline(nuplan_map, start, route, lanes))
    return SceneMapInputs(
        drivable_map=drivable_map,
        route_lane_ids=list(lanes),
        centerline=centerline,
        speed_limit_mps=start.speed_limit_mps,
        uncorrected_route_lane_ids=uncorrected_lane_ids,
        route_roadblock_ids=list(route),
        starting_lane_id=start.id,
    )
