"""Write nuPlan-schema GeoPackage maps from plain dataclasses (synthetic worlds, test fixtures).

The file is a valid GeoPackage 1.2 (``gpkg_spatial_ref_sys``, ``gpkg_contents``, ``gpkg_geometry_columns``, feature
tables with GeoPackage binary geometries) holding every vector layer nuPlan's map API opens, with nuPlan's column
names, plus the ``meta`` table with ``projectedCoordSystem``. Geometries are stored in that projected CRS unless
``store_lonlat`` asks for WGS84 lon/lat like the released maps.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps import gpkg
from navsim_eval.maps.gpkg import WGS84_EPSG, parse_projected_crs, utm_to_lonlat

Coords = np.ndarray | Sequence[Sequence[float]]
PolygonLike = shapely.Polygon | shapely.MultiPolygon | Coords
LineLike = shapely.LineString | Coords

FIXED_TIMESTAMP = "2000-01-01T00:00:00.000Z"  # gpkg_contents.last_change; fixed so equal inputs give equal files


@dataclass
class LaneSpec:
    """A lane (``lanes_polygons`` row + its ``baseline_paths`` row); lanes of a roadblock are indexed from the left."""

    id: int
    roadblock_id: int
    lane_index: int
    polygon: PolygonLike
    baseline: LineLike  # in the driving direction
    speed_limit_mps: float | None = None
    left_boundary_id: int | None = None
    right_boundary_id: int | None = None
    width: float | None = None
    baseline_id: int | None = None  # fid of the baseline_paths row (allocated when None)


@dataclass
class LaneConnectorSpec:
    """A lane connector from ``exit_lane_id`` to ``entry_lane_id`` (``lane_connectors`` row with the baseline as
    geometry, plus its ``gen_lane_connectors_scaled_width_polygons`` and ``baseline_paths`` rows)."""

    id: int
    exit_lane_id: int
    entry_lane_id: int
    roadblock_connector_id: int
    polygon: PolygonLike
    baseline: LineLike
    speed_limit_mps: float | None = None
    traffic_light_stop_line_ids: tuple[int, ...] = ()
    intersection_id: int | None = None
    turn_type: int = 0  # LaneConnectorType: STRAIGHT 0, LEFT 1, RIGHT 2, UTURN 3
    left_boundary_id: int | None = None
    right_boundary_id: int | None = None
    baseline_id: int | None = None
    polygon_id: int | None = None  # fid of the generated polygon row (allocated when None)


@dataclass
class RoadblockSpec:
    """A roadblock (nuPlan lane group, ``lane_groups_polygons``)."""

    id: int
    polygon: PolygonLike
    left_boundary_id: int | None = None
    right_boundary_id: int | None = None


@dataclass
class RoadblockConnectorSpec:
    """A roadblock connector (nuPlan lane group connector) from one roadblock to another."""

    id: int
    from_roadblock_id: int
    to_roadblock_id: int
    polygon: PolygonLike
    intersection_id: int | None = None


@dataclass
class AreaSpec:
    """A plain polygon: intersection, car park, crosswalk, walkway, road segment or generic drivable area."""

    id: int
    polygon: PolygonLike
    heading: float | None = None  # car parks only


@dataclass
class StopLineSpec:
    """A stop polygon; ``stop_type`` is nuPlan's StopLineType (PED_CROSSING 0, STOP_SIGN 1, TRAFFIC_LIGHT 2, ...)."""

    id: int
    polygon: PolygonLike
    stop_type: int = 2
    roadblock_id: int | None = None
    lane_connector_ids: tuple[int, ...] = ()


@dataclass
class BoundarySpec:
    """A lane or roadblock boundary polyline."""

    id: int
    line: LineLike
    boundary_type: int | None = None


