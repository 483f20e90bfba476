"""OpenScene log reader: NAVSIM's pose / box / velocity decoding, and strict validation with precise messages."""

from __future__ import annotations

import copy
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.data.openscene import (
    CAMERA_NAMES,
    decode_frame,
    ego_to_global,
    load_log_pickle,
    quaternion_yaw,
    read_log,
)
from navsim_eval.data.openscene_writer import encode_frame, write_log
from navsim_eval.errors import InvalidSceneError
from navsim_eval.scene import ObjectType
from tests.navsim_eval.data.synthetic_logs import make_frames

MAP = "us-nv-las-vegas-strip"


def _frame_dict(index: int = 3) -> dict:
    frames = make_frames(index + 1)
    return encode_frame(frames[index], log_name="log_a", map_location=MAP, frame_idx=index)


def _pickle(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path


# ----------------------------------------------------------------------------------------------- quaternion yaw


def _reference_yaw(q: np.ndarray) -> float:
    """z-y'-x'' yaw from the rotation matrix of the normalised quaternion (independent of pyquaternion's formula)."""
    w, x, y, z = q / np.linalg.norm(q)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi / 2, -math.pi / 2, 3.1, -3.1, math.pi])
def test_quaternion_yaw_of_pure_yaw_rotations(yaw):
    q = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    assert quaternion_yaw(q) == pytest.approx(math.atan2(math.sin(yaw), math.cos(yaw)), abs=1e-15)


def test_quaternion_yaw_is_pyquaternions_yaw_for_tilted_and_unnormalised_quaternions():
    rng = np.random.default_rng(3)
    for _ in range(200):
        yaw, pitch, roll = rng.uniform(-np.pi, np.pi), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
        cy, sy, cp, sp, cr, sr = (f(a / 2) for a in (yaw, pitch, roll) for f in (math.cos, math.sin))
        q = np.array(
            [
                cr * cp * cy + sr * sp * sy,
                sr * cp * cy - cr * sp * sy,
                cr * sp * cy + sr * cp * sy,
                cr * cp * sy - sr * sp * cy,
            ]
        )
        # pyquaternion's formula (w z - x y, its R = R_x R_y R_z convention), written out; close to the matrix yaw.
        expected = float(np.arctan2(2 * (q[0] * q[3] - q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2)))
        assert quaternion_yaw(q) == expected
        assert quaternion_yaw(3.0 * q) == pytest.approx(expected, abs=1e-14)  # normalised first
        assert abs(math.remainder(quaternion_yaw(q) - _reference_yaw(q), 2 * math.pi)) < 0.05


def test_quaternion_yaw_normalises_only_outside_the_1e_14_band():
    q = np.array([math.cos(0.4), 0.0, 0.0, math.sin(0.4)]) * (1 + 2e-15)
    raw = float(np.arctan2(2 * (q[0] * q[3]), 1 - 2 * q[3] ** 2))
    assert quaternion_yaw(q) == raw  # |1 - q.q| < 1e-14: used as is
    big = np.array([2.0, 0.0, 0.0, 0.0])
    assert quaternion_yaw(big) == 0.0


# ----------------------------------------------------------------------------------------------- decoding


def test_ego_pose_dynamics_and_metadata_are_decoded_as_navsim_does():
    data = _frame_dict()
    data["ego_dynamic_state"] = [1.1, -0.2, 0.33, 0.05]
    log_frame = decode_frame(data, source="x.pkl", index=3)
    ego = log_frame.frame.ego
    assert (ego.x, ego.y) == (data["ego2global_translation"][0], data["ego2global_translation"][1])
    assert ego.heading == quaternion_yaw(data["ego2global_rotation"])
    assert (ego.vx, ego.vy, ego.ax, ego.ay) == tuple(float(np.float32(v)) for v in data["ego_dynamic_state"])
    assert ego.vx != 1.1  # NAVSIM's EgoStatus keeps velocity and acceleration as float32
    assert ego.time_us == data["timestamp"] == log_frame.frame.timestamp_us
    assert log_frame.frame.traffic_lights == [("2001", False), ("2002", False)]
    assert log_frame.log_name == "log_a" and log_frame.map_name == MAP
    assert set(log_frame.cameras) == set(CAMERA_NAMES)
    assert log_frame.frame.cameras["CAM_F0"] == data["cams"]["CAM_F0"]["data_path"]
    np.testing.assert_array_equal(log_frame.frame.driving_command, [0, 1, 0, 0])


def test_sensor_root_makes_camera_paths_absolute(tmp_path):
    data = _frame_dict()
    frame = decode_frame(data, sensor_root=tmp_path).frame
    assert frame.cameras["CAM_B0"] == str(tmp_path / data["cams"]["CAM_B0"]["data_path"])


