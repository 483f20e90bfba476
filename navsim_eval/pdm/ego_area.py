"""Where the ego box is at each step: straddling lanes, off the drivable area, outside the route's lanes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_eval.maps.drivable import DRIVABLE_LAYERS, LANE_LAYERS, DrivableMap, MapLayer


@dataclass
class EgoAreas:
    """Flags per proposal and step [K, T] (NAVSIM's EgoAreaIndex) and the centre-in-intersection flag."""

    multiple_lanes: np.ndarray
    non_drivable_area: np.ndarray
    oncoming_traffic: np.ndarray
    center_in_intersection: np.ndarray
    rear_axle_in_intersection: np.ndarray


def ego_areas(
    coords: np.ndarray, rear_axle: np.ndarray, drivable_map: DrivableMap, route_lane_ids: tuple[str, ...]
) -> EgoAreas:
    """Classify ego boxes given as corners + centre [K, T, 5, 2] (and rear axles [K, T, 2]) against the map.

    * multiple lanes: more than one lane / lane-connector polygon holds a corner and none holds all four;
    * non-drivable: some corner is inside no roadblock, intersection or car-park polygon;
    * oncoming traffic: the centre is inside no on-route lane or lane connector.
    Boundary points count as outside, as with shapely's ``contains``.
    """
    lanes = drivable_map.layer_mask(LANE_LAYERS)
    drivable = drivable_map.layer_mask(DRIVABLE_LAYERS)
    on_route = lanes & drivable_map.token_mask(route_lane_ids)
    intersections = drivable_map.layer_mask([MapLayer.INTERSECTION])
    points = np.concatenate([coords, rear_axle[..., None, :]], axis=-2)  # [K, T, 6, 2]
    inside = drivable_map.points_in_polygons(points.reshape(-1, 2), lanes | drivable | intersections)
    inside = inside.reshape((len(drivable_map), *points.shape[:-1]))  # [P, K, T, 6]
    corners, center, axle = inside[..., :4], inside[..., 4], inside[..., 5]

    lane_corners = corners[lanes]  # [L, K, T, 4]
    lane_hits = lane_corners.any(axis=-1).sum(axis=0)
    no_lane_holds_all = ~lane_corners.all(axis=-1).any(axis=0)
    corner_on_drivable = corners[drivable].any(axis=0)  # [K, T, 4]
    return EgoAreas(
        multiple_lanes=(lane_hits > 1) & no_lane_holds_all,
        non_drivable_area=~corner_on_drivable.all(axis=-1),
        oncoming_traffic=~center[on_route].any(axis=0),
        center_in_intersection=center[intersections].any(axis=0),
        rear_axle_in_intersection=axle[intersections].any(axis=0),
    )
