"""Dataset locations: NAVSIM's environment variables with explicit-argument overrides, and the OpenScene layout.

``$OPENSCENE_DATA_ROOT/navsim_logs/<split>/<log_name>.pkl`` and ``$OPENSCENE_DATA_ROOT/sensor_blobs/<split>/`` +
the relative ``data_path`` / ``lidar_path`` of each frame (NAVSIM ``default_dataset_paths.yaml``); maps under
``$NUPLAN_MAPS_ROOT`` with ``$NUPLAN_MAP_VERSION`` (NAVSIM hard-codes ``nuplan-maps-v1.0``, the default here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from navsim_eval.errors import NavsimEvalError

OPENSCENE_DATA_ROOT = "OPENSCENE_DATA_ROOT"
NUPLAN_MAPS_ROOT = "NUPLAN_MAPS_ROOT"
NUPLAN_MAP_VERSION = "NUPLAN_MAP_VERSION"
DEFAULT_MAP_VERSION = "nuplan-maps-v1.0"
LOGS_DIR = "navsim_logs"
SENSORS_DIR = "sensor_blobs"


class DatasetPathError(NavsimEvalError):
    """A dataset location is not given, not set in the environment, or does not exist."""


def _from_env(value: str | Path | None, variable: str, what: str) -> Path:
    if value is not None and str(value) != "":
        return Path(value).expanduser()
    env = os.environ.get(variable, "")
    if not env:
        raise DatasetPathError(f"{what} is not set: pass it explicitly or set the environment variable ${variable}")
    return Path(env).expanduser()


def openscene_data_root(data_root: str | Path | None = None) -> Path:
    """``data_root`` if given, else ``$OPENSCENE_DATA_ROOT``."""
    return _from_env(data_root, OPENSCENE_DATA_ROOT, "the OpenScene data root")


def nuplan_maps_root(maps_root: str | Path | None = None) -> Path:
    """``maps_root`` if given, else ``$NUPLAN_MAPS_ROOT`` (holds ``<version>.json`` and ``<location>/<v>/map.gpkg``)."""
    return _from_env(maps_root, NUPLAN_MAPS_ROOT, "the nuPlan maps root")


def nuplan_map_version(version: str | None = None) -> str:
    """``version`` if given, else ``$NUPLAN_MAP_VERSION``, else ``nuplan-maps-v1.0`` (what NAVSIM hard-codes)."""
    return version or os.environ.get(NUPLAN_MAP_VERSION) or DEFAULT_MAP_VERSION


def navsim_log_dir(split: str, data_root: str | Path | None = None) -> Path:
    """``<data_root>/navsim_logs/<split>``."""
    return openscene_data_root(data_root) / LOGS_DIR / _split_name(split)


def sensor_blob_dir(split: str, data_root: str | Path | None = None) -> Path:
    """``<data_root>/sensor_blobs/<split>``: the root of the frames' relative camera and lidar paths."""
    return openscene_data_root(data_root) / SENSORS_DIR / _split_name(split)


def log_pickle_path(split: str, log_name: str, data_root: str | Path | None = None) -> Path:
    """``<data_root>/navsim_logs/<split>/<log_name>.pkl``."""
    if not log_name or "/" in log_name or log_name in (".", ".."):
        raise DatasetPathError(f"invalid log name {log_name!r}")
    return navsim_log_dir(split, data_root) / f"{log_name}.pkl"


def _split_name(split: str) -> str:
    if not split or "/" in split or split in (".", ".."):
        raise DatasetPathError(f"invalid data split name {split!r} (e.g. 'test', 'trainval', 'mini')")
    return split


@dataclass(frozen=True)
class OpenScenePaths:
    """The log and sensor folders of one data split."""

    data_root: Path
    split: str

    @classmethod
    def resolve(cls, split: str, data_root: str | Path | None = None) -> OpenScenePaths:
        return cls(openscene_data_root(data_root), _split_name(split))

    @property
    def log_dir(self) -> Path:
        return self.data_root / LOGS_DIR / self.split

    @property
    def sensor_dir(self) -> Path:
        return self.data_root / SENSORS_DIR / self.split