def test_las_vegas_alias_maps_to_the_strip():
    data = _frame_dict()
    data["map_location"] = "las_vegas"
    assert decode_frame(data).map_name == "us-nv-las-vegas-strip"


def test_annotations_go_to_global_with_navsims_operations_and_back():
    data = _frame_dict()
    log_frame = decode_frame(data)
    ego = log_frame.frame.ego
    anns = data["anns"]
    boxes = log_frame.frame.boxes
    # Independent matrix formulation: p_global = R(yaw) p_local + t, heading = wrap(local + yaw).
    c, s = math.cos(ego.heading), math.sin(ego.heading)
    rotation = np.array([[c, -s], [s, c]])
    expected_xy = anns["gt_boxes"][:, :2] @ rotation.T + [ego.x, ego.y]
    np.testing.assert_allclose(boxes.xyh[:, :2], expected_xy, rtol=0, atol=1e-9)
    expected_heading = np.angle(np.exp(1j * (anns["gt_boxes"][:, 6] + ego.heading)))
    np.testing.assert_allclose(np.cos(boxes.xyh[:, 2] - expected_heading), 1.0, atol=1e-15)
    assert np.all(np.abs(boxes.xyh[:, 2]) <= math.pi)
    np.testing.assert_array_equal(boxes.size, anns["gt_boxes"][:, 3:6])
    assert boxes.tokens == anns["track_tokens"]
    assert [t.value for t in boxes.types] == list(anns["gt_names"])
    agent = np.array([t.is_agent for t in boxes.types])
    np.testing.assert_allclose(boxes.velocity[agent], anns["gt_velocity_3d"][agent, :2] @ rotation.T, atol=1e-12)
    assert not boxes.velocity[~agent].any()  # static objects: NAVSIM builds StaticObject without a velocity
    # Exactly NAVSIM's float operations (rotate_state_se2 then normalize_angle twice):
    xyh, velocity = ego_to_global(anns["gt_boxes"][:, [0, 1, 6]], anns["gt_velocity_3d"][:, :2], ego.pose)
    np.testing.assert_array_equal(boxes.xyh, xyh)
    np.testing.assert_array_equal(boxes.velocity[agent], velocity[agent])
    s, c = np.sin(ego.heading), np.cos(ego.heading)
    first = anns["gt_boxes"][0]
    assert boxes.xyh[0, 0] == (first[0] * c - first[1] * s) + ego.x
    assert boxes.xyh[0, 2] == np.arctan2(
        np.sin(np.arctan2(np.sin(first[6] + ego.heading), np.cos(first[6] + ego.heading))),
        np.cos(np.arctan2(np.sin(first[6] + ego.heading), np.cos(first[6] + ego.heading))),
    )


def test_empty_annotations_as_openscene_stores_them():
    data = _frame_dict()
    data["anns"] = {
        "gt_boxes": np.zeros((0, 7)),
        "gt_names": np.array([]),  # float64 when empty
        "gt_velocity_3d": np.zeros((0, 3)),
        "instance_tokens": [],
        "track_tokens": [],
    }
    assert len(decode_frame(data).frame.boxes) == 0


def test_logs_without_annotations_need_the_opt_in():
    data = _frame_dict()
    del data["anns"]
    with pytest.raises(InvalidSceneError, match="'anns': missing"):
        decode_frame(data)
    assert len(decode_frame(data, require_annotations=False).frame.boxes) == 0


# ----------------------------------------------------------------------------------------------- validation


def test_truncated_pickle_names_the_file(tmp_path):
    path = write_log(tmp_path / "log_a.pkl", make_frames(3), map_location=MAP)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InvalidSceneError, match=r"log_a\.pkl: truncated or corrupt"):
        load_log_pickle(path)


def test_garbage_and_missing_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidSceneError, match=r"garbage\.pkl"):
        load_log_pickle(garbage)
    with pytest.raises(InvalidSceneError, match=r"absent\.pkl: cannot read"):
        load_log_pickle(tmp_path / "absent.pkl")


def test_non_list_pickle_and_non_dict_frames_are_rejected(tmp_path):
    with pytest.raises(InvalidSceneError, match=r"d\.pkl: expected a list of frame dicts, got dict"):
        load_log_pickle(_pickle(tmp_path / "d.pkl", {"token": "x"}))
    with pytest.raises(InvalidSceneError, match=r"l\.pkl: frame 1: expected a dict, got str"):
        load_log_pickle(_pickle(tmp_path / "l.pkl", [_frame_dict(), "oops"]))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_pickles_with_other_classes_are_refused_without_running_anything(tmp_path):
    with pytest.raises(InvalidSceneError, match=r"refusing to load global (posix|nt|os)\.system"):
        load_log_pickle(_pickle(tmp_path / "evil.pkl", [_Exploit()]))
    import collections

    with pytest.raises(InvalidSceneError, match=r"refusing to load global collections\.Counter"):
        load_log_pickle(_pickle(tmp_path / "counter.pkl", [collections.Counter(a=1)]))


