"""Split files in NAVSIM's YAML layout: reading the real shapes, writing them back, clear errors."""

from __future__ import annotations

import pytest

from navsim_eval.data.scene_filter import SceneFilter, SceneFilterError
from navsim_eval.data.splits import (
    Split,
    format_scene_filter,
    load_split,
    parse_split_yaml,
    read_scene_filter,
    scene_filter_from_dict,
    write_scene_filter,
    write_split,
)

ALL_SCENES = """_target_: navsim.common.dataclasses.SceneFilter
_convert_: 'all'

num_history_frames: 4 # number of past frames to be extracted, frames are at 2Hz (1=ony current frame, 2=1 second)
num_future_frames: 10 # number of future frames to be extracted, frames are at 2Hz (10=5 seconds)
frame_interval: null # number of frames to skip between each scene, if null, extracted scenes are non-overlapping

has_route: true # only extract scenes with valid route information

max_scenes: null # maximum number of scenes to extract, if null, all scenes are extracted.
log_names: null # list of log names to extract scenes from, if null, all logs are extracted
tokens: null # list of tokens to extract scenes from, if null, all tokens are extracted"""

NAVMINI_STYLE = """_target_: navsim.common.dataclasses.SceneFilter
_convert_: 'all'

num_history_frames: 4
num_future_frames: 10
frame_interval: null
has_route: true

max_scenes: null
log_names:
  - "2021.07.24.20.37.45_veh-17_00015_00375"
  - "2021.06.08.12.54.54_veh-26_04262_04732"

tokens:
 - "6774548111cb5ba4"
 - "09b2b571bb63520c"
"""

TWO_STAGE_STYLE = """_target_: navsim.common.dataclasses.SceneFilter
_convert_: all
num_history_frames: 4
num_future_frames: 8
frame_interval: 1
has_route: true
max_scenes: null
include_synthetic_scenes: true
log_names:
- '2021.08.16.14.23.37_veh-45_00015_00132'
tokens:
- '0dc54a8c8203567b'
- '13310ca9a7715154'
'reactive_synthetic_initial_tokens':
- '0395128411941228f'
"""


def test_reads_navsims_all_scenes_file():
    scene_filter = scene_filter_from_dict(parse_split_yaml(ALL_SCENES))
    assert scene_filter == SceneFilter()
    assert scene_filter.log_names is None and scene_filter.tokens is None and scene_filter.frame_interval == 14


def test_reads_block_lists_with_double_quotes_and_indentation():
    scene_filter = scene_filter_from_dict(parse_split_yaml(NAVMINI_STYLE))
    assert scene_filter.log_names == (
        "2021.07.24.20.37.45_veh-17_00015_00375",
        "2021.06.08.12.54.54_veh-26_04262_04732",
    )
    assert scene_filter.tokens == ("6774548111cb5ba4", "09b2b571bb63520c")


def test_reads_two_stage_files_with_quoted_keys_and_unindented_items():
    scene_filter = scene_filter_from_dict(parse_split_yaml(TWO_STAGE_STYLE))
    assert scene_filter.num_future_frames == 8 and scene_filter.frame_interval == 1
    assert scene_filter.include_synthetic_scenes
    assert scene_filter.reactive_synthetic_initial_tokens == ("0395128411941228f",)


def test_yaml_scalars():
    parsed = parse_split_yaml("a: 'it''s'\nb: \"x\\\"y\"\nc: ~\nd: false\ne: -3\nf: 1.5\ng: [1, 'two', null]\nh: []\n")
    assert parsed == {"a": "it's", "b": 'x"y', "c": None, "d": False, "e": -3, "f": 1.5, "g": [1, "two", None], "h": []}


def test_agrees_with_pyyaml_where_installed():
    yaml = pytest.importorskip("yaml")
    for text in (ALL_SCENES, NAVMINI_STYLE, TWO_STAGE_STYLE):
        assert parse_split_yaml(text) == yaml.safe_load(text)


def test_scene_filter_file_round_trip(tmp_path):
    scene_filter = SceneFilter(
        num_future_frames=8,
        frame_interval=1,
        max_scenes=100,
        log_names=["2021.05.12.22.00.38_veh-35_01008_01518", "it's odd"],
        tokens=["0123456789012345", "6774548111cb5ba4"],  # an all-digit token must stay a string
        include_synthetic_scenes=True,
        synthetic_scene_tokens=[],
    )
    path = write_scene_filter(tmp_path / "scene_filter" / "mine.yaml", scene_filter)
    assert read_scene_filter(path) == scene_filter
    assert "  - '0123456789012345'" in path.read_text()
    assert read_scene_filter(write_scene_filter(tmp_path / "all.yaml", SceneFilter())) == SceneFilter()
    assert format_scene_filter(SceneFilter()).startswith("_target_: navsim.common.dataclasses.SceneFilter\n")


def test_split_files_round_trip(tmp_path):
    split = Split("synthtest", "synthetic_test", SceneFilter(frame_interval=1, tokens=["abc"]), "synthtest_filter")
    path = write_split(tmp_path, split)
    assert path.read_text() == "defaults:\n  - scene_filter: synthtest_filter\n\ndata_split: synthetic_test\n"
    assert load_split(tmp_path, "synthtest") == split


def test_reads_navsims_split_file_layout(tmp_path):
    (tmp_path / "scene_filter").mkdir()
    (tmp_path / "scene_filter" / "navmini.yaml").write_text(NAVMINI_STYLE)
    (tmp_path / "navmini.yaml").write_text("defaults:\n  - scene_filter: navmini\n\ndata_split: mini")
    split = load_split(tmp_path, "navmini")
    assert split.data_split == "mini" and split.scene_filter_name == "navmini" and len(split.scene_filter.tokens) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_history_frames: 4\nbogus: 1\n", r"unknown scene filter keys \['bogus'\]"),
        ("_target_: other.Filter\n", "_target_ is 'other.Filter'"),
        ("tokens: 'abc\n", r"<yaml>:2: not valid YAML"),
        ("tokens:\n  nested: 1\n", r"tokens must be a list of strings"),
        ("- a\n", r"<yaml>: expected a mapping"),
        ("tokens:\n  - 0123\n", "quote them in YAML"),
        ("num_future_frames: -1\n", "num_future_frames must be >= 0"),
    ],
)
def test_bad_split_files_name_the_problem(text, message):
    with pytest.raises(SceneFilterError, match=message):
        scene_filter_from_dict(parse_split_yaml(text))


def test_missing_files_and_bad_split_files(tmp_path):
    with pytest.raises(SceneFilterError, match=r"absent\.yaml: cannot read"):
        read_scene_filter(tmp_path / "absent.yaml")
    (tmp_path / "x.yaml").write_text("data_split: test\n")
    with pytest.raises(SceneFilterError, match=r"x\.yaml: expected 'defaults"):
        load_split(tmp_path, "x")
