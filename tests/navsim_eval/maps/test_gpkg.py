"""GeoPackage reading and writing: binary headers, writer -> reader round trip, CRS handling and file errors."""

from __future__ import annotations

import sqlite3
import struct

import numpy as np
import pytest
import shapely

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps import gpkg
from navsim_eval.maps.gpkg import GeoPackage, GpkgError, lonlat_to_utm, parse_geometry_header, utm_to_lonlat
from navsim_eval.maps.gpkg_writer import LaneSpec, MapSpec, RoadblockSpec, encode_geometry, write_map

from .map_fixtures import rect, road_spec, write_road


def test_header_of_written_blob_has_xy_envelope():
    polygon = shapely.Polygon(rect(1, 4, -2, 7))
    blob = encode_geometry(polygon, 32611)
    header = parse_geometry_header(blob)
    assert header.little_endian and header.version == 0 and not header.empty and not header.extended
    assert header.srs_id == 32611 and header.envelope_code == 1
    assert header.envelope == (1.0, 4.0, -2.0, 7.0)  # minx, maxx, miny, maxy
    assert header.wkb_offset == 40 and shapely.from_wkb(blob[header.wkb_offset :]).equals(polygon)


def test_header_big_endian_xyz_envelope_and_empty_flag():
    wkb = shapely.to_wkb(shapely.Point(3.0, 4.0), byte_order=0)
    blob = b"GP" + bytes([0, 0b0100]) + struct.pack(">i", 4326) + struct.pack(">6d", 3, 3, 4, 4, 0, 0) + wkb
    header = parse_geometry_header(blob)
    assert not header.little_endian and header.envelope_code == 2 and header.srs_id == 4326
    assert header.wkb_offset == 8 + 48 and header.envelope[:4] == (3.0, 3.0, 4.0, 4.0)
    assert shapely.from_wkb(blob[header.wkb_offset :]).equals(shapely.Point(3, 4))
    empty = encode_geometry(shapely.Polygon(), 0)
    assert parse_geometry_header(empty).empty and parse_geometry_header(empty).envelope_code == 0


@pytest.mark.parametrize(
    ("blob", "message"),
    [(b"XX" + bytes(30), "magic"), (b"GP\x01\x03" + bytes(40), "version"), (b"GP\x00\x0e" + bytes(40), "envelope")],
)
def test_header_errors(blob, message):
    with pytest.raises(ValueError, match=message):
        parse_geometry_header(blob)


def test_round_trip_writer_reader(tmp_path):
    path = write_road(tmp_path / "map.gpkg")
    spec = road_spec()
    with GeoPackage(path) as package:
        assert package.layers()[:2] == [gpkg.LANES, gpkg.LANE_CONNECTORS]
        assert set(gpkg.REQUIRED_LAYERS) <= set(package.layers()) and gpkg.META in package.layers()
        assert package.projected_crs == "epsg:32611" and package.geometry_srs_epsg(gpkg.LANES) == 32611
        lanes = package.read_table(gpkg.LANES)
        connectors = package.read_table(gpkg.LANE_CONNECTORS)
        baselines = package.read_table(gpkg.BASELINE_PATHS)
        meta = package.read_table(gpkg.META)
    assert list(lanes.fid) == [lane.id for lane in spec.lanes]
    assert lanes.column("lane_fid").dtype == np.int64 and list(lanes.column("lane_group_fid"))[:2] == [100, 100]
    speed = lanes.column("speed_limit_mps")
    assert speed.dtype == np.float64 and np.isnan(speed[0]) and speed[1] == pytest.approx(13.4)
    for geometry, lane in zip(lanes.geometry, spec.lanes, strict=True):
        assert geometry.equals(shapely.Polygon(lane.polygon))
    assert connectors.geometry[0].geom_type == "LineString" and list(connectors.column("entry_lane_fid")) == [
        3,
        3,
        5,
        6,
        5,
    ]
    assert connectors.column("traffic_light_stop_line_fids").dtype == object
    # One baseline per lane and connector; NULL foreign keys become NaN like pandas.
    assert len(baselines) == len(spec.lanes) + len(spec.lane_connectors)
    assert np.isnan(baselines.column("lane_connector_fid")).sum() == len(spec.lanes)
    assert meta.geometry is None and list(meta.column("key")) == ["projectedCoordSystem"]


