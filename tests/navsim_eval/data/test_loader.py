"""SceneLoader: scenes from written logs, the skip report, camera checks, token lists, speed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_eval.data.loader import (
    SKIP_DUPLICATE_TOKEN,
    SKIP_INVALID_FRAME,
    SKIP_MISSING_CAMERA,
    SKIP_UNREADABLE_LOG,
    SceneLoader,
)
from navsim_eval.data.openscene import CAMERA_NAMES, read_log
from navsim_eval.data.openscene_writer import encode_frame, write_log, write_split_log
from navsim_eval.data.paths import DatasetPathError
from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.scene import Scene
from tests.navsim_eval.data.synthetic_logs import make_frames, write_camera_files, write_synthetic_log

MAP = "us-nv-las-vegas-strip"


@pytest.fixture
def two_logs(tmp_path):
    log_dir = tmp_path / "navsim_logs" / "mini"
    write_synthetic_log(log_dir, "log_a", make_frames(30, log_tag="a"))
    write_synthetic_log(log_dir, "log_b", make_frames(20, log_tag="b", empty_route=(3,)), map_location="las_vegas")
    return tmp_path


def test_scenes_of_a_split(two_logs):
    loader = SceneLoader(two_logs, "mini", SceneFilter())
    # log_a: windows at 0 and 14 (current frames 3 and 17); log_b: its only window has no route at frame 3.
    assert loader.tokens == ["a000000000000003", "a000000000000011"] == [s.token for s in loader]
    assert len(loader) == 2 and "a000000000000003" in loader and "b000000000000003" not in loader
    scene = loader["a000000000000011"]
    assert isinstance(scene, Scene) and scene.num_history == 4 and len(scene.frames) == 14
    assert scene.current_frame.token == "a000000000000011" and scene.frames[0].token == "a00000000000000e"
    assert scene.log_name == "log_a" and scene.map_name == MAP
    assert loader[1].token == scene.token
    assert loader.sensor_root == two_logs / "sensor_blobs" / "mini"
    assert scene.frames[0].cameras["CAM_F0"] == str(loader.sensor_root / f"log_a/CAM_F0/{scene.frames[0].token}.jpg")
    assert loader.tokens_per_log() == {"log_a": loader.tokens}
    assert loader.report.scenes_loaded == 2 and loader.report.scenes_skipped == 0
    with pytest.raises(KeyError, match="not loaded"):
        loader["nope"]


def test_scene_frames_are_the_logged_frames_and_the_future_trajectory_follows(two_logs):
    loader = SceneLoader(two_logs, "mini", SceneFilter(frame_interval=1, has_route=False))
    stored = read_log(two_logs / "navsim_logs" / "mini" / "log_b.pkl")
    scene = loader[stored[7].token]  # window 4..17, current frame 7
    assert scene.map_name == "us-nv-las-vegas-strip"  # 'las_vegas' alias, as NavSimScenario maps it
    for frame, log_frame in zip(scene.frames, stored[4:18], strict=True):
        assert frame.ego == log_frame.frame.ego
        np.testing.assert_array_equal(frame.boxes.xyh, log_frame.frame.boxes.xyh)
    trajectory = scene.future_trajectory()
    x0, y0, h0 = scene.current_frame.ego.pose
    expected = []
    for frame in stored[8:16]:
        dx, dy = frame.frame.ego.x - x0, frame.frame.ego.y - y0
        dh = np.arctan2(np.sin(frame.frame.ego.heading - h0), np.cos(frame.frame.ego.heading - h0))
        expected.append([np.cos(h0) * dx + np.sin(h0) * dy, -np.sin(h0) * dx + np.cos(h0) * dy, dh])
    np.testing.assert_allclose(trajectory.poses, expected, rtol=0, atol=1e-9)
    assert trajectory.poses[0, 0] > 3.0  # 8 m/s ahead: 4 m after 0.5 s
    assert loader.log_frames(scene.token)[3].cameras["CAM_L0"].intrinsics.shape == (3, 3)


def test_skip_report_counts_and_explains(tmp_path):
    log_dir, sensors = tmp_path / "logs", tmp_path / "sensors"
    good = make_frames(28, log_tag="a")
    write_synthetic_log(log_dir, "good", good)
    write_camera_files(sensors, "good", good, skip=[good[16].token])  # frame 16: no images
    nan_frames = make_frames(28, log_tag="n")
    dicts = [encode_frame(f, log_name="nan", map_location=MAP, frame_idx=i) for i, f in enumerate(nan_frames)]
    dicts[20]["ego2global_rotation"] = np.array([np.nan, 0.0, 0.0, 1.0])
    write_log(log_dir / "nan.pkl", dicts, validate=False)
    write_camera_files(sensors, "nan", nan_frames)
    truncated = write_synthetic_log(log_dir, "truncated", make_frames(20, log_tag="t"))
    truncated.write_bytes(truncated.read_bytes()[:100])
    (log_dir / "not_a_list.pkl").write_bytes(pickle.dumps({"frames": []}))
    (log_dir / "README.txt").write_text("ignored: not a .pkl")

    loader = SceneLoader.from_log_dir(
        log_dir, SceneFilter(frame_interval=1), sensor_root=sensors, require_cameras=CAMERA_NAMES
    )
    report = loader.report
    assert (report.logs_found, report.logs_loaded) == (4, 2)
    reasons = report.reasons()
    assert reasons[SKIP_UNREADABLE_LOG] == 2
    # 15 windows per log. 'nan': windows 7..14 contain frame 20; 'good': windows 13, 14 have frame 16 in their history.
    assert reasons[SKIP_INVALID_FRAME] == 8
    assert reasons[SKIP_MISSING_CAMERA] == 2
    assert report.scenes_loaded == len(loader) == 13 + 7
    assert report.scenes_skipped == 10
    invalid = [r for r in report.skipped_scenes if r.kind == SKIP_INVALID_FRAME]
    assert all("nan.pkl: frame 20" in r.detail and "ego2global_rotation" in r.detail for r in invalid)
    missing = [r for r in report.skipped_scenes if r.kind == SKIP_MISSING_CAMERA]
    assert {r.token for r in missing} == {good[16].token, good[17].token}
    assert all("CAM_F0 image" in r.detail for r in missing)
    summary = report.summary()
    assert "20 scenes from 2/4 logs" in summary and "missing camera file: 2" in summary
    assert report.scenes_per_second > 0


def test_camera_frames_choose_which_frames_need_images(tmp_path):
    frames = make_frames(14)
    write_synthetic_log(tmp_path / "logs", "log_a", frames)
    write_camera_files(tmp_path / "sensors", "log_a", frames, skip=[frames[10].token])
    kwargs = {"sensor_root": tmp_path / "sensors", "require_cameras": ("CAM_B0",)}
    assert len(SceneLoader.from_log_dir(tmp_path / "logs", camera_frames="history", **kwargs)) == 1
    assert len(SceneLoader.from_log_dir(tmp_path / "logs", camera_frames="current", **kwargs)) == 1
    assert len(SceneLoader.from_log_dir(tmp_path / "logs", camera_frames="all", **kwargs)) == 0


def test_token_and_log_lists_report_what_is_missing(two_logs):
    scene_filter = SceneFilter(frame_interval=1, tokens=["a00000000000000a", "zzz"], log_names=["log_a", "log_x"])
    loader = SceneLoader(two_logs, "mini", scene_filter)
    assert loader.tokens == ["a00000000000000a"]
    assert loader.report.missing_tokens == ["zzz"] and loader.report.missing_logs == ["log_x"]
    assert loader.report.logs_found == 1


def test_max_scenes_counts_loaded_scenes(two_logs):
    loader = SceneLoader(two_logs, "mini", SceneFilter(frame_interval=1, max_scenes=5, has_route=False))
    assert loader.tokens == [f"a{i:015x}" for i in range(3, 8)]


def test_duplicate_tokens_are_replaced_and_reported(tmp_path):
    write_synthetic_log(tmp_path, "log_a", make_frames(14, log_tag="a"))
    write_synthetic_log(tmp_path, "log_b", make_frames(14, log_tag="a"))  # same tokens
    loader = SceneLoader.from_log_dir(tmp_path)
    assert len(loader) == 1 and loader[0].log_name == "log_b"
    assert loader.report.reasons() == {SKIP_DUPLICATE_TOKEN: 1}


def test_configuration_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENSCENE_DATA_ROOT", raising=False)
    with pytest.raises(DatasetPathError, match=r"\$OPENSCENE_DATA_ROOT"):
        SceneLoader(split="test")
    with pytest.raises(DatasetPathError, match="does not exist"):
        SceneLoader(tmp_path, "test")
    with pytest.raises(DatasetPathError, match="unknown cameras"):
        SceneLoader.from_log_dir(tmp_path, require_cameras=("CAM_X",), sensor_root=tmp_path)
    with pytest.raises(DatasetPathError, match="needs a sensor_root"):
        SceneLoader.from_log_dir(tmp_path, require_cameras=("CAM_F0",))


def test_environment_variable_gives_the_data_root(two_logs, monkeypatch):
    monkeypatch.setenv("OPENSCENE_DATA_ROOT", str(two_logs))
    assert len(SceneLoader(split="mini")) == 2


def test_loading_speed(tmp_path):
    """A 400-frame log with overlapping windows (navtest's frame_interval=1): report scenes per second."""
    frames = make_frames(400, log_tag="p", num_agents=30, num_static=10)
    dicts = [encode_frame(f, log_name="perf", map_location=MAP, frame_idx=i) for i, f in enumerate(frames)]
    write_split_log(tmp_path, "test", "perf", dicts, validate=False)
    loader = SceneLoader(tmp_path, "test", SceneFilter(frame_interval=1))
    assert len(loader) == 387
    scenes = list(loader)
    assert len(scenes) == 387
    report = loader.report
    print(
        f"\nloaded {report.scenes_loaded} scenes ({report.frames_decoded} frames) in {report.seconds:.3f} s: "
        f"{report.scenes_per_second:.0f} scenes/s"
    )
    assert report.scenes_per_second > 100
