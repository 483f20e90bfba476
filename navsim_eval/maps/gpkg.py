"""Read nuPlan GeoPackage maps (``map.gpkg``) with sqlite3 + shapely only: no GDAL, geopandas or nuplan-devkit.

A GeoPackage is an SQLite database; layers are listed in ``gpkg_contents`` and feature tables store each geometry
as a GeoPackage binary blob (``b"GP"`` header + optional envelope + ISO WKB). nuPlan's loader reprojects every layer
from its stored CRS (WGS84 lon/lat in the released maps, per secondary sources) to the UTM zone named by the ``meta``
table's ``projectedCoordSystem``; :func:`read_table` does the same with a built-in transverse-Mercator projection.
"""

from __future__ import annotations

import math
import re
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError

# Layers the nuPlan map API reads (nuplan/common/maps/nuplan_map/nuplan_map.py) and this package needs.
LANES = "lanes_polygons"
ROADBLOCKS = "lane_groups_polygons"
ROADBLOCK_CONNECTORS = "lane_group_connectors"
LANE_CONNECTORS = "lane_connectors"
LANE_CONNECTOR_POLYGONS = "gen_lane_connectors_scaled_width_polygons"
BASELINE_PATHS = "baseline_paths"
INTERSECTIONS = "intersections"
CARPARK_AREAS = "carpark_areas"
STOP_LINES = "stop_polygons"
CROSSWALKS = "crosswalks"
WALKWAYS = "walkways"
BOUNDARIES = "boundaries"
ROAD_SEGMENTS = "road_segments"
GENERIC_DRIVABLE_AREAS = "generic_drivable_areas"
TRAFFIC_LIGHTS = "traffic_lights"
DUBINS_NODES = "dubins_nodes"
META = "meta"

REQUIRED_LAYERS = (
    LANES,
    ROADBLOCKS,
    ROADBLOCK_CONNECTORS,
    LANE_CONNECTORS,
    LANE_CONNECTOR_POLYGONS,
    BASELINE_PATHS,
    INTERSECTIONS,
    CARPARK_AREAS,
)

# PRAGMA application_id values of GeoPackage 1.2+ ("GPKG") and 1.0/1.1 ("GP10", "GP11").
GPKG_APPLICATION_IDS = (0x47504B47, 0x47503130, 0x47503131)
WGS84_EPSG = 4326

# Envelope code (flags bits 1-3) -> number of doubles: none, xy, xyz, xym, xyzm.
_ENVELOPE_DOUBLES = {0: 0, 1: 4, 2: 6, 3: 6, 4: 8}


class GpkgError(InvalidSceneError):
    """A GeoPackage map file is missing, not a GeoPackage, lacks a layer or holds a corrupt geometry."""


@dataclass(frozen=True)
class GeometryHeader:
    """The parsed GeoPackage binary header of one geometry blob."""

    version: int
    little_endian: bool
    envelope_code: int
    empty: bool
    extended: bool
    srs_id: int
    envelope: tuple[float, ...]  # [minx, maxx, miny, maxy(, minz, maxz)(, minm, maxm)] as stored
    wkb_offset: int


def parse_geometry_header(blob: bytes | memoryview) -> GeometryHeader:
    """Parse the GeoPackage binary header (magic, version, flags, srs_id, envelope); raise ValueError if malformed."""
    blob = memoryview(blob)
    if len(blob) < 8 or bytes(blob[:2]) != b"GP":
        raise ValueError("missing the GeoPackage magic b'GP'")
    version, flags = blob[2], blob[3]
    if version != 0:
        raise ValueError(f"unsupported GeoPackage binary version {version} (expected 0)")
    little_endian = bool(flags & 0x01)
    envelope_code = (flags >> 1) & 0x07
    if envelope_code not in _ENVELOPE_DOUBLES:
        raise ValueError(f"invalid envelope code {envelope_code} in flags {flags:#04x}")
    order = "<" if little_endian else ">"
    n_doubles = _ENVELOPE_DOUBLES[envelope_code]
    wkb_offset = 8 + 8 * n_doubles
    if len(blob) < wkb_offset + 5:
        raise ValueError(f"blob of {len(blob)} bytes is shorter than its header + WKB ({wkb_offset + 5} bytes)")
    (srs_id,) = struct.unpack_from(order + "i", blob, 4)
    envelope = struct.unpack_from(f"{order}{n_doubles}d", blob, 8) if n_doubles else ()
    return GeometryHeader(
        version=version,
        little_endian=little_endian,
        envelope_code=envelope_code,
        empty=bool(flags & 0x10),
        extended=bool(flags & 0x20),
        srs_id=srs_id,
        envelope=tuple(envelope),
        wkb_offset=wkb_offset,
    )


