"""Scene windows as NAVSIM's ``filter_scenes``: intervals, short windows, routes, token lists, log names, max_scenes."""

from __future__ import annotations

import pytest

from navsim_eval.data.scene_filter import SceneFilter, SceneFilterError, filter_scenes, window_starts, window_token
from navsim_eval.errors import InvalidSceneError


def _log(name: str, n: int, empty_route: tuple[int, ...] = ()) -> tuple[str, list[dict]]:
    return name, [{"token": f"{name}-{i}", "roadblock_ids": [] if i in empty_route else ["7"]} for i in range(n)]


def _navsim_reference(logs, scene_filter: SceneFilter) -> dict[str, list[dict]]:
    """NAVSIM's loop written out literally (split_list, then the three filters, then max_scenes)."""
    out: dict[str, list[dict]] = {}
    for name, frames in logs:
        if scene_filter.log_names is not None and name not in scene_filter.log_names:
            continue
        windows = [frames[i : i + scene_filter.num_frames] for i in range(0, len(frames), scene_filter.frame_interval)]
        for window in windows:
            if len(window) < scene_filter.num_frames:
                continue
            current = window[scene_filter.num_history_frames - 1]
            if scene_filter.has_route and len(current["roadblock_ids"]) == 0:
                continue
            if scene_filter.tokens is not None and current["token"] not in set(scene_filter.tokens):
                continue
            out[current["token"]] = window
            if scene_filter.max_scenes is not None and len(out) >= scene_filter.max_scenes:
                return out
    return out


def test_defaults_and_non_overlapping_interval():
    scene_filter = SceneFilter()
    assert (scene_filter.num_history_frames, scene_filter.num_future_frames) == (4, 10)
    assert scene_filter.frame_interval == scene_filter.num_frames == 14  # None -> non-overlapping
    assert scene_filter.has_route and scene_filter.current_index == 3
    assert list(window_starts(30, scene_filter)) == [0, 14]  # the window at 28 is too short
    assert list(window_starts(28, scene_filter)) == [0, 14]
    assert list(window_starts(13, scene_filter)) == []


def test_frame_interval_one_gives_every_full_window():
    scene_filter = SceneFilter(frame_interval=1)
    assert list(window_starts(20, scene_filter)) == list(range(7))
    scenes = filter_scenes([_log("a", 20)], scene_filter)
    assert list(scenes) == [f"a-{i + 3}" for i in range(7)]  # keyed by the current frame (index 3)
    assert [f["token"] for f in scenes["a-3"]] == [f"a-{i}" for i in range(14)]


@pytest.mark.parametrize(
    "scene_filter",
    [
        SceneFilter(),
        SceneFilter(frame_interval=1),
        SceneFilter(frame_interval=3, num_history_frames=2, num_future_frames=5),
        SceneFilter(frame_interval=1, has_route=False),
        SceneFilter(frame_interval=1, tokens=["a-5", "a-9", "b-12", "missing"]),
        SceneFilter(frame_interval=2, log_names=["b"]),
        SceneFilter(frame_interval=1, max_scenes=5),
        SceneFilter(num_future_frames=0, num_history_frames=1, frame_interval=1),
    ],
)
def test_filter_scenes_matches_navsims_loop(scene_filter):
    logs = [_log("a", 33, empty_route=(4, 5, 6)), _log("b", 20, empty_route=(3,)), _log("c", 5)]
    assert filter_scenes(logs, scene_filter) == _navsim_reference(logs, scene_filter)


def test_has_route_checks_only_the_current_frame():
    logs = [_log("a", 14, empty_route=(0, 1, 2, 4, 13))]  # current frame 3 has a route
    assert list(filter_scenes(logs, SceneFilter())) == ["a-3"]
    logs = [_log("a", 14, empty_route=(3,))]
    assert filter_scenes(logs, SceneFilter()) == {}
    assert list(filter_scenes(logs, SceneFilter(has_route=False))) == ["a-3"]


def test_token_list_and_max_scenes():
    logs = [_log("a", 40), _log("b", 40)]
    scenes = filter_scenes(logs, SceneFilter(frame_interval=1, tokens=("b-10", "a-20", "zzz")))
    assert list(scenes) == ["a-20", "b-10"]  # log order, then window order
    assert len(filter_scenes(logs, SceneFilter(frame_interval=1, max_scenes=30))) == 30


def test_duplicate_tokens_keep_navsims_dict_semantics():
    first, second = _log("a", 14), _log("b", 14)
    second[1][3]["token"] = "a-3"
    scenes = filter_scenes([first, second], SceneFilter())
    assert list(scenes) == ["a-3"] and scenes["a-3"][0]["token"] == "b-0"  # the later window replaces the earlier


def test_window_token_names_a_malformed_current_frame():
    frames = _log("a", 14)[1]
    del frames[3]["roadblock_ids"]
    with pytest.raises(InvalidSceneError, match="frame 3: key 'roadblock_ids'"):
        window_token(frames, 0, SceneFilter())
    assert window_token(frames, 0, SceneFilter(has_route=False)) == "a-3"
    del frames[3]["token"]
    with pytest.raises(InvalidSceneError, match="frame 3: key 'token'"):
        window_token(frames, 0, SceneFilter(has_route=False))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_history_frames": 0}, "num_history_frames must be >= 1"),
        ({"num_future_frames": -1}, "num_future_frames must be >= 0"),
        ({"frame_interval": 0}, "frame_interval must be >= 1"),
        ({"max_scenes": 0}, "max_scenes must be >= 1"),
        ({"num_history_frames": 2.5}, "must be an integer"),
        ({"has_route": "yes"}, "has_route must be true or false"),
        ({"tokens": "abc"}, "tokens must be a list"),
        ({"log_names": [1234]}, "quote them in YAML"),
    ],
)
def test_invalid_filters_are_rejected(kwargs, message):
    with pytest.raises(SceneFilterError, match=message):
        SceneFilter(**kwargs)


def test_lists_become_tuples_and_filters_compare_by_value():
    assert SceneFilter(tokens=["a", "b"]) == SceneFilter(tokens=("a", "b"))
    assert SceneFilter(frame_interval=None) == SceneFilter(frame_interval=14)
    assert SceneFilter(tokens=["a"]).to_dict()["tokens"] == ["a"]