@dataclass
class MapSpec:
    """Everything one ``map.gpkg`` holds. ``projected_crs`` is the metric CRS of all coordinates given here."""

    lanes: list[LaneSpec]
    lane_connectors: list[LaneConnectorSpec]
    roadblocks: list[RoadblockSpec]
    roadblock_connectors: list[RoadblockConnectorSpec]
    intersections: list[AreaSpec] = field(default_factory=list)
    carpark_areas: list[AreaSpec] = field(default_factory=list)
    crosswalks: list[AreaSpec] = field(default_factory=list)
    walkways: list[AreaSpec] = field(default_factory=list)
    road_segments: list[AreaSpec] = field(default_factory=list)
    generic_drivable_areas: list[AreaSpec] = field(default_factory=list)
    stop_lines: list[StopLineSpec] = field(default_factory=list)
    boundaries: list[BoundarySpec] = field(default_factory=list)
    projected_crs: str = "epsg:32611"


# Column schemas as in the released maps (names from nuPlan's readers and third-party DDL; SQL types best effort).
_SCHEMAS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    gpkg.LANES: (
        "POLYGON",
        [
            ("lane_group_fid", "INTEGER"),
            ("lane_fid", "INTEGER"),
            ("lane_index", "INTEGER"),
            ("creator_id", "INTEGER"),
            ("name", "TEXT"),
            ("road_type_fid", "INTEGER"),
            ("lane_type_fid", "INTEGER"),
            ("width", "REAL"),
            ("left_offset", "REAL"),
            ("right_offset", "REAL"),
            ("min_speed", "REAL"),
            ("max_speed", "REAL"),
            ("stops", "TEXT"),
            ("left_boundary_fid", "INTEGER"),
            ("right_boundary_fid", "INTEGER"),
            ("speed_limit_mps", "REAL"),
            ("left_has_reflectors", "BOOLEAN"),
            ("right_has_reflectors", "BOOLEAN"),
            ("from_edge_fid", "INTEGER"),
            ("to_edge_fid", "INTEGER"),
        ],
    ),
    gpkg.LANE_CONNECTORS: (
        "LINESTRING",
        [
            ("exit_lane_group_fid", "INTEGER"),
            ("exit_lane_fid", "INTEGER"),
            ("entry_lane_group_fid", "INTEGER"),
            ("lane_group_connector_fid", "INTEGER"),
            ("entry_lane_fid", "INTEGER"),
            ("intersection_fid", "INTEGER"),
            ("turn_type_fid", "INTEGER"),
            ("bulb_fids", "TEXT"),
            ("traffic_light_stop_line_fids", "TEXT"),
            ("overlap", "TEXT"),
            ("creator_id", "INTEGER"),
            ("reflector_side_fid", "INTEGER"),
            ("left_has_reflectors", "BOOLEAN"),
            ("right_has_reflectors", "BOOLEAN"),
            ("speed_limit_mps", "REAL"),
        ],
    ),
    gpkg.LANE_CONNECTOR_POLYGONS: (
        "POLYGON",
        [
            ("baseline_path_fid", "INTEGER"),
            ("lane_connector_fid", "INTEGER"),
            ("from_edge_fid", "INTEGER"),
            ("to_edge_fid", "INTEGER"),
            ("left_boundary_fid", "INTEGER"),
            ("right_boundary_fid", "INTEGER"),
        ],
    ),
    gpkg.BASELINE_PATHS: (
        "LINESTRING",
        [
            ("path_type_fid", "INTEGER"),
            ("creator_id", "INTEGER"),
            ("lane_fid", "INTEGER"),
            ("lane_connector_fid", "INTEGER"),
            ("dubins_node_fids", "TEXT"),
        ],
    ),
    gpkg.ROADBLOCKS: (
        "POLYGON",
        [
            ("creator_id", "INTEGER"),
            ("left_boundary_fid", "INTEGER"),
            ("right_boundary_fid", "INTEGER"),
            ("from_edge_fid", "INTEGER"),
            ("to_edge_fid", "INTEGER"),
        ],
    ),
    gpkg.ROADBLOCK_CONNECTORS: (
        "POLYGON",
        [
            ("intersection_fid", "INTEGER"),
            ("from_lane_group_fid", "INTEGER"),
            ("to_lane_group_fid", "INTEGER"),
            ("creator_id", "INTEGER"),
            ("from_edge_fid", "INTEGER"),
            ("to_edge_fid", "INTEGER"),
            ("left_boundary_fid", "INTEGER"),
            ("right_boundary_fid", "INTEGER"),
        ],
    ),
    gpkg.INTERSECTIONS: (
        "POLYGON",
        [("creator_id", "INTEGER"), ("intersection_type_fid", "INTEGER"), ("is_mini", "BOOLEAN")],
    ),
    gpkg.CARPARK_AREAS: ("POLYGON", [("heading", "REAL"), ("creator_id", "INTEGER")]),
    gpkg.CROSSWALKS: (
        "POLYGON",
        [("intersection_fids", "TEXT"), ("lane_fids", "TEXT"), ("creator_id", "INTEGER"), ("is_marked", "BOOLEAN")],
    ),
    gpkg.WALKWAYS: ("POLYGON", [("creator_id", "INTEGER")]),
    gpkg.GENERIC_DRIVABLE_AREAS: ("POLYGON", [("creator_id", "INTEGER")]),
    gpkg.ROAD_SEGMENTS: ("POLYGON", [("lane_group_fids", "TEXT")]),
    gpkg.STOP_LINES: (
        "POLYGON",
        [
            ("stop_polygon_type_fid", "INTEGER"),
            ("lane_group_fid", "INTEGER"),
            ("lane_fids", "TEXT"),
            ("lane_connector_fids", "TEXT"),
            ("traffic_light_fids", "TEXT"),
            ("crosswalk_fids", "TEXT"),
            ("precedence_area_fids", "TEXT"),
            ("creator_id", "INTEGER"),
        ],
    ),
    gpkg.BOUNDARIES: (
        "LINESTRING",
        [
            ("boundary_segment_fids", "TEXT"),
            ("has_reflectors", "BOOLEAN"),
            ("boundary_type_fid", "INTEGER"),
            ("creator_id", "INTEGER"),
        ],
    ),
    gpkg.TRAFFIC_LIGHTS: ("POINT", [("ori_mean_yaw", "REAL"), ("creator_id", "INTEGER")]),
    gpkg.DUBINS_NODES: ("POINT", [("radius", "REAL"), ("heading", "REAL"), ("creator_id", "INTEGER")]),
}