@dataclass
class GpkgTable:
    """One layer as columns: ``fid`` (int64), ``geometry`` (shapely objects, None for attribute tables) and the
    attribute columns (int64; float64 with NaN where an integer column has NULLs, like pandas; object for text)."""

    name: str
    path: Path
    fid: np.ndarray
    geometry: np.ndarray | None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.fid)

    def column(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise GpkgError(
                f"{self.path}: table {self.name!r} has no column {name!r}; columns: {sorted(self.columns)}"
            ) from None

    def has_column(self, name: str) -> bool:
        return name in self.columns


class GeoPackage:
    """A read-only GeoPackage file: layer list, ``meta`` key/values and layers as :class:`GpkgTable`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GpkgError(f"{self.path}: map file not found")
        self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            self._geometry_columns = self._check_and_list_geometry_columns()
        except BaseException:
            self._conn.close()
            raise
        self._meta: dict[str, str] | None = None

    def _check_and_list_geometry_columns(self) -> dict[str, tuple[str, str, int]]:
        """Validate the GeoPackage core tables; table name -> (geometry column, geometry type, srs_id)."""
        try:
            application_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise GpkgError(f"{self.path}: not a GeoPackage (not an SQLite database: {error})") from None
        missing = {"gpkg_contents", "gpkg_geometry_columns", "gpkg_spatial_ref_sys"} - tables
        if missing:
            raise GpkgError(f"{self.path}: not a GeoPackage (missing required tables {sorted(missing)})")
        if application_id not in (0, *GPKG_APPLICATION_IDS):
            raise GpkgError(f"{self.path}: not a GeoPackage (application_id {application_id:#x}, expected 'GPKG')")
        rows = self._conn.execute(
            "SELECT table_name, column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns"
        ).fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> GeoPackage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def layers(self) -> list[str]:
        """Layer names in ``gpkg_contents`` order (features and attribute tables; tiles are skipped)."""
        rows = self._conn.execute("SELECT table_name, data_type FROM gpkg_contents ORDER BY rowid").fetchall()
        return [name for name, data_type in rows if data_type in ("features", "attributes")]

    def has_layer(self, name: str) -> bool:
        return name in self.layers()

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (empty if the map has none)."""
        if self._meta is None:
            self._meta = {}
            if self.has_layer(META):
                table = self.read_table(META, reproject=False)
                self._meta = {str(k): str(v) for k, v in zip(table.column("key"), table.column("value"), strict=True)}
        return self._meta

    @property
    def projected_crs(self) -> str | None:
        """``meta.projectedCoordSystem``, the CRS nuPlan reprojects every layer to (e.g. ``epsg:32611``)."""
        return self.meta().get("projectedCoordSystem")

    def geometry_srs_epsg(self, name: str) -> int | None:
        """EPSG code of a feature table's stored CRS (None for undefined srs_id -1/0 or attribute tables)."""
        if name not in self._geometry_columns:
            return None
        srs_id = int(self._geometry_columns[name][2])
        row = self._conn.execute(
            "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)
        ).fetchone()
        if row is not None and str(row[0]).upper() == "EPSG" and int(row[1]) > 0:
            return int(row[1])
        return None if srs_id in (-1, 0) else srs_id

    def read_table(self, name: str, *, reproject: bool = True) -> GpkgTable:
        """Read a layer ordered by ``fid``; with ``reproject``, geometries end up in ``projected_crs``."""
        if name not in self.layers():
            raise GpkgError(f"{self.path}: required table {name!r} is missing; layers present: {self.layers()}")
        info = self._conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        if not info:
            raise GpkgError(f"{self.path}: table {name!r} is listed in gpkg_contents but does not exist")
        declared = {row[1]: str(row[2] or "").upper() for row in info}
        pk = [row[1] for row in info if row[5]]
        fid_column = "fid" if "fid" in declared else (pk[0] if pk else "rowid")
        geometry_column = self._geometry_columns.get(name, (None,))[0]
        attributes = [c for c in declared if c not in (fid_column, geometry_column)]
        selected = [fid_column] + ([geometry_column] if geometry_column else []) + attributes
        sql = 'SELECT {} FROM "{}" ORDER BY {}'.format(", ".join(f'"{c}"' for c in selected), name, f'"{fid_column}"')
        try:
            rows = self._conn.execute(sql).fetchall()
        except sqlite3.DatabaseError as error:
            raise GpkgError(f"{self.path}: table {name!r} cannot be read: {error}") from None
        values = list(zip(*rows, strict=True)) if rows else [()] * len(selected)
        fid = np.asarray(values[0], dtype=np.int64)
        geometry = None
        if geometry_column:
            geometry = _decode_geometries(values[1], fid, self.path, name)
            if reproject:
                geometry = self._reproject(geometry, name)
        first_attribute = 2 if geometry_column else 1
        columns = {
            column: _to_column(values[first_attribute + i], declared[column]) for i, column in enumerate(attributes)
        }
        return GpkgTable(name=name, path=self.path, fid=fid, geometry=geometry, columns=columns)

    def _reproject(self, geometry: np.ndarray, name: str) -> np.ndarray:
        source = self.geometry_srs_epsg(name)
        target_text = self.projected_crs
        if target_text is None:
            if source is not None and not is_utm_epsg(source):
                raise GpkgError(
                    f"{self.path}: table {name!r} is stored in EPSG:{source} but the map has no "
                    "meta.projectedCoordSystem to project it to"
                )
            return geometry
        target = parse_projected_crs(target_text, self.path)
        if source is None or source == target:
            return geometry
        zone, south = utm_zone_of_epsg(target)
        if source == WGS84_EPSG:
            return shapely.transform(geometry, lambda xy: lonlat_to_utm(xy, zone, south))
        if not is_utm_epsg(source):
            raise GpkgError(f"{self.path}: table {name!r} is stored in unsupported CRS EPSG:{source}")
        source_zone = utm_zone_of_epsg(source)
        return shapely.transform(geometry, lambda xy: lonlat_to_utm(utm_to_lonlat(xy, *source_zone), zone, south))


def read_layers(path: str | Path, names: list[str] | tuple[str, ...]) -> dict[str, GpkgTable]:
    """Read several layers of one map file (each projected to the map's ``projectedCoordSystem``)."""
    with GeoPackage(path) as gpkg:
        return {name: gpkg.read_table(name) for name in names}


def _decode_geometries(blobs: tuple, fid: np.ndarray, path: Path, table: str) -> np.ndarray:
    """GeoPackage blobs -> shapely geometries (None for NULL), with the offending fid named on failure."""
    wkbs: list[bytes | None] = []
    for index, blob in enumerate(blobs):
        if blob is None:
            wkbs.append(None)
            continue
        try:
            header = parse_geometry_header(blob)
            if header.extended:
                raise ValueError("extended (non-standard) GeoPackage geometry types are not supported")
        except (ValueError, TypeError, struct.error) as error:
            raise GpkgError(f"{path}: table {table!r} fid {fid[index]}: corrupt geometry blob ({error})") from None
        wkbs.append(bytes(blob[header.wkb_offset :]))
    try:
        return shapely.from_wkb(np.asarray(wkbs, dtype=object), on_invalid="raise")
    except (shapely.errors.GEOSException, ValueError, TypeError):
        for index, wkb in enumerate(wkbs):
            try:
                shapely.from_wkb(wkb, on_invalid="raise")
            except (shapely.errors.GEOSException, ValueError, TypeError) as error:
                raise GpkgError(f"{path}: table {table!r} fid {fid[index]}: corrupt WKB geometry ({error})") from None
        raise


def _to_column(values: tuple, declared_type: str) -> np.ndarray:
    """SQLite values -> a numpy column typed like GDAL/pandas would type it from the declared SQL type."""
    is_null = [v is None for v in values]
    if any(t in declared_type for t in ("INT", "BOOL")) and all(isinstance(v, int) or v is None for v in values):
        if any(is_null):
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return np.asarray(values, dtype=np.int64)
    if any(t in declared_type for t in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")) or (
        values and all(isinstance(v, int | float) or v is None for v in values) and not all(is_null)
    ):
        try:
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            pass
    return np.asarray(values, dtype=object)


# --- Coordinate reference systems: WGS84 <-> UTM (transverse Mercator, Krüger series to n^6, Karney 2011) -------

_A = 6378137.0
_F = 1.0 / 298.257223563
_K0 = 0.9996
_N = _F / (2.0 - _F)
_E = math.sqrt(_F * (2.0 - _F))
_RECTIFYING_RADIUS = _A / (1.0 + _N) * (1.0 + _N**2 / 4.0 + _N**4 / 64.0 + _N**6 / 256.0)
_ALPHA = (
    _N / 2 - 2 * _N**2 / 3 + 5 * _N**3 / 16 + 41 * _N**4 / 180 - 127 * _N**5 / 288 + 7891 * _N**6 / 37800,
    13 * _N**2 / 48 - 3 * _N**3 / 5 + 557 * _N**4 / 1440 + 281 * _N**5 / 630 - 1983433 * _N**6 / 1935360,
    61 * _N**3 / 240 - 103 * _N**4 / 140 + 15061 * _N**5 / 26880 + 167603 * _N**6 / 181440,
    49561 * _N**4 / 161280 - 179 * _N**5 / 168 + 6601661 * _N**6 / 7257600,
    34729 * _N**5 / 80640 - 3418889 * _N**6 / 1995840,
    212378941 * _N**6 / 319334400,
)
_BETA = (
    _N / 2 - 2 * _N**2 / 3 + 37 * _N**3 / 96 - _N**4 / 360 - 81 * _N**5 / 512 + 96199 * _N**6 / 604800,
    _N**2 / 48 + _N**3 / 15 - 437 * _N**4 / 1440 + 46 * _N**5 / 105 - 1118711 * _N**6 / 3870720,
    17 * _N**3 / 480 - 37 * _N**4 / 840 - 209 * _N**5 / 4480 + 5569 * _N**6 / 90720,
    4397 * _N**4 / 161280 - 11 * _N**5 / 504 - 830251 * _N**6 / 7257600,
    4583 * _N**5 / 161280 - 108847 * _N**6 / 3991680,
    20648693 * _N**6 / 638668800,
)


def is_utm_epsg(epsg: int) -> bool:
    """Whether the code is a WGS84 / UTM zone (EPSG:326zz north, 327zz south)."""
    return 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760


def utm_zone_of_epsg(epsg: int) -> tuple[int, bool]:
    """(zone, south) of a WGS84 / UTM EPSG code."""
    if not is_utm_epsg(epsg):
        raise GpkgError(f"EPSG:{epsg} is not a WGS84 / UTM zone")
    return epsg % 100, epsg > 32700


def parse_projected_crs(text: str | int, path: Path | str = "") -> int:
    """EPSG code of a UTM CRS given as ``epsg:32611`` / ``EPSG:32611`` / ``32611`` / ``+proj=utm +zone=11 [+south]``."""
    text = str(text).strip()
    match = re.fullmatch(r"(?:epsg:)?(\d+)", text, flags=re.IGNORECASE)
    if match:
        code = int(match.group(1))
        if is_utm_epsg(code):
            return code
    elif "+proj=utm" in text and (zone := re.search(r"\+zone=(\d+)", text)):
        return (32700 if "+south" in text else 32600) + int(zone.group(1))
    raise GpkgError(f"{path}: unsupported projectedCoordSystem {text!r}; expected a WGS84 / UTM code like 'epsg:32611'")


def _central_meridian(zone: int) -> float:
    return math.radians(6.0 * zone - 183.0)


def lonlat_to_utm(lonlat: np.ndarray, zone: int, south: bool = False) -> np.ndarray:
    """WGS84 (lon, lat) degrees [..., 2] -> UTM (easting, northing) metres (nm-level accurate within a zone)."""
    lonlat = np.asarray(lonlat, dtype=np.float64)
    lam = np.radians(lonlat[..., 0]) - _central_meridian(zone)
    phi = np.radians(lonlat[..., 1])
    tau = np.tan(phi)
    sigma = np.sinh(_E * np.arctanh(_E * tau / np.sqrt(1.0 + tau**2)))
    tau_p = tau * np.sqrt(1.0 + sigma**2) - sigma * np.sqrt(1.0 + tau**2)
    xi_p = np.arctan2(tau_p, np.cos(lam))
    eta_p = np.arcsinh(np.sin(lam) / np.sqrt(tau_p**2 + np.cos(lam) ** 2))
    xi, eta = xi_p.copy(), eta_p.copy()
    for j, alpha in enumerate(_ALPHA, start=1):
        xi += alpha * np.sin(2 * j * xi_p) * np.cosh(2 * j * eta_p)
        eta += alpha * np.cos(2 * j * xi_p) * np.sinh(2 * j * eta_p)
    easting = 500000.0 + _K0 * _RECTIFYING_RADIUS * eta
    northing = (10000000.0 if south else 0.0) + _K0 * _RECTIFYING_RADIUS * xi
    return np.stack([easting, northing], axis=-1)


def utm_to_lonlat(xy: np.ndarray, zone: int, south: bool = False) -> np.ndarray:
    """UTM (easting, northing) metres [..., 2] -> WGS84 (lon, lat) degrees; inverse of :func:`lonlat_to_utm`."""
    xy = np.asarray(xy, dtype=np.float64)
    eta = (xy[..., 0] - 500000.0) / (_K0 * _RECTIFYING_RADIUS)
    xi = (xy[..., 1] - (10000000.0 if south else 0.0)) / (_K0 * _RECTIFYING_RADIUS)
    xi_p, eta_p = xi.copy(), eta.copy()
    for j, beta in enumerate(_BETA, start=1):
        xi_p -= beta * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
        eta_p -= beta * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
    tau_p = np.sin(xi_p) / np.sqrt(np.sinh(eta_p) ** 2 + np.cos(xi_p) ** 2)
    lam = np.arctan2(np.sinh(eta_p), np.cos(xi_p))
    tau = tau_p.copy()
    for _ in range(5):  # Newton on the conformal latitude; converges to machine precision in 2-3 steps
        sigma = np.sinh(_E * np.arctanh(_E * tau / np.sqrt(1.0 + tau**2)))
        tau_i = tau * np.sqrt(1.0 + sigma**2) - sigma * np.sqrt(1.0 + tau**2)
        tau += (
            (tau_p - tau_i)
            / np.sqrt(1.0 + tau_i**2)
            * (1.0 + (1.0 - _E**2) * tau**2)
            / ((1.0 - _E**2) * np.sqrt(1.0 + tau**2))
        )
    lon = np.degrees(lam + _central_meridian(zone))
    lat = np.degrees(np.arctan(tau))
    return np.stack([lon, lat], axis=-1)
