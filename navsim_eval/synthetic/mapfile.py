"""Write the synthetic towns as nuPlan GeoPackage maps, so the real map reader (and nuPlan's) loads them.

A maps root written here looks like the released one: ``nuplan-maps-v1.0.json`` and a folder for each of the four
locations (``<location>/<version>/map.gpkg``), because nuPlan's ``GPKGMapsDB`` opens all four. A location without a
town gets a small placeholder map (a one-lane triangle far from anything).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from navsim_eval.maps.gpkg_writer import (
    AreaSpec,
    LaneConnectorSpec,
    LaneSpec,
    MapSpec,
    RoadblockConnectorSpec,
    RoadblockSpec,
    StopLineSpec,
    write_map,
)
from navsim_eval.maps.locations import MAP_LOCATIONS, MAP_VERSIONS, PROJECTED_CRS, register_map
from navsim_eval.synthetic.network import NodeSpec, RoadNetwork, RoadSpec, TownLayout, build_network

_TURN_TYPES = {"straight": 0, "left": 1, "right": 2}
STOP_LINE_DEPTH = 0.5


def map_spec(network: RoadNetwork, projected_crs: str) -> MapSpec:
    """The town in the nuPlan map schema: lanes, lane connectors, lane groups and their connectors, intersections,
    car parks and traffic-light stop lines."""
    lanes, connectors, stop_lines = [], [], []
    roadblocks, roadblock_connectors = [], []
    stop_line_of_lane: dict[str, int] = {}
    next_stop_id = max(int(i) for i in network.lanes) + 100_000
    signalised = {c for group in network.lights for c in group.connector_ids}
    for lane in network.lanes.values():
        if lane.is_connector or not any(s in signalised for s in lane.successors):
            continue
        end = lane.centerline[-1]
        across = np.array([-np.sin(end[2]), np.cos(end[2])]) * lane.width / 2.0
        back = np.array([np.cos(end[2]), np.sin(end[2])]) * STOP_LINE_DEPTH
        corners = [end[:2] + across, end[:2] - across, end[:2] - across - back, end[:2] + across - back]
        stop_id = next_stop_id = next_stop_id + 1
        stop_line_of_lane[lane.id] = stop_id
        stop_lines.append(
            StopLineSpec(
                stop_id, shapely.Polygon(corners), 2, int(lane.roadblock_id), tuple(int(s) for s in lane.successors)
            )
        )

    for lane in network.lanes.values():
        baseline = lane.centerline[:, :2]
        if lane.is_connector:
            roadblock = network.roadblocks[lane.roadblock_id]
            stop = stop_line_of_lane.get(lane.predecessors[0])
            connectors.append(
                LaneConnectorSpec(
                    id=int(lane.id),
                    exit_lane_id=int(lane.predecessors[0]),
                    entry_lane_id=int(lane.successors[0]),
                    roadblock_connector_id=int(lane.roadblock_id),
                    polygon=lane.polygon,
                    baseline=baseline,
                    speed_limit_mps=lane.speed_limit,
                    traffic_light_stop_line_ids=(stop,) if stop is not None and lane.id in signalised else (),
                    intersection_id=int(roadblock.intersection_id) if roadblock.intersection_id else None,
                    turn_type=_TURN_TYPES[lane.turn],
                )
            )
        else:
            lanes.append(
                LaneSpec(
                    id=int(lane.id),
                    roadblock_id=int(lane.roadblock_id),
                    lane_index=lane.lane_index,
                    polygon=lane.polygon,
                    baseline=baseline,
                    speed_limit_mps=lane.speed_limit,
                    width=lane.width,
                )
            )
    for roadblock in network.roadblocks.values():
        if roadblock.is_connector:
            first = network.lanes[roadblock.lane_ids[0]]
            roadblock_connectors.append(
                RoadblockConnectorSpec(
                    id=int(roadblock.id),
                    from_roadblock_id=int(network.lanes[first.predecessors[0]].roadblock_id),
                    to_roadblock_id=int(network.lanes[first.successors[0]].roadblock_id),
                    polygon=roadblock.polygon,
                    intersection_id=int(roadblock.intersection_id) if roadblock.intersection_id else None,
                )
            )
        else:
            roadblocks.append(RoadblockSpec(int(roadblock.id), roadblock.polygon))
    return MapSpec(
        lanes=lanes,
        lane_connectors=connectors,
        roadblocks=roadblocks,
        roadblock_connectors=roadblock_connectors,
        intersections=[AreaSpec(int(i), polygon) for i, polygon in network.intersections.items()],
        carpark_areas=[AreaSpec(int(i), polygon, heading=0.0) for i, polygon in network.carparks.items()],
        crosswalks=[AreaSpec(int(i), polygon) for i, polygon in network.crosswalks.items()],
        stop_lines=stop_lines,
        projected_crs=projected_crs,
    )


def write_town_map(network: RoadNetwork, maps_root: str | Path, location: str) -> Path:
    """Write ``map.gpkg`` where the map reader looks for ``location`` under ``maps_root`` (in the location's UTM
    zone) and record it in ``nuplan-maps-v1.0.json``; returns its path."""
    path = register_map(maps_root, location, MAP_VERSIONS[location])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_map(map_spec(network, PROJECTED_CRS[location]), path, overwrite=True)


def placeholder_network(origin: tuple[float, float]) -> RoadNetwork:
    """A one-lane triangle of roads with yield junctions: the smallest valid map, for locations without a town."""
    nodes = {"a": NodeSpec(0.0, 0.0, "yield"), "b": NodeSpec(120.0, 0.0, "yield"), "c": NodeSpec(60.0, 100.0, "yield")}
    roads = [RoadSpec("a", "b"), RoadSpec("b", "c"), RoadSpec("c", "a")]
    return build_network(TownLayout(nodes, roads), origin)


PLACEHOLDER_ORIGINS = {  # UTM coordinates inside each city's zone, away from the towns
    "sg-one-north": (360_000.0, 150_000.0),
    "us-ma-boston": (325_000.0, 4_700_000.0),
    "us-nv-las-vegas-strip": (660_000.0, 4_005_000.0),
    "us-pa-pittsburgh-hazelwood": (580_000.0, 4_485_000.0),
}


def write_maps_root(maps_root: str | Path, networks: dict[str, RoadNetwork]) -> dict[str, Path]:
    """Write a map for each of nuPlan's four locations: the town given for it, else a placeholder."""
    unknown = sorted(set(networks) - set(MAP_LOCATIONS))
    if unknown:
        raise ValueError(f"write_maps_root: {unknown} are not nuPlan locations; expected some of {list(MAP_LOCATIONS)}")
    return {
        location: write_town_map(
            networks.get(location) or placeholder_network(PLACEHOLDER_ORIGINS[location]), maps_root, location
        )
        for location in MAP_LOCATIONS
    }
