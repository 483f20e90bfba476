"""2 Hz -> 10 Hz object interpolation and red-light hold, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.errors import InvalidSceneError
from navsim_eval.pdm.annotations import frames_needed, observation_from_frames, red_lights_from_frames
from navsim_eval.scene import OBJECT_TYPE_CODE, Boxes, EgoState, Frame, ObjectType


def make_frame(index: int, objects: list[tuple], lights: list[tuple[str, bool]] | None = None) -> Frame:
    """objects: (token, type, x, y, heading, vx, vy[, length, width])."""
    tokens = [o[0] for o in objects]
    types = [ObjectType.parse(o[1]) for o in objects]
    xyh = np.array([o[2:5] for o in objects], dtype=float).reshape(-1, 3)
    velocity = np.array([o[5:7] for o in objects], dtype=float).reshape(-1, 2)
    size = np.array([[*(o[7:9] if len(o) > 7 else (4.0, 2.0)), 1.5] for o in objects], dtype=float).reshape(-1, 3)
    return Frame(
        token=f"f{index}",
        timestamp_us=1_000_000 + 500_000 * index,
        ego=EgoState(0.0, 0.0, 0.0),
        boxes=Boxes(tokens, types, xyh, size, velocity),
        traffic_lights=lights or [],
    )


def frames_with(tracks: dict[int, list[tuple]], num_frames: int = 11) -> list[Frame]:
    return [make_frame(i, tracks.get(i, [])) for i in range(num_frames)]


def column(obs, token: str) -> int:
    return obs.tokens.index(token)


def test_midpoints_are_linear_in_position_and_velocity():
    frames = frames_with(
        {0: [("a", "vehicle", 0.0, 0.0, 0.0, 10.0, 0.0)], 1: [("a", "vehicle", 5.0, 1.0, 0.0, 0.0, 2.0)]}
    )
    obs = observation_from_frames(frames, 51)
    n = column(obs, "a")
    assert obs.num_steps == 51
    np.testing.assert_allclose(obs.boxes[2, n, :2], [2.0, 0.4])
    np.testing.assert_allclose(obs.velocity[2, n], [6.0, 0.8])
    np.testing.assert_allclose(obs.boxes[5, n, :3], [5.0, 1.0, 0.0])
    np.testing.assert_allclose(obs.boxes[:6, n, 3:], [[4.0, 2.0]] * 6)


def test_no_extrapolation_before_first_or_after_last_appearance():
    track = [("a", "vehicle", float(i), 0.0, 0.0, 2.0, 0.0) for i in range(2)]
    frames = frames_with({2: [track[0]], 3: [track[1]]})
    obs = observation_from_frames(frames, 51)
    n = column(obs, "a")
    assert np.flatnonzero(obs.present[:, n]).tolist() == list(range(10, 16))
    assert np.isnan(obs.boxes[:10, n]).all() and np.isnan(obs.boxes[16:, n]).all()
    np.testing.assert_allclose(obs.boxes[13, n, 0], 0.6)


def test_gap_in_a_track_is_interpolated_across():
    frames = frames_with(
        {0: [("a", "vehicle", 0.0, 0.0, 0.0, 0.0, 0.0)], 2: [("a", "vehicle", 10.0, 0.0, 0.0, 0.0, 0.0)]}
    )
    obs = observation_from_frames(frames, 51)
    n = column(obs, "a")
    assert obs.present[:11, n].all() and not obs.present[11:, n].any()
    np.testing.assert_allclose(obs.boxes[5, n, 0], 5.0)


def test_single_appearance_track_is_inserted_unchanged_at_every_step():
    # Seen only at 1.5 s, with a heading outside [-pi, pi]: kept exactly as annotated, from step 0 to step 50.
    frames = frames_with({3: [("once", "pedestrian", 7.0, -2.0, 3.5, 1.0, -1.0, 0.8, 0.6)]})
    obs = observation_from_frames(frames, 51)
    n = column(obs, "once")
    assert obs.present[:, n].all()
    np.testing.assert_array_equal(obs.boxes[:, n], np.tile([7.0, -2.0, 3.5, 0.8, 0.6], (51, 1)))
    np.testing.assert_array_equal(obs.velocity[:, n], np.tile([1.0, -1.0], (51, 1)))


def test_heading_is_unwrapped_across_pi():
    frames = frames_with(
        {0: [("a", "vehicle", 0.0, 0.0, 3.0, 0.0, 0.0)], 1: [("a", "vehicle", 0.0, 0.0, -3.0, 0.0, 0.0)]}
    )
    obs = observation_from_frames(frames, 51)
    n = column(obs, "a")
    step = 2 * np.pi - 6.0  # the short way round, through +pi
    np.testing.assert_allclose(obs.boxes[2, n, 2], 3.0 + 0.4 * step)
    np.testing.assert_allclose(obs.boxes[3, n, 2], 3.0 + 0.6 * step - 2 * np.pi)
    assert np.all(np.abs(obs.boxes[:6, n, 2]) > 2.9)  # never through 0


def test_static_objects_get_zero_velocity():
    frames = frames_with(
        {
            0: [("cone", "traffic_cone", 1.0, 1.0, 0.0, 3.0, 4.0), ("gen", "generic_object", 2.0, 2.0, 0.0, 1.0, 1.0)],
            1: [("cone", "traffic_cone", 1.0, 1.0, 0.0, 3.0, 4.0)],
        }
    )
    obs = observation_from_frames(frames, 51)
    for token in ("cone", "gen"):
        n = column(obs, token)
        assert obs.types[n] in (OBJECT_TYPE_CODE[ObjectType.TRAFFIC_CONE], OBJECT_TYPE_CODE[ObjectType.GENERIC_OBJECT])
        np.testing.assert_array_equal(obs.velocity[obs.present[:, n], n], 0.0)
    assert obs.present[:, column(obs, "gen")].all()  # single appearance


def test_tokens_in_first_appearance_order_and_size_from_first_appearance():
    frames = frames_with(
        {
            0: [("b", "vehicle", 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 2.0)],
            1: [("a", "bicycle", 0.0, 0.0, 0.0, 0.0, 0.0), ("b", "vehicle", 1.0, 0.0, 0.0, 0.0, 0.0, 9.0, 9.0)],
            2: [("a", "bicycle", 0.0, 0.0, 0.0, 0.0, 0.0)],
        }
    )
    obs = observation_from_frames(frames, 51)
    assert obs.tokens == ["b", "a"]
    np.testing.assert_array_equal(obs.boxes[5, 0, 3:], [4.0, 2.0])


def test_v2_horizon_uses_only_four_seconds_of_frames():
    # A track seen at 4.0 s and 4.5 s: interpolated from step 40 in v1, a single-appearance track in v2.
    tracks = {8: [("late", "vehicle", 0.0, 0.0, 0.0, 0.0, 0.0)], 9: [("late", "vehicle", 1.0, 0.0, 0.0, 0.0, 0.0)]}
    frames = frames_with(tracks)
    v1 = observation_from_frames(frames, 51)
    v2 = observation_from_frames(frames, 41)
    assert np.flatnonzero(v1.present[:, 0]).tolist() == list(range(40, 46))
    assert v2.num_steps == 41 and v2.present[:, 0].all()
    assert v1.truncated(41).present[:, 0].sum() == 1  # truncating v1 is not the v2 observation


def test_bad_input_raises():
    with pytest.raises(InvalidSceneError, match="needs 11 frames"):
        observation_from_frames(frames_with({}, num_frames=10), 51)
    with pytest.raises(InvalidSceneError, match="5\\*k \\+ 1"):
        frames_needed(40)
    duplicate = [make_frame(0, [("a", "vehicle", 0, 0, 0, 0, 0), ("a", "vehicle", 1, 0, 0, 0, 0)])]
    with pytest.raises(InvalidSceneError, match="appears twice"):
        observation_from_frames(duplicate, 1)


def test_red_lights_are_held_five_steps_and_filtered():
    lights = [
        [("lc1", True), ("lc2", True), ("off_route", True)],
        [("lc1", False), ("lc2", True)],
    ] + [[("lc1", True)]] * 7
    frames = [make_frame(i, [], light) for i, light in enumerate(lights)]
    red = red_lights_from_frames(frames, {"lc1", "lc2"}, 41)
    assert len(red) == 41
    assert red[:5] == [["lc1", "lc2"]] * 5
    assert red[5:10] == [["lc2"]] * 5
    assert red[10:] == [["lc1"]] * 31
    # Frames missing at the end give no red lights.
    assert red_lights_from_frames(frames[:2], {"lc1"}, 41)[10:] == [[]] * 31
