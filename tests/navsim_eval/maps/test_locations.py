"""Map locations: names, nuPlan's folder layout, environment variables and the map cache."""

from __future__ import annotations

import json

import pytest

from navsim_eval.maps import locations
from navsim_eval.maps.locations import (
    MapNotFoundError,
    canonical_location,
    clear_map_cache,
    load_map,
    register_map,
    resolve_map_path,
)

from .map_fixtures import write_road


def test_canonical_location():
    assert canonical_location("las_vegas") == "us-nv-las-vegas-strip"
    assert canonical_location("sg-one-north") == "sg-one-north"
    with pytest.raises(MapNotFoundError, match=r"unknown map location 'us-ma-bostn'.*did you mean 'us-ma-boston'"):
        canonical_location("us-ma-bostn")


def test_resolves_the_released_layout_from_the_version_json(tmp_path):
    (tmp_path / "nuplan-maps-v1.0.json").write_text(json.dumps({"us-ma-boston": {"version": "9.12.1817"}}))
    path = write_road(tmp_path / "us-ma-boston" / "9.12.1817" / "map.gpkg")
    assert resolve_map_path("us-ma-boston", tmp_path) == path
    with pytest.raises(MapNotFoundError, match="no 'version' for location 'sg-one-north'"):
        resolve_map_path("sg-one-north", tmp_path)


def test_environment_variables_and_unrenamed_download_folder(tmp_path, monkeypatch):
    path = write_road(tmp_path / "nuplan-maps-v1.0" / "us-nv-las-vegas-strip" / "9.15.1915" / "map.gpkg")
    monkeypatch.setenv(locations.MAPS_ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(locations.MAP_VERSION_ENV, raising=False)
    assert resolve_map_path("las_vegas") == path  # no json: the released version folder
    monkeypatch.setenv(locations.MAP_VERSION_ENV, "other-version")
    with pytest.raises(MapNotFoundError, match="not found; tried"):
        resolve_map_path("las_vegas")
    monkeypatch.delenv(locations.MAPS_ROOT_ENV)
    with pytest.raises(MapNotFoundError, match="NUPLAN_MAPS_ROOT"):
        resolve_map_path("las_vegas")


def test_register_and_load_with_cache(tmp_path):
    path = register_map(tmp_path, "sg-one-north", "synthetic-1")
    assert path == tmp_path / "sg-one-north" / "synthetic-1" / "map.gpkg"
    assert json.loads((tmp_path / "nuplan-maps-v1.0.json").read_text())["sg-one-north"]["version"] == "synthetic-1"
    with pytest.raises(MapNotFoundError, match="map file for 'sg-one-north' not found"):
        load_map("sg-one-north", tmp_path)
    write_road(path)
    clear_map_cache()
    first = load_map("sg-one-north", tmp_path)
    assert load_map("sg-one-north", tmp_path) is first and first.map_name == "sg-one-north"
    assert len(first.lanes) == 8
