"""A small nuPlan-schema road network for the map tests, written with our GeoPackage writer.

Driving direction +x. Roadblocks A=100 (x 0..50), B=101 (x 60..110), C=102 (x 120..170), all y -4..4, each with a
left lane (index 0, y 0..4) and a right lane (index 1, y -4..0); roadblock connectors AB=300 and BC=301 between
them. Lane connector 13 changes lanes inside AB (right lane 2 -> left lane 3). A side road D=105 (y 40..48) joins
C through connector 302. Far roadblock 104 and two car parks far away test the query extents.
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
    write_map,
)


def rect(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def line(x0: float, y0: float, x1: float, y1: float, step: float = 1.0) -> np.ndarray:
    n = max(2, round(np.hypot(x1 - x0, y1 - y0) / step) + 1)
    return np.column_stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)])


def lane(lane_id: int, roadblock: int, index: int, x0: float, x1: float, speed: float | None = None) -> LaneSpec:
    y0, y1 = (0.0, 4.0) if index == 0 else (-4.0, 0.0)
    yc = (y0 + y1) / 2
    return LaneSpec(lane_id, roadblock, index, rect(x0, x1, y0, y1), line(x0, yc, x1, yc), speed_limit_mps=speed)


def connector(lc_id: int, exit_lane: int, entry_lane: int, rc: int, start: tuple, end: tuple) -> LaneConnectorSpec:
    baseline = line(*start, *end)
    polygon = shapely.LineString(baseline).buffer(2.0, cap_style="flat")
    return LaneConnectorSpec(lc_id, exit_lane, entry_lane, rc, polygon, baseline, speed_limit_mps=15.0)


def road_spec() -> MapSpec:
    return MapSpec(
        lanes=[
            lane(1, 100, 0, 0, 50),
            lane(2, 100, 1, 0, 50, speed=13.4),
            lane(3, 101, 0, 60, 110),
            lane(4, 101, 1, 60, 110),
            lane(5, 102, 0, 120, 170),
            lane(6, 102, 1, 120, 170),
            lane(7, 104, 0, 1000, 1050),
            LaneSpec(8, 105, 0, rect(60, 110, 40, 48), line(60, 44, 110, 44)),
        ],
        lane_connectors=[
            connector(11, 1, 3, 300, (50, 2), (60, 2)),
            connector(13, 2, 3, 300, (50, -2), (60, 2)),
            connector(14, 3, 5, 301, (110, 2), (120, 2)),
            connector(15, 4, 6, 301, (110, -2), (120, -2)),
            connector(16, 8, 5, 302, (110, 44), (120, 2)),
        ],
        roadblocks=[
            RoadblockSpec(100, rect(0, 50, -4, 4)),
            RoadblockSpec(101, rect(60, 110, -4, 4)),
            RoadblockSpec(102, rect(120, 170, -4, 4)),
            RoadblockSpec(104, rect(1000, 1050, -4, 4)),
            RoadblockSpec(105, rect(60, 110, 40, 48)),
        ],
        roadblock_connectors=[
            RoadblockConnectorSpec(300, 100, 101, rect(50, 60, -4, 4), intersection_id=500),
            RoadblockConnectorSpec(301, 101, 102, rect(110, 120, -4, 4), intersection_id=501),
            RoadblockConnectorSpec(302, 105, 102, [(110, 40), (120, 4.5), (120, 8), (110, 48)]),
        ],
        intersections=[AreaSpec(500, rect(50, 60, -6, 6)), AreaSpec(501, rect(110, 120, -6, 6))],
        carpark_areas=[
            AreaSpec(600, rect(20, 40, 10, 30), heading=0.5),
            AreaSpec(601, rect(208, 209, 208, 209)),  # inside the 10 m square around (200, 200), not the circle
            AreaSpec(602, rect(211, 212, 200, 201)),  # outside the square
        ],
    )


def write_road(path: Path, **kwargs: object) -> Path:
    return write_map(road_spec(), path, **kwargs)
