"""Map locations and where their ``map.gpkg`` files live, with a small cache of opened maps.

nuPlan's ``GPKGMapsDB`` reads ``<maps_root>/<map_version>.json`` (``map_version`` = ``nuplan-maps-v1.0``), takes
``json[location]["version"]`` and opens ``<maps_root>/<location>/<version>/map.gpkg``; there is no
``<map_version>/`` folder level (NAVSIM's download script renames the unzipped ``nuplan-maps-v1.0`` folder to
``maps``). An un-renamed ``<maps_root>/<map_version>/`` folder is accepted too.
"""

from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from pathlib import Path

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.nuplan_map import NuPlanMap

MAPS_ROOT_ENV = "NUPLAN_MAPS_ROOT"
MAP_VERSION_ENV = "NUPLAN_MAP_VERSION"
DEFAULT_MAP_VERSION = "nuplan-maps-v1.0"

# Location -> map version folder of the released maps (nuplan-devkit docs/dataset_setup.md).
MAP_VERSIONS = {
    "sg-one-north": "9.17.1964",
    "us-ma-boston": "9.12.1817",
    "us-nv-las-vegas-strip": "9.15.1915",
    "us-pa-pittsburgh-hazelwood": "9.17.1937",
}
MAP_LOCATIONS = tuple(MAP_VERSIONS)
# Location -> projected CRS of its map (WGS84 / UTM north zones: Singapore 48, Boston 19, Las Vegas 11, Pittsburgh 17).
PROJECTED_CRS = {
    "sg-one-north": "epsg:32648",
    "us-ma-boston": "epsg:32619",
    "us-nv-las-vegas-strip": "epsg:32611",
    "us-pa-pittsburgh-hazelwood": "epsg:32617",
}
# Log ``map_location`` values that name another map (NavSimScenario maps "las_vegas" to the strip map).
LOCATION_ALIASES = {"las_vegas": "us-nv-las-vegas-strip"}


class MapNotFoundError(InvalidSceneError):
    """An unknown map location, or a maps root without the requested map file."""


def canonical_location(name: str) -> str:
    """The map location for a log's ``map_location`` (``las_vegas`` -> ``us-nv-las-vegas-strip``)."""
    location = LOCATION_ALIASES.get(name, name)
    if location not in MAP_VERSIONS:
        close = difflib.get_close_matches(name, [*MAP_LOCATIONS, *LOCATION_ALIASES], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise MapNotFoundError(f"unknown map location {name!r}; expected one of {list(MAP_LOCATIONS)}{hint}")
    return location


def maps_root(root: str | Path | None = None) -> Path:
    """The maps root: the argument, else ``$NUPLAN_MAPS_ROOT``."""
    value = root if root is not None else os.environ.get(MAPS_ROOT_ENV)
    if not value:
        raise MapNotFoundError(f"no maps root: pass maps_root or set ${MAPS_ROOT_ENV}")
    return Path(value).expanduser()


def map_version(version: str | None = None) -> str:
    """The map-set version: the argument, else ``$NUPLAN_MAP_VERSION``, else ``nuplan-maps-v1.0``."""
    return version or os.environ.get(MAP_VERSION_ENV) or DEFAULT_MAP_VERSION


def _location_version(root: Path, location: str, version_name: str) -> str:
    """The location's folder version from ``<root>/<map_version>.json``, else the released one, else the only
    folder holding a ``map.gpkg``."""
    version_file = root / f"{version_name}.json"
    if version_file.is_file():
        try:
            versions = json.loads(version_file.read_text())
            return str(versions[location]["version"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise MapNotFoundError(f"{version_file}: no 'version' for location {location!r} ({error!r})") from None
    if (root / location / MAP_VERSIONS[location] / "map.gpkg").is_file():
        return MAP_VERSIONS[location]
    found = sorted(p.parent.name for p in (root / location).glob("*/map.gpkg"))
    return found[0] if len(found) == 1 else MAP_VERSIONS[location]


def resolve_map_path(location: str, root: str | Path | None = None, version: str | None = None) -> Path:
    """``<maps_root>/<location>/<version>/map.gpkg`` for a location (or its log alias), checked to exist."""
    location = canonical_location(location)
    version_name = map_version(version)
    tried = []
    for base in (maps_root(root), maps_root(root) / version_name):
        path = base / location / _location_version(base, location, version_name) / "map.gpkg"
        if path.is_file():
            return path
        tried.append(str(path))
    raise MapNotFoundError(f"map file for {location!r} not found; tried {tried}")


def register_map(root: str | Path, location: str, location_version: str, version: str | None = None) -> Path:
    """Record ``location_version`` for ``location`` in ``<root>/<map_version>.json`` and return the path its
    ``map.gpkg`` must have (for maps written with :mod:`navsim_eval.maps.gpkg_writer`)."""
    location = canonical_location(location)
    root = Path(root)
    version_file = root / f"{map_version(version)}.json"
    versions = json.loads(version_file.read_text()) if version_file.is_file() else {}
    versions.setdefault(location, {})["version"] = location_version
    versions[location].setdefault("layers", {})
    root.mkdir(parents=True, exist_ok=True)
    version_file.write_text(json.dumps(versions, indent=2, sort_keys=True))
    return root / location / location_version / "map.gpkg"


@lru_cache(maxsize=8)
def _open_map(path: str, mtime_ns: int, location: str) -> NuPlanMap:
    return NuPlanMap.from_file(path, location)


def load_map(location: str, root: str | Path | None = None, version: str | None = None) -> NuPlanMap:
    """The :class:`NuPlanMap` of a location, cached per file (re-read when the file changes)."""
    path = resolve_map_path(location, root, version)
    return _open_map(str(path), path.stat().st_mtime_ns, canonical_location(location))


def clear_map_cache() -> None:
    _open_map.cache_clear()
