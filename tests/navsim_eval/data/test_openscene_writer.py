"""OpenScene writer: exact round trips (dicts, log frames, frames read back) and what it refuses to write."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_eval.data.openscene import (
    ANNOTATION_KEYS,
    CAMERA_NAMES,
    ego_to_global,
    load_log_pickle,
    quaternion_yaw,
    read_log,
)
from navsim_eval.data.openscene_writer import (
    canonical_frames,
    encode_frame,
    global_to_ego,
    write_log,
    write_split_log,
    yaw_to_quaternion,
)
from navsim_eval.errors import InvalidSceneError
from tests.navsim_eval.data.synthetic_logs import assert_frames_equal, make_frames

MAP = "us-ma-boston"


def _assert_same(a, b, path="frame"):
    """Deep equality of frame dicts with numpy arrays (values, dtypes and container types)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


def test_frame_dicts_round_trip_exactly(tmp_path):
    dicts = [encode_frame(f, log_name="log_a", map_location=MAP, frame_idx=i) for i, f in enumerate(make_frames(6))]
    dicts[2]["vehicle_name"] = "veh-35"  # passthrough keys survive
    path = write_log(tmp_path / "log_a.pkl", dicts)
    for written, read in zip(dicts, load_log_pickle(path), strict=True):
        _assert_same(written, read)
    for written, log_frame in zip(dicts, read_log(path), strict=True):
        _assert_same(written, log_frame.data)


def test_encoded_frames_have_openscenes_keys_and_types():
    data = encode_frame(make_frames(1)[0], log_name="log_a", map_location=MAP)
    for key in ("token", "frame_idx", "timestamp", "log_token", "scene_token", "can_bus", "lidar2ego", "sample_next"):
        assert key in data
    assert isinstance(data["timestamp"], int) and isinstance(data["ego_dynamic_state"], list)
    assert data["ego2global_translation"].shape == (3,) and data["ego2global_rotation"].shape == (4,)
    assert data["driving_command"].dtype == np.int64
    assert all(isinstance(lane, int) and isinstance(red, bool) for lane, red in data["traffic_lights"])
    assert list(data["cams"]) == list(CAMERA_NAMES)
    assert data["cams"]["CAM_F0"]["data_path"] == f"log_a/CAM_F0/{data['token']}.jpg"
    assert set(data["anns"]) == set(ANNOTATION_KEYS) and data["anns"]["gt_boxes"].shape[1] == 7
    np.testing.assert_allclose(data["ego2global"][:3, 3], data["ego2global_translation"])
    np.testing.assert_allclose(np.linalg.det(data["ego2global"][:3, :3]), 1.0)


def test_frames_round_trip_through_a_log(tmp_path):
    frames = make_frames(40)
    path = write_log(tmp_path / "log_a.pkl", frames, map_location=MAP)
    read = read_log(path)
    assert [f.data["sample_next"] for f in read[:-1]] == [f.token for f in frames[1:]]
    assert read[0].data["sample_prev"] is None and read[-1].data["sample_next"] is None
    for log_frame, original in zip(read, frames, strict=True):
        frame = log_frame.frame
        assert frame.token == original.token and frame.ego == original.ego  # ego dynamics are float32 values
        assert frame.boxes.tokens == original.boxes.tokens and frame.boxes.types == original.boxes.types
        np.testing.assert_array_equal(frame.boxes.size, original.boxes.size)
        # Exact where the reader can produce the value, else about one ulp of the vector off (writer's docstring).
        np.testing.assert_allclose(frame.boxes.xyh, original.boxes.xyh, rtol=2.3e-16, atol=1e-15)
        np.testing.assert_allclose(frame.boxes.velocity, original.boxes.velocity, rtol=0, atol=2 * np.spacing(16.0))
        assert frame.roadblock_ids == original.roadblock_ids and frame.traffic_lights == original.traffic_lights
    # Frames read from a log are canonical: writing them again gives them back bit for bit.
    again = read_log(write_log(tmp_path / "again.pkl", [f.frame for f in read], log_name="log_a", map_location=MAP))
    for second, first in zip(again, read, strict=True):
        assert_frames_equal(second.frame, first.frame, cameras=True)
    for canonical, first in zip(canonical_frames(frames, log_name="log_a", map_location=MAP), read, strict=True):
        assert_frames_equal(canonical, first.frame, cameras=True)


