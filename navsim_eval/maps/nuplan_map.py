"""nuPlan's vector map API over one ``map.gpkg``: map objects, the lane/roadblock graph and spatial queries.

Mirrors ``nuplan/common/maps/nuplan_map/{nuplan_map,lane,lane_connector,roadblock,roadblock_connector}.py``
(devkit v1.2): ids are the table ``fid`` as strings, graph edges are built from the foreign-key columns in table
order, ``get_proximal_map_objects`` returns the rows whose geometry intersects the axis-aligned square
[x ± r] × [y ± r] (in table order), and lane-connector polygons come from
``gen_lane_connectors_scaled_width_polygons`` while the ``lane_connectors`` layer itself holds line strings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps import gpkg
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.maps.gpkg import GeoPackage, GpkgTable

Point = Sequence[float] | np.ndarray
T = TypeVar("T")


class SemanticMapLayer(IntEnum):
    """nuPlan's ``SemanticMapLayer`` values."""

    LANE = 0
    INTERSECTION = 1
    STOP_LINE = 2
    TURN_STOP = 3
    CROSSWALK = 4
    DRIVABLE_AREA = 5
    YIELD = 6
    TRAFFIC_LIGHT = 7
    STOP_SIGN = 8
    EXTENDED_PUDO = 9
    SPEED_BUMP = 10
    LANE_CONNECTOR = 11
    BASELINE_PATHS = 12
    BOUNDARIES = 13
    WALKWAYS = 14
    CARPARK_AREA = 15
    PUDO = 16
    ROADBLOCK = 17
    ROADBLOCK_CONNECTOR = 18


# Table behind each layer (nuPlan's ``_vector_layer_mapping``); LANE_CONNECTOR is the line-string table.
LAYER_TABLES = {
    SemanticMapLayer.LANE: gpkg.LANES,
    SemanticMapLayer.ROADBLOCK: gpkg.ROADBLOCKS,
    SemanticMapLayer.INTERSECTION: gpkg.INTERSECTIONS,
    SemanticMapLayer.STOP_LINE: gpkg.STOP_LINES,
    SemanticMapLayer.CROSSWALK: gpkg.CROSSWALKS,
    SemanticMapLayer.LANE_CONNECTOR: gpkg.LANE_CONNECTORS,
    SemanticMapLayer.ROADBLOCK_CONNECTOR: gpkg.ROADBLOCK_CONNECTORS,
    SemanticMapLayer.BASELINE_PATHS: gpkg.BASELINE_PATHS,
    SemanticMapLayer.BOUNDARIES: gpkg.BOUNDARIES,
    SemanticMapLayer.WALKWAYS: gpkg.WALKWAYS,
    SemanticMapLayer.CARPARK_AREA: gpkg.CARPARK_AREAS,
}
# nuPlan's DRIVABLE_AREA layer is the concatenation of these tables.
DRIVABLE_AREA_TABLES = (gpkg.ROAD_SEGMENTS, gpkg.INTERSECTIONS, gpkg.GENERIC_DRIVABLE_AREAS, gpkg.CARPARK_AREAS)
# Layers with map objects (``get_available_map_objects``, less PUDO which has no table in the released maps).
OBJECT_LAYERS = (
    SemanticMapLayer.LANE,
    SemanticMapLayer.LANE_CONNECTOR,
    SemanticMapLayer.ROADBLOCK,
    SemanticMapLayer.ROADBLOCK_CONNECTOR,
    SemanticMapLayer.STOP_LINE,
    SemanticMapLayer.CROSSWALK,
    SemanticMapLayer.INTERSECTION,
    SemanticMapLayer.WALKWAYS,
    SemanticMapLayer.CARPARK_AREA,
)
_POLYGON_OBJECT_LAYERS = (
    SemanticMapLayer.INTERSECTION,
    SemanticMapLayer.CARPARK_AREA,
    SemanticMapLayer.CROSSWALK,
    SemanticMapLayer.WALKWAYS,
    SemanticMapLayer.STOP_LINE,
)


