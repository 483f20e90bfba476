"""Dataset paths: explicit arguments win over NAVSIM's environment variables; unset ones name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from navsim_eval.data.paths import (
    DEFAULT_MAP_VERSION,
    DatasetPathError,
    OpenScenePaths,
    log_pickle_path,
    navsim_log_dir,
    nuplan_map_version,
    nuplan_maps_root,
    openscene_data_root,
    sensor_blob_dir,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("OPENSCENE_DATA_ROOT", "NUPLAN_MAPS_ROOT", "NUPLAN_MAP_VERSION"):
        monkeypatch.delenv(name, raising=False)


def test_unset_variables_are_named():
    with pytest.raises(DatasetPathError, match=r"\$OPENSCENE_DATA_ROOT"):
        openscene_data_root()
    with pytest.raises(DatasetPathError, match=r"\$NUPLAN_MAPS_ROOT"):
        nuplan_maps_root()
    assert nuplan_map_version() == DEFAULT_MAP_VERSION == "nuplan-maps-v1.0"


def test_environment_and_explicit_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENSCENE_DATA_ROOT", str(tmp_path / "env"))
    monkeypatch.setenv("NUPLAN_MAPS_ROOT", str(tmp_path / "maps"))
    monkeypatch.setenv("NUPLAN_MAP_VERSION", "nuplan-maps-v9")
    assert openscene_data_root() == tmp_path / "env"
    assert openscene_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert nuplan_maps_root() == tmp_path / "maps"
    assert nuplan_map_version() == "nuplan-maps-v9" and nuplan_map_version("v1") == "v1"


def test_openscene_layout(tmp_path):
    assert navsim_log_dir("test", tmp_path) == tmp_path / "navsim_logs" / "test"
    assert sensor_blob_dir("test", tmp_path) == tmp_path / "sensor_blobs" / "test"
    assert log_pickle_path("mini", "log_a", tmp_path) == tmp_path / "navsim_logs" / "mini" / "log_a.pkl"
    paths = OpenScenePaths.resolve("trainval", str(tmp_path))
    assert (paths.log_dir, paths.sensor_dir) == (tmp_path / "navsim_logs/trainval", tmp_path / "sensor_blobs/trainval")
    with pytest.raises(DatasetPathError, match="invalid data split"):
        navsim_log_dir("../etc", tmp_path)
    with pytest.raises(DatasetPathError, match="invalid log name"):
        log_pickle_path("test", "a/b", Path("/x"))