def test_log_frames_are_written_as_stored(tmp_path):
    read = read_log(write_log(tmp_path / "a.pkl", make_frames(5), map_location=MAP))
    again = read_log(write_log(tmp_path / "b.pkl", read))
    for second, first in zip(again, read, strict=True):
        _assert_same(second.data, first.data)


def test_global_to_ego_inverts_the_readers_transform_bit_for_bit():
    rng = np.random.default_rng(11)
    for trial in range(40):
        ego = (rng.uniform(-5e5, 7e5), rng.uniform(0, 4e6), rng.uniform(-np.pi, np.pi))
        local = np.column_stack([rng.uniform(-80, 80, (30, 2)), rng.uniform(-4, 4, 30)])
        velocity = rng.normal(0, 6, (30, 2))
        xyh, global_velocity = ego_to_global(local, velocity, ego)
        back_xyh, back_velocity = ego_to_global(*global_to_ego(xyh, global_velocity, ego), ego)
        np.testing.assert_array_equal(back_xyh, xyh, err_msg=f"trial {trial}")
        np.testing.assert_allclose(back_velocity, global_velocity, rtol=0, atol=1e-15)


def test_yaw_to_quaternion_is_exact_or_within_one_ulp():
    yaws = np.concatenate([np.random.default_rng(2).uniform(-np.pi, np.pi, 2000), [0.0, np.pi, -np.pi, 1e-9]])
    decoded = np.array([quaternion_yaw(yaw_to_quaternion(y)) for y in yaws])
    assert np.mean(decoded == yaws) > 0.99
    assert np.all(np.abs(decoded - yaws) <= np.spacing(np.abs(yaws)))
    again = np.array([quaternion_yaw(yaw_to_quaternion(y)) for y in decoded])
    np.testing.assert_array_equal(again, decoded)


def test_invalid_frames_are_not_written(tmp_path):
    data = encode_frame(make_frames(1)[0], log_name="log_a", map_location=MAP)
    data["ego2global_translation"] = np.array([np.nan, 0.0, 0.0])
    with pytest.raises(InvalidSceneError, match=r"bad\.pkl: frame 0 .*ego2global_translation.*NaN"):
        write_log(tmp_path / "bad.pkl", [data])
    assert not (tmp_path / "bad.pkl").exists() and not list(tmp_path.iterdir())
    write_log(tmp_path / "bad.pkl", [data], validate=False)  # tests of the reader need broken logs
    assert pickle.loads((tmp_path / "bad.pkl").read_bytes())[0]["token"] == data["token"]


def test_writing_frames_needs_a_map_location(tmp_path):
    with pytest.raises(InvalidSceneError, match="map_location"):
        write_log(tmp_path / "a.pkl", make_frames(2))


def test_write_split_log_uses_the_openscene_layout(tmp_path):
    path = write_split_log(tmp_path, "mini", "2021.05.12.22.00.38_veh-35_01008_01518", make_frames(2), map_location=MAP)
    assert path == tmp_path / "navsim_logs" / "mini" / "2021.05.12.22.00.38_veh-35_01008_01518.pkl"
    assert read_log(path)[0].log_name == "2021.05.12.22.00.38_veh-35_01008_01518"


def test_written_logs_load_under_numpy_1_and_2_alike(tmp_path):
    """NumPy 2 would name numpy._core in the pickle, which the official devkit's NumPy 1.x cannot import."""
    from navsim_eval.pickle_io import pickle_globals

    frames = make_frames(3)
    dicts = [encode_frame(f, log_name="log_a", map_location=MAP, frame_idx=i) for i, f in enumerate(frames)]
    dicts[0]["extra_scalar"] = np.float64(0.25)  # numpy scalars are portable too
    path = write_log(tmp_path / "log_a.pkl", dicts, validate=False)
    names = pickle_globals(path.read_bytes())
    assert names and not [n for n in names if n[0].startswith("numpy._core")], names
    assert {module.split(".")[0] for module, _ in names} <= {"numpy", "builtins"}
    assert load_log_pickle(path)[0]["extra_scalar"] == 0.25