def test_lonlat_storage_is_reprojected_to_the_projected_crs(tmp_path):
    path = write_road(tmp_path / "map.gpkg", store_lonlat=True)
    with GeoPackage(path) as package:
        assert package.geometry_srs_epsg(gpkg.LANES) == 4326
        raw = package.read_table(gpkg.LANES, reproject=False)
        projected = package.read_table(gpkg.LANES)
    lon, lat = shapely.get_coordinates(raw.geometry[0]).T
    assert np.all((-124 < lon) & (lon < -120)) and np.all(np.abs(lat) < 1e-3)  # west of zone 11's meridian
    original = shapely.get_coordinates(shapely.Polygon(road_spec().lanes[0].polygon))
    np.testing.assert_allclose(shapely.get_coordinates(projected.geometry[0]), original, atol=1e-6)


def test_transverse_mercator_reference_values():
    # Meridian arc to 45°N times k0 = 0.9996, and the zone's origin.
    np.testing.assert_allclose(lonlat_to_utm([-75.0, 45.0], 18), [500000.0, 4982950.4002], atol=1e-3)
    np.testing.assert_allclose(lonlat_to_utm([3.0, 0.0], 31), [500000.0, 0.0], atol=1e-9)
    lonlat = np.array([[-115.17, 36.12], [-71.06, 42.36], [103.79, 1.30]])
    for point, zone in zip(lonlat, (11, 19, 48), strict=True):
        np.testing.assert_allclose(utm_to_lonlat(lonlat_to_utm(point, zone), zone), point, atol=1e-11)
    south = lonlat_to_utm([151.2, -33.9], 56, south=True)
    assert 6.2e6 < south[1] < 6.3e6
    np.testing.assert_allclose(utm_to_lonlat(south, 56, south=True), [151.2, -33.9], atol=1e-11)


def test_parse_projected_crs():
    assert gpkg.parse_projected_crs("epsg:32611") == 32611
    assert gpkg.parse_projected_crs("EPSG:32648") == 32648
    assert gpkg.parse_projected_crs("+proj=utm +zone=19 +datum=WGS84 +units=m +no_defs") == 32619
    with pytest.raises(GpkgError, match="unsupported projectedCoordSystem"):
        gpkg.parse_projected_crs("epsg:3857")


def test_missing_required_table_names_file_and_table(tmp_path):
    path = write_road(tmp_path / "map.gpkg")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE baseline_paths")
        conn.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = 'baseline_paths'")
        conn.execute("DELETE FROM gpkg_contents WHERE table_name = 'baseline_paths'")
    with GeoPackage(path) as package, pytest.raises(GpkgError, match=r"map\.gpkg: required table 'baseline_paths'"):
        package.read_table(gpkg.BASELINE_PATHS)


def test_table_listed_but_absent(tmp_path):
    path = write_road(tmp_path / "map.gpkg")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE walkways")
    with GeoPackage(path) as package, pytest.raises(GpkgError, match="'walkways' is listed in gpkg_contents"):
        package.read_table(gpkg.WALKWAYS)


def test_corrupt_blob_names_table_and_fid(tmp_path):
    path = write_road(tmp_path / "map.gpkg")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE lanes_polygons SET geom = ? WHERE fid = 3", (b"GP\x00\x03" + bytes(4) + b"junk" * 10,))
        conn.execute("UPDATE lane_groups_polygons SET geom = ? WHERE fid = 101", (b"NOTAGEOMETRY" * 3,))
    with GeoPackage(path) as package:
        with pytest.raises(GpkgError, match=r"'lanes_polygons' fid 3: corrupt WKB"):
            package.read_table(gpkg.LANES)
        with pytest.raises(GpkgError, match=r"'lane_groups_polygons' fid 101: corrupt geometry blob"):
            package.read_table(gpkg.ROADBLOCKS)


def test_not_a_geopackage(tmp_path):
    text = tmp_path / "map.gpkg"
    text.write_text("this is not sqlite" * 100)
    with pytest.raises(GpkgError, match="not a GeoPackage"):
        GeoPackage(text)
    plain = tmp_path / "plain.sqlite"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(GpkgError, match="missing required tables"):
        GeoPackage(plain)
    with pytest.raises(GpkgError, match="map file not found"):
        GeoPackage(tmp_path / "absent.gpkg")
    assert issubclass(GpkgError, InvalidSceneError)


def test_writer_validates_references_and_refuses_overwrite(tmp_path):
    bad = MapSpec(
        lanes=[LaneSpec(1, 99, 0, rect(0, 1, 0, 1), [(0, 0.5), (1, 0.5)])],
        lane_connectors=[],
        roadblocks=[RoadblockSpec(100, rect(0, 1, 0, 1))],
        roadblock_connectors=[],
    )
    with pytest.raises(InvalidSceneError, match="lane 1 references unknown roadblock 99"):
        write_map(bad, tmp_path / "bad.gpkg")
    path = write_road(tmp_path / "map.gpkg")
    with pytest.raises(FileExistsError):
        write_road(path)
    write_road(path, overwrite=True)