def test_numpy_scalars_and_protocol_2_pickles_load(tmp_path):
    data = _frame_dict()
    data["timestamp"] = np.int64(data["timestamp"])
    data["ego_dynamic_state"] = [np.float64(v) for v in data["ego_dynamic_state"]]
    data["traffic_lights"] = [(np.int64(7), np.bool_(True))]
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps([data], protocol=protocol))
        (frame,) = read_log(path)
        assert frame.frame.traffic_lights == [("7", True)]


@pytest.mark.parametrize(
    "key", ["token", "timestamp", "ego2global_rotation", "ego_dynamic_state", "cams", "roadblock_ids", "lidar_path"]
)
def test_missing_keys_name_file_frame_and_key(tmp_path, key):
    frames = [_frame_dict(0), _frame_dict(1)]
    del frames[1][key]
    path = _pickle(tmp_path / "log_a.pkl", frames)
    with pytest.raises(InvalidSceneError, match=rf"log_a\.pkl: frame 1.*key '{key}': missing"):
        read_log(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(ego2global_translation=np.zeros(2)), r"'ego2global_translation': expected shape \[3\]"),
        (lambda d: d.update(ego2global_rotation=[1.0, 0.0, 0.0]), r"'ego2global_rotation': expected shape \[4\]"),
        (lambda d: d.update(ego2global_rotation=[0.0, 0.0, 0.0, 0.0]), "zero quaternion"),
        (lambda d: d.update(ego_dynamic_state=[1.0, 2.0]), r"'ego_dynamic_state': expected shape \[4\]"),
        (lambda d: d.update(driving_command=np.ones((2, 2))), r"'driving_command': expected shape \[4\]"),
        (lambda d: d["anns"].update(gt_boxes=np.zeros((9, 6))), r"'anns.gt_boxes': expected shape \[N, 7\]"),
        (lambda d: d["anns"].update(track_tokens=d["anns"]["track_tokens"][:-1]), "differ in length"),
        (lambda d: d["anns"].update(gt_names=np.array(["truck"] * 9)), "unknown classes"),
        (lambda d: d["cams"]["CAM_L1"].update(cam_intrinsic=np.eye(4)), r"'cams.CAM_L1.cam_intrinsic': expected"),
        (lambda d: d["cams"].pop("CAM_R2"), r"missing cameras \['CAM_R2'\]"),
        (lambda d: d["cams"]["CAM_F0"].pop("distortion"), r"'cams.CAM_F0.distortion': missing"),
        (lambda d: d.update(timestamp=1.5), "'timestamp': expected an integer"),
        (lambda d: d.update(token=""), "'token': expected a non-empty string"),
        (lambda d: d.update(roadblock_ids="1001"), "'roadblock_ids': expected a list of strings"),
        (lambda d: d.update(traffic_lights=[(1, "red")]), "is_red must be a bool"),
        (lambda d: d.update(ego2global_translation=["a", "b", "c"]), "'ego2global_translation': expected a numeric"),
    ],
)
def test_bad_values_name_the_key(mutate, message):
    data = copy.deepcopy(_frame_dict())
    mutate(data)
    with pytest.raises(InvalidSceneError, match=message):
        decode_frame(data, source="log_a.pkl", index=5)


@pytest.mark.parametrize(
    ("key", "mutate"),
    [
        ("ego2global_translation", lambda d: d["ego2global_translation"].__setitem__(0, np.nan)),
        ("ego2global_rotation", lambda d: d["ego2global_rotation"].__setitem__(3, np.inf)),
        ("ego_dynamic_state", lambda d: d["ego_dynamic_state"].__setitem__(0, float("nan"))),
        ("anns.gt_boxes", lambda d: d["anns"]["gt_boxes"].__setitem__((0, 1), np.nan)),
        ("anns.gt_velocity_3d", lambda d: d["anns"]["gt_velocity_3d"].__setitem__((0, 0), np.nan)),
    ],
)
def test_nan_values_are_rejected_with_file_frame_and_key(key, mutate):
    data = copy.deepcopy(_frame_dict())
    mutate(data)
    with pytest.raises(InvalidSceneError, match=rf"log_a\.pkl: frame 5 \(token \w+\): key '{key}'.*NaN"):
        decode_frame(data, source="log_a.pkl", index=5)


def test_nan_velocity_of_a_static_object_is_tolerated():
    data = copy.deepcopy(_frame_dict())
    names = list(data["anns"]["gt_names"])
    static = names.index(ObjectType.TRAFFIC_CONE.value)
    data["anns"]["gt_velocity_3d"][static, 0] = np.nan
    boxes = decode_frame(data).frame.boxes
    assert np.isfinite(boxes.velocity).all()