def _map_id(value: object) -> str | None:
    """Table value -> map id string (``"123"``), None for NULL/NaN."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return str(int(value))


def _single_id(value: object) -> tuple[str, ...]:
    """A one-edge tuple from a foreign-key value (empty for NULL)."""
    map_id = _map_id(value)
    return () if map_id is None else (map_id,)


def _optional_int(value: object) -> int | None:
    map_id = _map_id(value)
    return None if map_id is None else int(map_id)


def _optional_float(value: object) -> float | None:
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return float(value)


def discrete_path(linestring: shapely.LineString) -> np.ndarray:
    """One pose per vertex [N, 3]; heading = direction to the next vertex, the last repeats the previous."""
    coords = shapely.get_coordinates(linestring)
    if linestring.length <= 0.0:
        raise InvalidSceneError("a baseline path must have a positive length")
    vectors = np.diff(coords, axis=0)
    headings = np.arctan2(vectors[:, 1], vectors[:, 0])
    headings = np.append(headings, headings[-1])
    return np.column_stack([coords, headings])


@dataclass(frozen=True, eq=False)
class BaselinePath:
    """A lane's or lane connector's centre polyline in the driving direction."""

    id: str
    linestring: shapely.LineString

    @property
    def length(self) -> float:
        return float(self.linestring.length)

    @cached_property
    def discrete_path(self) -> np.ndarray:
        return discrete_path(self.linestring)


@dataclass(frozen=True, eq=False)
class _MapObject:
    id: str
    polygon: shapely.Geometry
    _map: NuPlanMap = field(repr=False)

    layer: ClassVar[SemanticMapLayer]

    def contains_point(self, point: Point) -> bool:
        """Whether the point lies strictly inside the polygon (shapely ``contains``)."""
        return bool(self.polygon.contains(shapely.Point(point[0], point[1])))


@dataclass(frozen=True, eq=False)
class _LaneGraphEdge(_MapObject):
    """What lanes and lane connectors share: a parent roadblock (connector) and a centre polyline."""

    roadblock_id: str | None

    def get_roadblock_id(self) -> str | None:
        return self.roadblock_id

    @property
    def baseline_path(self) -> BaselinePath:
        return self._map.baseline_path(self.id, self.layer)


@dataclass(frozen=True, eq=False)
class Lane(_LaneGraphEdge):
    """A lane of a roadblock; ``incoming_edges``/``outgoing_edges`` are lane-connector ids."""

    index: int | None  # 0 = leftmost lane of the roadblock
    speed_limit_mps: float | None
    incoming_edges: tuple[str, ...]
    outgoing_edges: tuple[str, ...]
    left_boundary_id: str | None
    right_boundary_id: str | None

    layer: ClassVar[SemanticMapLayer] = SemanticMapLayer.LANE

    @property
    def parent(self) -> Roadblock | None:
        return self._map.roadblock(self.roadblock_id) if self.roadblock_id else None

    def incoming(self) -> list[LaneConnector]:
        return self._map._resolve(self.incoming_edges, self._map.lane_connector)

    def outgoing(self) -> list[LaneConnector]:
        return self._map._resolve(self.outgoing_edges, self._map.lane_connector)


@dataclass(frozen=True, eq=False)
class LaneConnector(_LaneGraphEdge):
    """A lane connector; ``incoming_edges`` = (exit lane,), ``outgoing_edges`` = (entry lane,). Its polygon comes
    from the generated polygon table (None when that row is missing)."""

    speed_limit_mps: float | None
    incoming_edges: tuple[str, ...]
    outgoing_edges: tuple[str, ...]
    stop_line_ids: tuple[str, ...]
    intersection_id: str | None

    layer: ClassVar[SemanticMapLayer] = SemanticMapLayer.LANE_CONNECTOR

    @property
    def parent(self) -> RoadblockConnector | None:
        return self._map.roadblock_connector(self.roadblock_id) if self.roadblock_id else None

    def has_traffic_lights(self) -> bool:
        return bool(self.stop_line_ids)

    def incoming(self) -> list[Lane]:
        return self._map._resolve(self.incoming_edges, self._map.lane)

    def outgoing(self) -> list[Lane]:
        return self._map._resolve(self.outgoing_edges, self._map.lane)

    def contains_point(self, point: Point) -> bool:
        return self.polygon is not None and super().contains_point(point)


@dataclass(frozen=True, eq=False)
class Roadblock(_MapObject):
    """A roadblock (lane group): its lanes (``interior_edges``) and roadblock connectors in and out."""

    interior_edges: tuple[str, ...]
    incoming_edges: tuple[str, ...]
    outgoing_edges: tuple[str, ...]

    layer: ClassVar[SemanticMapLayer] = SemanticMapLayer.ROADBLOCK

    def interior(self) -> list[Lane]:
        return self._map._resolve(self.interior_edges, self._map.lane)

    def incoming(self) -> list[RoadblockConnector]:
        return self._map._resolve(self.incoming_edges, self._map.roadblock_connector)

    def outgoing(self) -> list[RoadblockConnector]:
        return self._map._resolve(self.outgoing_edges, self._map.roadblock_connector)


@dataclass(frozen=True, eq=False)
class RoadblockConnector(_MapObject):
    """A roadblock connector (lane group connector): its lane connectors and the roadblocks it joins."""

    interior_edges: tuple[str, ...]
    incoming_edges: tuple[str, ...]
    outgoing_edges: tuple[str, ...]
    intersection_id: str | None

    layer: ClassVar[SemanticMapLayer] = SemanticMapLayer.ROADBLOCK_CONNECTOR

    def interior(self) -> list[LaneConnector]:
        return self._map._resolve(self.interior_edges, self._map.lane_connector)

    def incoming(self) -> list[Roadblock]:
        return self._map._resolve(self.incoming_edges, self._map.roadblock)

    def outgoing(self) -> list[Roadblock]:
        return self._map._resolve(self.outgoing_edges, self._map.roadblock)


@dataclass(frozen=True, eq=False)
class PolygonMapObject(_MapObject):
    """Intersection, car park, crosswalk, walkway or stop line (``stop_type`` = StopLineType for stop lines)."""

    object_layer: SemanticMapLayer
    stop_type: int | None = None

    @property
    def layer(self) -> SemanticMapLayer:
        return self.object_layer


MapObject = Lane | LaneConnector | Roadblock | RoadblockConnector | PolygonMapObject


@dataclass
class _SpatialLayer:
    ids: list[str]
    geometries: np.ndarray

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geometries)


def _group_by(keys: np.ndarray, values: Sequence[T]) -> dict[str, list[T]]:
    """values grouped by their map-id key, each group in table order."""
    groups: dict[str, list[T]] = defaultdict(list)
    for key, value in zip(keys, values, strict=True):
        key_id = _map_id(key)
        if key_id is not None:
            groups[key_id].append(value)
    return groups


class NuPlanMap:
    """nuPlan vector map of one location, read from a GeoPackage."""

    def __init__(self, tables: dict[str, GpkgTable], path: Path | str, map_name: str = ""):
        missing = [name for name in gpkg.REQUIRED_LAYERS if name not in tables]
        if missing:
            raise gpkg.GpkgError(f"{path}: required tables {missing} are missing")
        self.path = Path(path)
        self.map_name = map_name
        self._tables = dict(tables)
        self._layers: dict[SemanticMapLayer, _SpatialLayer] = {}
        self._objects: dict[SemanticMapLayer, dict[str, MapObject]] = {}
        self._build_graph()

    @classmethod
    def from_file(cls, path: str | Path, map_name: str = "") -> NuPlanMap:
        """Open ``map.gpkg`` and read the layers NAVSIM needs (optional layers load on first use)."""
        with GeoPackage(path) as package:
            tables = {name: package.read_table(name) for name in gpkg.REQUIRED_LAYERS}
        return cls(tables, path, map_name)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle by path: a worker re-reads the file instead of receiving every geometry."""
        return NuPlanMap.from_file, (str(self.path), self.map_name)

    def __repr__(self) -> str:
        return f"NuPlanMap({self.map_name or self.path}, {len(self.lanes)} lanes, {len(self.roadblocks)} roadblocks)"

    # --- tables and graph ------------------------------------------------------------------------------------

    def table(self, name: str) -> GpkgTable:
        """A layer's table; optional layers (stop lines, crosswalks, boundaries, ...) are read on first use."""
        if name not in self._tables:
            with GeoPackage(self.path) as package:
                self._tables[name] = package.read_table(name)
        return self._tables[name]

    def _build_graph(self) -> None:
        lanes_t, lcs_t = self._tables[gpkg.LANES], self._tables[gpkg.LANE_CONNECTORS]
        rbs_t, rcs_t = self._tables[gpkg.ROADBLOCKS], self._tables[gpkg.ROADBLOCK_CONNECTORS]
        lane_ids = [str(f) for f in lanes_t.fid]
        lc_ids = [str(f) for f in lcs_t.fid]
        rb_ids = [str(f) for f in rbs_t.fid]
        rc_ids = [str(f) for f in rcs_t.fid]

        lc_out_of_lane = _group_by(lcs_t.column("exit_lane_fid"), lc_ids)
        lc_into_lane = _group_by(lcs_t.column("entry_lane_fid"), lc_ids)
        lanes_of_rb = _group_by(lanes_t.column("lane_group_fid"), lane_ids)
        lcs_of_rc = _group_by(lcs_t.column("lane_group_connector_fid"), lc_ids)
        rc_into_rb = _group_by(rcs_t.column("to_lane_group_fid"), rc_ids)
        rc_out_of_rb = _group_by(rcs_t.column("from_lane_group_fid"), rc_ids)

        lc_polygons_t = self._tables[gpkg.LANE_CONNECTOR_POLYGONS]
        self._lc_polygon_rows = _group_by(lc_polygons_t.column("lane_connector_fid"), range(len(lc_polygons_t)))
        baselines_t = self._tables[gpkg.BASELINE_PATHS]
        rows = range(len(baselines_t))
        self._baseline_rows = {
            SemanticMapLayer.LANE: _group_by(baselines_t.column("lane_fid"), rows),
            SemanticMapLayer.LANE_CONNECTOR: _group_by(baselines_t.column("lane_connector_fid"), rows),
        }

        def column_or_none(table: GpkgTable, name: str) -> np.ndarray:
            return table.column(name) if table.has_column(name) else np.full(len(table), None, dtype=object)

        speed, index = column_or_none(lanes_t, "speed_limit_mps"), lanes_t.column("lane_index")
        lane_group = lanes_t.column("lane_group_fid")
        left, right = column_or_none(lanes_t, "left_boundary_fid"), column_or_none(lanes_t, "right_boundary_fid")
        self.lanes: dict[str, Lane] = {
            lane_id: Lane(
                id=lane_id,
                polygon=lanes_t.geometry[i],
                _map=self,
                roadblock_id=_map_id(lane_group[i]),
                index=_optional_int(index[i]),
                speed_limit_mps=_optional_float(speed[i]),
                incoming_edges=tuple(lc_into_lane.get(lane_id, ())),
                outgoing_edges=tuple(lc_out_of_lane.get(lane_id, ())),
                left_boundary_id=_map_id(left[i]),
                right_boundary_id=_map_id(right[i]),
            )
            for i, lane_id in enumerate(lane_ids)
        }
        speed = column_or_none(lcs_t, "speed_limit_mps")
        stop_lines = column_or_none(lcs_t, "traffic_light_stop_line_fids")
        intersections = column_or_none(lcs_t, "intersection_fid")
        self.lane_connectors: dict[str, LaneConnector] = {}
        for i, lc_id in enumerate(lc_ids):
            polygon_rows = self._lc_polygon_rows.get(lc_id, [])
            self.lane_connectors[lc_id] = LaneConnector(
                id=lc_id,
                polygon=lc_polygons_t.geometry[polygon_rows[0]] if polygon_rows else None,
                _map=self,
                roadblock_id=_map_id(lcs_t.column("lane_group_connector_fid")[i]),
                speed_limit_mps=_optional_float(speed[i]),
                incoming_edges=_single_id(lcs_t.column("exit_lane_fid")[i]),
                outgoing_edges=_single_id(lcs_t.column("entry_lane_fid")[i]),
                stop_line_ids=tuple(s for s in str(stop_lines[i] or "").replace(" ", "").split(",") if s),
                intersection_id=_map_id(intersections[i]),
            )
        self.roadblocks: dict[str, Roadblock] = {
            rb_id: Roadblock(
                id=rb_id,
                polygon=rbs_t.geometry[i],
                _map=self,
                interior_edges=tuple(lanes_of_rb.get(rb_id, ())),
                incoming_edges=tuple(rc_into_rb.get(rb_id, ())),
                outgoing_edges=tuple(rc_out_of_rb.get(rb_id, ())),
            )
            for i, rb_id in enumerate(rb_ids)
        }
        rc_intersections = column_or_none(rcs_t, "intersection_fid")
        self.roadblock_connectors: dict[str, RoadblockConnector] = {
            rc_id: RoadblockConnector(
                id=rc_id,
                polygon=rcs_t.geometry[i],
                _map=self,
                interior_edges=tuple(lcs_of_rc.get(rc_id, ())),
                incoming_edges=_single_id(rcs_t.column("from_lane_group_fid")[i]),
                outgoing_edges=_single_id(rcs_t.column("to_lane_group_fid")[i]),
                intersection_id=_map_id(rc_intersections[i]),
            )
            for i, rc_id in enumerate(rc_ids)
        }
        self._objects = {
            SemanticMapLayer.LANE: self.lanes,
            SemanticMapLayer.LANE_CONNECTOR: self.lane_connectors,
            SemanticMapLayer.ROADBLOCK: self.roadblocks,
            SemanticMapLayer.ROADBLOCK_CONNECTOR: self.roadblock_connectors,
        }

    def _polygon_objects(self, layer: SemanticMapLayer) -> dict[str, MapObject]:
        if layer not in self._objects:
            table = self.table(LAYER_TABLES[layer])
            stop_types = (
                table.column("stop_polygon_type_fid") if layer == SemanticMapLayer.STOP_LINE else [None] * len(table)
            )
            self._objects[layer] = {
                str(fid): PolygonMapObject(
                    id=str(fid),
                    polygon=table.geometry[i],
                    _map=self,
                    object_layer=layer,
                    stop_type=None if stop_types[i] is None else int(stop_types[i]),
                )
                for i, fid in enumerate(table.fid)
            }
        return self._objects[layer]

    @staticmethod
    def _resolve(ids: Iterable[str], getter: Callable[[str], T | None]) -> list[T]:
        """The objects of these ids that exist (dangling references of a broken map are skipped)."""
        return [obj for obj in map(getter, ids) if obj is not None]

    # --- object access -----------------------------------------------------------------------------------------

    def lane(self, lane_id: str) -> Lane | None:
        return self.lanes.get(str(lane_id))

    def lane_connector(self, lane_connector_id: str) -> LaneConnector | None:
        return self.lane_connectors.get(str(lane_connector_id))

    def roadblock(self, roadblock_id: str) -> Roadblock | None:
        return self.roadblocks.get(str(roadblock_id))

    def roadblock_connector(self, roadblock_connector_id: str) -> RoadblockConnector | None:
        return self.roadblock_connectors.get(str(roadblock_connector_id))

    def get_map_object(self, object_id: str, layer: SemanticMapLayer) -> MapObject | None:
        """The object with this id in this layer, None when there is none (nuPlan's getters return None too)."""
        _check_object_layers([layer])
        if layer in _POLYGON_OBJECT_LAYERS:
            return self._polygon_objects(layer).get(str(object_id))
        return self._objects[layer].get(str(object_id))

    def baseline_path(self, edge_id: str, layer: SemanticMapLayer) -> BaselinePath:
        """The single ``baseline_paths`` row of a lane or lane connector (nuPlan asserts exactly one)."""
        rows = self._baseline_rows[layer].get(str(edge_id), [])
        if len(rows) != 1:
            raise InvalidSceneError(
                f"{self.path}: table {gpkg.BASELINE_PATHS!r} has {len(rows)} rows for {layer.name} {edge_id}, "
                "expected exactly one"
            )
        table = self._tables[gpkg.BASELINE_PATHS]
        return BaselinePath(str(table.fid[rows[0]]), table.geometry[rows[0]])

    def lane_connector_polygon(self, lane_connector_id: str) -> shapely.Polygon:
        """A lane connector's polygon from ``gen_lane_connectors_scaled_width_polygons``."""
        rows = self._lc_polygon_rows.get(str(lane_connector_id), [])
        if len(rows) != 1:
            raise InvalidSceneError(
                f"{self.path}: table {gpkg.LANE_CONNECTOR_POLYGONS!r} has {len(rows)} rows for lane connector "
                f"{lane_connector_id}, expected exactly one"
            )
        return self._tables[gpkg.LANE_CONNECTOR_POLYGONS].geometry[rows[0]]

    # --- spatial queries ---------------------------------------------------------------------------------------

    def _spatial(self, layer: SemanticMapLayer) -> _SpatialLayer:
        if layer not in self._layers:
            if layer == SemanticMapLayer.DRIVABLE_AREA:
                tables = [self.table(name) for name in DRIVABLE_AREA_TABLES]
            elif layer in LAYER_TABLES:
                tables = [self.table(LAYER_TABLES[layer])]
            else:
                raise ValueError(f"layer {layer.name} has no vector table in nuPlan maps")
            ids = [str(fid) for table in tables for fid in table.fid]
            geometries = np.concatenate([table.geometry for table in tables])
            self._layers[layer] = _SpatialLayer(ids, geometries)
        return self._layers[layer]

    def _object(self, object_id: str, layer: SemanticMapLayer) -> MapObject:
        found = self.get_map_object(object_id, layer)
        if found is None:  # only for layers whose existence check differs from the table (never in nuPlan maps)
            raise InvalidSceneError(f"{self.path}: {layer.name} {object_id} is listed but cannot be built")
        return found

    def get_proximal_map_objects(
        self, point: Point, radius: float, layers: Iterable[SemanticMapLayer]
    ) -> dict[SemanticMapLayer, list[MapObject]]:
        """Objects whose geometry intersects the square [x ± radius] × [y ± radius], per layer in table order."""
        layers = list(layers)
        _check_object_layers(layers)
        x, y = float(point[0]), float(point[1])
        patch = shapely.box(x - radius, y - radius, x + radius, y + radius)
        result: dict[SemanticMapLayer, list[MapObject]] = {}
        for layer in layers:
            spatial = self._spatial(layer)
            indices = np.sort(spatial.tree.query(patch, predicate="intersects"))
            result[layer] = [self._object(spatial.ids[i], layer) for i in indices]
        return result

    def get_all_map_objects(self, point: Point, layer: SemanticMapLayer) -> list[MapObject]:
        """Objects whose polygon strictly contains the point (lane connectors: their generated polygons)."""
        _check_object_layers([layer])
        query = shapely.Point(float(point[0]), float(point[1]))
        if layer == SemanticMapLayer.LANE_CONNECTOR:
            table = self._tables[gpkg.LANE_CONNECTOR_POLYGONS]
            tree = self._lc_polygon_tree
            indices = np.sort(tree.query(query, predicate="within"))
            ids = [_map_id(table.column("lane_connector_fid")[i]) for i in indices]
            return [lc for lc in (self.lane_connector(i) for i in ids if i) if lc is not None]
        spatial = self._spatial(layer)
        indices = np.sort(spatial.tree.query(query, predicate="within"))
        return [self._object(spatial.ids[i], layer) for i in indices]

    @cached_property
    def _lc_polygon_tree(self) -> shapely.STRtree:
        return shapely.STRtree(self._tables[gpkg.LANE_CONNECTOR_POLYGONS].geometry)

    def get_one_map_object(self, point: Point, layer: SemanticMapLayer) -> MapObject | None:
        """The single object containing the point, None if none; more than one is an error (as in nuPlan)."""
        found = self.get_all_map_objects(point, layer)
        if len(found) > 1:
            raise ValueError(f"{len(found)} {layer.name} objects contain {tuple(point)}; expected at most one")
        return found[0] if found else None

    def is_in_layer(self, point: Point, layer: SemanticMapLayer) -> bool:
        """Whether some geometry of the layer's table (DRIVABLE_AREA: road segments, intersections, generic
        drivable areas, car parks) strictly contains the point."""
        query = shapely.Point(float(point[0]), float(point[1]))
        return len(self._spatial(layer).tree.query(query, predicate="within")) > 0

    def get_distance_to_nearest_map_object(
        self, point: Point, layer: SemanticMapLayer
    ) -> tuple[str | None, float | None]:
        """(id, distance) of the layer geometry nearest to the point; (None, None) for an empty layer."""
        spatial = self._spatial(layer)
        if len(spatial.ids) == 0:
            return None, None
        distances = shapely.distance(spatial.geometries, shapely.Point(float(point[0]), float(point[1])))
        distances = np.where(np.isnan(distances), np.inf, distances)  # NULL geometries never win
        nearest = int(np.argmin(distances))
        return spatial.ids[nearest], float(distances[nearest])

    # --- NAVSIM's drivable map ----------------------------------------------------------------------------------

    def drivable_map_around(self, center_xy: Point, radius: float = 100.0) -> DrivableMap:
        """``PDMDrivableMap.from_simulation`` around the ego centre: roadblocks, their lanes, the lane connectors of
        roadblock connectors, intersections and car parks, in that order (square query of half-size ``radius``)."""
        roadblock_layers = [SemanticMapLayer.ROADBLOCK, SemanticMapLayer.ROADBLOCK_CONNECTOR]
        other_layers = [SemanticMapLayer.INTERSECTION, SemanticMapLayer.CARPARK_AREA]
        nearby = self.get_proximal_map_objects(center_xy, radius, roadblock_layers + other_layers)
        tokens: list[str] = []
        layers: list[MapLayer] = []
        polygons: list[shapely.Polygon] = []

        def add(objects: Iterable[MapObject], layer: MapLayer) -> None:
            for obj in objects:
                if obj.polygon is None:
                    raise InvalidSceneError(f"{self.path}: {layer.value} {obj.id} has no polygon")
                tokens.append(obj.id)
                layers.append(layer)
                polygons.append(_single_polygon(obj.polygon, obj.id, self.path))

        add(nearby[SemanticMapLayer.ROADBLOCK], MapLayer.ROADBLOCK)
        for roadblock in nearby[SemanticMapLayer.ROADBLOCK]:
            add(roadblock.interior(), MapLayer.LANE)
        for connector in nearby[SemanticMapLayer.ROADBLOCK_CONNECTOR]:
            add(connector.interior(), MapLayer.LANE_CONNECTOR)
        add(nearby[SemanticMapLayer.INTERSECTION], MapLayer.INTERSECTION)
        add(nearby[SemanticMapLayer.CARPARK_AREA], MapLayer.CARPARK_AREA)
        if not tokens:
            raise InvalidSceneError(
                f"{self.path}: no roadblock, lane, intersection or car park within {radius} m of {tuple(center_xy)}"
            )
        return DrivableMap(tokens, layers, polygons)


def _check_object_layers(layers: Iterable[SemanticMapLayer]) -> None:
    unsupported = [layer.name for layer in layers if layer not in OBJECT_LAYERS]
    if unsupported:
        raise ValueError(f"no map objects for layer(s) {unsupported}; supported: {[x.name for x in OBJECT_LAYERS]}")


def _single_polygon(geometry: shapely.Geometry, token: str, path: Path) -> shapely.Polygon:
    """DrivableMap holds Polygons: a one-part MultiPolygon is unwrapped, a multi-part one is an error."""
    if isinstance(geometry, shapely.MultiPolygon) and len(geometry.geoms) == 1:
        return geometry.geoms[0]
    if not isinstance(geometry, shapely.Polygon):
        raise InvalidSceneError(
            f"{path}: map object {token} is a {geometry.geom_type}; the drivable map needs single polygons"
        )
    return geometry