def encode_geometry(geometry: shapely.Geometry, srs_id: int) -> bytes:
    """GeoPackage binary: little-endian header with an xy envelope (none when empty) + ISO WKB."""
    empty = geometry.is_empty
    flags = 0x01 | (0x10 if empty else 0x02)  # little endian; envelope code 1 (xy) unless empty
    header = b"GP" + bytes([0, flags]) + struct.pack("<i", srs_id)
    if not empty:
        minx, miny, maxx, maxy = geometry.bounds
        header += struct.pack("<4d", minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geometry, byte_order=1, output_dimension=2, flavor="iso")


def write_map(spec: MapSpec, path: str | Path, *, store_lonlat: bool = False, overwrite: bool = False) -> Path:
    """Write ``spec`` as a nuPlan-schema GeoPackage at ``path`` and return the path."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path}: map file exists (pass overwrite=True to replace it)")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    projected = parse_projected_crs(spec.projected_crs, path)
    rows = _layer_rows(spec)
    if store_lonlat:
        zone, south = gpkg.utm_zone_of_epsg(projected)
        srs_id = WGS84_EPSG
        for layer_rows in rows.values():
            for row in layer_rows:
                row["geom"] = shapely.transform(row["geom"], lambda xy: utm_to_lonlat(xy, zone, south))
    else:
        srs_id = projected
    conn = sqlite3.connect(path)
    try:
        _write_core_tables(conn, srs_id)
        for name, (geometry_type, columns) in _SCHEMAS.items():
            _write_feature_table(conn, name, geometry_type, columns, rows.get(name, []), srs_id)
        _write_meta(conn, {"projectedCoordSystem": spec.projected_crs})
        conn.commit()
    finally:
        conn.close()
    return path


def _polygon(value: PolygonLike, what: str) -> shapely.Polygon | shapely.MultiPolygon:
    geometry = value if isinstance(value, shapely.Polygon | shapely.MultiPolygon) else shapely.Polygon(value)
    if geometry.is_empty or not geometry.is_valid:
        raise InvalidSceneError(f"map spec: {what} polygon is empty or invalid ({shapely.is_valid_reason(geometry)})")
    return geometry


def _line(value: LineLike, what: str) -> shapely.LineString:
    geometry = value if isinstance(value, shapely.LineString) else shapely.LineString(np.asarray(value, dtype=float))
    if geometry.length <= 0.0:
        raise InvalidSceneError(f"map spec: {what} line must have a positive length")
    return geometry


def _ids_csv(ids: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def _check_unique(ids: Sequence[int], what: str) -> set[int]:
    unique = set(ids)
    if len(unique) != len(ids):
        duplicates = sorted(i for i in unique if list(ids).count(i) > 1)
        raise InvalidSceneError(f"map spec: duplicate {what} ids {duplicates}")
    return unique


def _unique_ids(items: Sequence[object], what: str) -> set[int]:
    return _check_unique([int(item.id) for item in items], what)


def _layer_rows(spec: MapSpec) -> dict[str, list[dict[str, object]]]:
    """Validate references and turn the spec into rows per table (``fid``, ``geom`` and attribute columns)."""
    lane_ids = _unique_ids(spec.lanes, "lane")
    connector_ids = _unique_ids(spec.lane_connectors, "lane connector")
    roadblock_ids = _unique_ids(spec.roadblocks, "roadblock")
    rc_ids = _unique_ids(spec.roadblock_connectors, "roadblock connector")
    for lane in spec.lanes:
        if lane.roadblock_id not in roadblock_ids:
            raise InvalidSceneError(f"map spec: lane {lane.id} references unknown roadblock {lane.roadblock_id}")
    for lc in spec.lane_connectors:
        for role, ref in (("exit lane", lc.exit_lane_id), ("entry lane", lc.entry_lane_id)):
            if ref not in lane_ids:
                raise InvalidSceneError(f"map spec: lane connector {lc.id} references unknown {role} {ref}")
        if lc.roadblock_connector_id not in rc_ids:
            raise InvalidSceneError(
                f"map spec: lane connector {lc.id} references unknown roadblock connector {lc.roadblock_connector_id}"
            )
    for rc in spec.roadblock_connectors:
        for role, ref in (("from", rc.from_roadblock_id), ("to", rc.to_roadblock_id)):
            if ref not in roadblock_ids:
                raise InvalidSceneError(
                    f"map spec: roadblock connector {rc.id} references unknown {role} roadblock {ref}"
                )

    lanes_by_id = {lane.id: lane for lane in spec.lanes}
    explicit = [*lane_ids, *connector_ids, *roadblock_ids, *rc_ids]
    explicit += [x.baseline_id for x in (*spec.lanes, *spec.lane_connectors) if x.baseline_id is not None]
    explicit += [lc.polygon_id for lc in spec.lane_connectors if lc.polygon_id is not None]
    others = (spec.intersections, spec.carpark_areas, spec.crosswalks, spec.walkways, spec.road_segments)
    explicit += [item.id for items in (*others, spec.generic_drivable_areas, spec.stop_lines) for item in items]
    explicit += [boundary.id for boundary in spec.boundaries]
    next_id = max(explicit, default=0) + 1  # generated fids continue after every explicit id

    def allocate(given: int | None) -> int:
        nonlocal next_id
        if given is not None:
            return int(given)
        next_id += 1
        return next_id - 1

    rows: dict[str, list[dict[str, object]]] = {name: [] for name in _SCHEMAS}
    for lane in spec.lanes:
        rows[gpkg.LANES].append(
            {
                "fid": lane.id,
                "geom": _polygon(lane.polygon, f"lane {lane.id}"),
                "lane_group_fid": lane.roadblock_id,
                "lane_fid": lane.id,
                "lane_index": lane.lane_index,
                "width": lane.width,
                "left_boundary_fid": lane.left_boundary_id,
                "right_boundary_fid": lane.right_boundary_id,
                "speed_limit_mps": lane.speed_limit_mps,
            }
        )
        rows[gpkg.BASELINE_PATHS].append(
            {
                "fid": allocate(lane.baseline_id),
                "geom": _line(lane.baseline, f"lane {lane.id} baseline"),
                "lane_fid": lane.id,
                "lane_connector_fid": None,
            }
        )
    for lc in spec.lane_connectors:
        baseline = _line(lc.baseline, f"lane connector {lc.id} baseline")
        baseline_id = allocate(lc.baseline_id)
        rows[gpkg.LANE_CONNECTORS].append(
            {
                "fid": lc.id,
                "geom": baseline,
                "exit_lane_group_fid": lanes_by_id[lc.exit_lane_id].roadblock_id,
                "exit_lane_fid": lc.exit_lane_id,
                "entry_lane_group_fid": lanes_by_id[lc.entry_lane_id].roadblock_id,
                "lane_group_connector_fid": lc.roadblock_connector_id,
                "entry_lane_fid": lc.entry_lane_id,
                "intersection_fid": lc.intersection_id,
                "turn_type_fid": lc.turn_type,
                "traffic_light_stop_line_fids": _ids_csv(lc.traffic_light_stop_line_ids),
                "speed_limit_mps": lc.speed_limit_mps,
            }
        )
        rows[gpkg.LANE_CONNECTOR_POLYGONS].append(
            {
                "fid": allocate(lc.polygon_id),
                "geom": _polygon(lc.polygon, f"lane connector {lc.id}"),
                "baseline_path_fid": baseline_id,
                "lane_connector_fid": lc.id,
                "left_boundary_fid": lc.left_boundary_id,
                "right_boundary_fid": lc.right_boundary_id,
            }
        )
        rows[gpkg.BASELINE_PATHS].append(
            {"fid": baseline_id, "geom": baseline, "lane_fid": None, "lane_connector_fid": lc.id}
        )
    for rb in spec.roadblocks:
        rows[gpkg.ROADBLOCKS].append(
            {
                "fid": rb.id,
                "geom": _polygon(rb.polygon, f"roadblock {rb.id}"),
                "left_boundary_fid": rb.left_boundary_id,
                "right_boundary_fid": rb.right_boundary_id,
            }
        )
    for rc in spec.roadblock_connectors:
        rows[gpkg.ROADBLOCK_CONNECTORS].append(
            {
                "fid": rc.id,
                "geom": _polygon(rc.polygon, f"roadblock connector {rc.id}"),
                "intersection_fid": rc.intersection_id,
                "from_lane_group_fid": rc.from_roadblock_id,
                "to_lane_group_fid": rc.to_roadblock_id,
            }
        )
    areas = (
        (gpkg.INTERSECTIONS, spec.intersections, "intersection"),
        (gpkg.CARPARK_AREAS, spec.carpark_areas, "car park"),
        (gpkg.CROSSWALKS, spec.crosswalks, "crosswalk"),
        (gpkg.WALKWAYS, spec.walkways, "walkway"),
        (gpkg.ROAD_SEGMENTS, spec.road_segments, "road segment"),
        (gpkg.GENERIC_DRIVABLE_AREAS, spec.generic_drivable_areas, "generic drivable area"),
    )
    for table, items, what in areas:
        _unique_ids(items, what)
        for area in items:
            row: dict[str, object] = {"fid": area.id, "geom": _polygon(area.polygon, f"{what} {area.id}")}
            if table == gpkg.CARPARK_AREAS:
                row["heading"] = area.heading
            rows[table].append(row)
    _unique_ids(spec.stop_lines, "stop line")
    for stop in spec.stop_lines:
        rows[gpkg.STOP_LINES].append(
            {
                "fid": stop.id,
                "geom": _polygon(stop.polygon, f"stop line {stop.id}"),
                "stop_polygon_type_fid": stop.stop_type,
                "lane_group_fid": stop.roadblock_id,
                "lane_connector_fids": _ids_csv(stop.lane_connector_ids),
            }
        )
    _unique_ids(spec.boundaries, "boundary")
    for boundary in spec.boundaries:
        rows[gpkg.BOUNDARIES].append(
            {
                "fid": boundary.id,
                "geom": _line(boundary.line, f"boundary {boundary.id}"),
                "boundary_type_fid": boundary.boundary_type,
            }
        )
    _check_unique([int(row["fid"]) for row in rows[gpkg.BASELINE_PATHS]], "baseline path")
    _check_unique([int(row["fid"]) for row in rows[gpkg.LANE_CONNECTOR_POLYGONS]], "lane connector polygon")
    return rows


def _utm_wkt(epsg: int) -> str:
    zone, south = gpkg.utm_zone_of_epsg(epsg)
    hemisphere = "S" if south else "N"
    return (
        f'PROJCS["WGS 84 / UTM zone {zone}{hemisphere}",{_WGS84_WKT},PROJECTION["Transverse_Mercator"],'
        f'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",{6 * zone - 183}],'
        f'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
        f'PARAMETER["false_northing",{10000000 if south else 0}],UNIT["metre",1,AUTHORITY["EPSG","9001"]],'
        f'AXIS["Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG","{epsg}"]]'
    )


_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],'
    'AUTHORITY["EPSG","4326"]]'
)


def _write_core_tables(conn: sqlite3.Connection, srs_id: int) -> None:
    conn.execute(f"PRAGMA application_id = {gpkg.GPKG_APPLICATION_IDS[0]}")
    conn.execute("PRAGMA user_version = 10200")
    conn.execute(
        "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, "
        "organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, "
        "description TEXT)"
    )
    srs_rows = [
        ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
        ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
        ("WGS 84 geodetic", WGS84_EPSG, "EPSG", WGS84_EPSG, _WGS84_WKT, "longitude/latitude coordinates in degrees"),
    ]
    if srs_id != WGS84_EPSG:
        srs_rows.append((f"WGS 84 / UTM zone {srs_id % 100}", srs_id, "EPSG", srs_id, _utm_wkt(srs_id), None))
    conn.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs_rows)
    conn.execute(
        "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, "
        "identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL, min_x DOUBLE, "
        "min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER, "
        "CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))"
    )
    conn.execute(
        "CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, "
        "geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL, "
        "CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name), "
        "CONSTRAINT uk_gc_table_name UNIQUE (table_name), "
        "CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name), "
        "CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))"
    )


def _write_feature_table(
    conn: sqlite3.Connection,
    name: str,
    geometry_type: str,
    columns: list[tuple[str, str]],
    rows: list[dict[str, object]],
    srs_id: int,
) -> None:
    geometries = [row["geom"] for row in rows]
    kinds = {shapely.get_type_id(g) for g in geometries}
    if geometry_type == "POLYGON" and kinds - {3}:
        geometry_type = "MULTIPOLYGON" if kinds <= {3, 6} else "GEOMETRY"
    column_sql = ", ".join(f'"{c}" {t}' for c, t in columns)
    fid_sql = '"fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL'
    conn.execute(f'CREATE TABLE "{name}" ({fid_sql}, "geom" {geometry_type}, {column_sql})')
    names = ", ".join(f'"{c}"' for c in ["fid", "geom", *[c for c, _ in columns]])
    placeholders = ", ".join("?" for _ in range(len(columns) + 2))
    conn.executemany(
        f'INSERT INTO "{name}" ({names}) VALUES ({placeholders})',
        [
            [int(row["fid"]), encode_geometry(row["geom"], srs_id), *[_sql_value(row.get(c)) for c, _ in columns]]
            for row in rows
        ],
    )
    bounds = shapely.total_bounds(np.asarray(geometries, dtype=object)) if geometries else [None] * 4
    bounds = [None if b is None or not np.isfinite(b) else float(b) for b in bounds]
    conn.execute(
        "INSERT INTO gpkg_contents VALUES (?, 'features', ?, '', ?, ?, ?, ?, ?, ?)",
        (name, name, FIXED_TIMESTAMP, *bounds, srs_id),
    )
    conn.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)", (name, geometry_type, srs_id))


def _write_meta(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    conn.execute('CREATE TABLE "meta" ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "key" TEXT, "value" TEXT)')
    conn.executemany('INSERT INTO "meta" ("key", "value") VALUES (?, ?)', list(values.items()))
    conn.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
        "VALUES ('meta', 'attributes', 'meta', '', ?)",
        (FIXED_TIMESTAMP,),
    )


def _sql_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value
