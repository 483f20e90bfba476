"""NAVSIM synthetic scene pickles: read with an allow-list (hostile and foreign pickles refused naming the class),
turned into scenes with 4 history and 8 future frames; two-stage splits report the tokens nothing provides."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.data.splits import load_split, write_split
from navsim_eval.data.synthetic_scenes import is_synthetic_token, read_synthetic_scene
from navsim_eval.data.two_stage import load_two_stage_scenes
from navsim_eval.errors import InvalidSceneError
from navsim_eval.pipeline_conformance import default_pipeline_dir

TWO_STAGE = default_pipeline_dir().parent / "official_two_stage"
WORLD = default_pipeline_dir() / "worlds" / "synthetic_seed11"
SYNTHETIC = TWO_STAGE / "world_additions" / "navhard_two_stage" / "synthetic_scene_pickles"
pytestmark = pytest.mark.skipif(not SYNTHETIC.is_dir(), reason="official two-stage data not available")


def _first_pickle() -> Path:
    return sorted(SYNTHETIC.glob("*.pkl"))[0]


def test_an_official_synthetic_scene_becomes_a_scene_with_its_future() -> None:
    synthetic = read_synthetic_scene(_first_pickle())
    scene = synthetic.scene
    assert is_synthetic_token(scene.token) and synthetic.scene_token == _first_pickle().stem
    assert len(scene.frames) == 12 and scene.num_history == 4
    times = [frame.timestamp_us for frame in scene.frames]
    assert np.all(np.diff(times) == 500_000)
    assert scene.current_frame.roadblock_ids and scene.map_name == "us-pa-pittsburgh-hazelwood"
    # the future frames hold the extended detections in the global frame, near the current ones
    current = dict(zip(scene.current_frame.boxes.tokens, scene.current_frame.boxes.xyh, strict=True))
    later = dict(zip(scene.frames[4].boxes.tokens, scene.frames[4].boxes.xyh, strict=True))
    shared = set(current) & set(later)
    assert shared and all(np.hypot(*(current[t][:2] - later[t][:2])) < 20.0 for t in shared)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_hostile_pickle_is_refused_naming_the_class(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"scene_metadata": _Exploit()}))
    with pytest.raises(
        InvalidSceneError,
        match=r"evil\.pkl: not a NAVSIM synthetic scene: refusing to load global (posix|nt|os)\.system",
    ):
        read_synthetic_scene(path)
    path.write_bytes(pickle.dumps({"frames": [collections_counter()]}))
    with pytest.raises(InvalidSceneError, match=r"refusing to load global collections\.Counter"):
        read_synthetic_scene(path)


def collections_counter():
    import collections

    return collections.Counter(a=1)


def test_broken_files_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"scene_metadata": {}, "frames": []}))
    with pytest.raises(InvalidSceneError, match=r"x\.pkl: key 'extended_traffic_light_data': missing"):
        read_synthetic_scene(path)
    path.write_bytes(b"\x80\x04 truncated")
    with pytest.raises(InvalidSceneError, match=r"x\.pkl: truncated or corrupt pickle"):
        read_synthetic_scene(path)


def test_missing_synthetic_tokens_are_reported_in_one_line(tmp_path: Path) -> None:
    split = load_split(TWO_STAGE / "splits", "synthetic_two_stage")
    folder = tmp_path / "pickles"
    shutil.copytree(SYNTHETIC, folder)
    gone = [read_synthetic_scene(path) for path in sorted(folder.glob("*.pkl"))[:3]]
    for synthetic in gone:
        synthetic.path.unlink()
    scenes = load_two_stage_scenes(split, WORLD, folder)
    assert len(scenes.stage_one) == 24 and len(scenes.stage_two) == 69
    report = scenes.missing_report()
    assert report is not None and "\n" not in report
    assert report.startswith("split synthetic_two_stage: 3 synthetic tokens of reactive_all_mapping have no scene")
    assert all(synthetic.token in report for synthetic in gone)


def test_split_mapping_round_trips_and_bad_mappings_name_the_entry(tmp_path: Path) -> None:
    split = load_split(TWO_STAGE / "splits", "synthetic_two_stage")
    assert len(split.two_stage) == 12 and len(split.stage_one_tokens()) == 24 and len(split.stage_two_tokens()) == 72
    write_split(tmp_path, dataclasses.replace(split, name="copy"))
    assert load_split(tmp_path, "copy").two_stage == split.two_stage
    text = (tmp_path / "copy.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("'abb72c5f7fa3cb0ac'", "12345", 1))
    with pytest.raises(Exception, match=r"bad\.yaml: reactive_all_mapping\[0\]: tokens must be strings"):
        load_split(tmp_path, "bad")
