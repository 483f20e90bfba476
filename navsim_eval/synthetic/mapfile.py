"""Write the synthetic town as a nuPlan GeoPackage map, so the real map reader loads it."""

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
from navsim_eval.maps.locations import MAP_VERSIONS, register_map
from navsim_eval.synthetic.network import RoadNetwork

SYNTHETIC_LOCATION = "synthetic-town"
PROJECTED_CRS = "epsg:32617"  # UTM zone 17N: the town sits at UTM-like coordinates
_TURN_TYPES = {"straight": 0, "left": 1, "right": 2}
STOP_LINE_DEPTH = 0.5


def map_spec(network: RoadNetwork) -> MapSpec:
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
        stop_lines=stop_lines,
        projected_crs=PROJECTED_CRS,
    )


def write_town_map(network: RoadNetwork, maps_root: str | Path, location: str = SYNTHETIC_LOCATION) -> Path:
    """Write ``map.gpkg`` where the map reader looks for ``location`` under ``maps_root``; returns its path."""
    path = register_map(maps_root, location, MAP_VERSIONS[location])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_map(map_spec(network), path, overwrite=True)
