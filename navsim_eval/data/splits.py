"""NAVSIM split files: ``train_test_split/<split>.yaml`` and ``train_test_split/scene_filter/<name>.yaml``.

A split file names its scene filter and data folder::

    defaults:
      - scene_filter: navtest
    data_split: test

A two-stage split (NAVSIM v2: navhard_two_stage, warmup_two_stage, ...) also lists ``reactive_all_mapping``: per
stage-one scene ``[stage-one token, its predecessor 0.5 s earlier, [[now, prev] synthetic token pairs]]``.

A scene-filter file is a Hydra ``SceneFilter`` config (``_target_``, ``_convert_``, frame counts, ``has_route``,
``max_scenes``, and ``log_names`` / ``tokens`` lists of quoted strings, ``null`` for "all").

They are read with PyYAML's safe loader; :func:`format_scene_filter` writes them in the official layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from navsim_eval.atomic import atomic_write_text
from navsim_eval.data.scene_filter import SceneFilter, SceneFilterError

SCENE_FILTER_TARGET = "navsim.common.dataclasses.SceneFilter"
SCENE_FILTER_DIR = "scene_filter"
_HYDRA_KEYS = ("_target_", "_convert_")
_FILTER_FIELDS = tuple(SceneFilter.__dataclass_fields__)


def parse_split_yaml(text: str, source: str = "<yaml>") -> dict[str, Any]:
    """Parse a NAVSIM split / scene-filter YAML file into a dict; errors name the file and line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SceneFilterError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SceneFilterError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _quote(str(value))


# ------------------------------------------------------------------------------------------------ scene filters


def scene_filter_from_dict(data: dict[str, Any], source: str = "<scene filter>") -> SceneFilter:
    """Build a :class:`SceneFilter` from parsed YAML, rejecting unknown keys and another ``_target_``."""
    target = data.get("_target_", SCENE_FILTER_TARGET)
    if target != SCENE_FILTER_TARGET:
        raise SceneFilterError(f"{source}: _target_ is {target!r}, expected {SCENE_FILTER_TARGET!r}")
    unknown = [key for key in data if key not in _FILTER_FIELDS and key not in _HYDRA_KEYS]
    if unknown:
        expected = list(_FILTER_FIELDS)
        raise SceneFilterError(f"{source}: unknown scene filter keys {unknown}; expected some of {expected}")
    kwargs = {key: value for key, value in data.items() if key in _FILTER_FIELDS}
    try:
        return SceneFilter(**kwargs)
    except SceneFilterError as error:
        raise SceneFilterError(f"{source}: {error}") from None


def read_scene_filter(path: str | Path) -> SceneFilter:
    """Read a ``scene_filter/<name>.yaml`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SceneFilterError(f"{path}: cannot read scene filter ({error.strerror or error})") from None
    return scene_filter_from_dict(parse_split_yaml(text, str(path)), str(path))


def format_scene_filter(scene_filter: SceneFilter) -> str:
    """The YAML text of a scene filter in NAVSIM's layout (token lists as quoted block lists)."""
    lines = [f"_target_: {SCENE_FILTER_TARGET}", "_convert_: 'all'", ""]
    data = scene_filter.to_dict()
    for key in ("num_history_frames", "num_future_frames", "frame_interval", "has_route", "max_scenes"):
        lines.append(f"{key}: {_format_scalar(data[key])}")
    if scene_filter.include_synthetic_scenes:
        lines.append("include_synthetic_scenes: true")
    for key in ("log_names", "tokens", *(k for k in data if k.endswith("_tokens") and k != "tokens")):
        value = data[key]
        if value is None and key not in ("log_names", "tokens"):
            continue
        if value is None:
            lines.append(f"{key}: null")
        elif not value:
            lines.append(f"{key}: []")
        else:
            lines.append(f"{key}:")
            lines.extend(f"  - {_quote(item)}" for item in value)
    return "\n".join(lines) + "\n"


def write_scene_filter(path: str | Path, scene_filter: SceneFilter) -> Path:
    """Write a ``scene_filter/<name>.yaml`` file (atomically)."""
    return atomic_write_text(Path(path), format_scene_filter(scene_filter))


# ------------------------------------------------------------------------------------------------ split files


@dataclass(frozen=True)
class TwoStageEntry:
    """One stage-one scene of a two-stage split and its synthetic follow-ups (``reactive_all_mapping``)."""

    stage_one: str  # the scene at t0
    previous: str  # the scene 0.5 s earlier (its pair for two-frame extended comfort)
    pairs: tuple[tuple[str, str], ...]  # (now, prev) synthetic scenes starting about 4 s / 3.5 s later

    @property
    def synthetic_tokens(self) -> list[str]:
        return [token for pair in self.pairs for token in pair]


@dataclass(frozen=True)
class Split:
    """A train/test split: its name, the data folder it reads (``navsim_logs/<data_split>``) and its filter;
    ``two_stage`` holds the ``reactive_all_mapping`` of a two-stage split (None for one-stage splits)."""

    name: str
    data_split: str
    scene_filter: SceneFilter
    scene_filter_name: str
    two_stage: tuple[TwoStageEntry, ...] | None = None

    def stage_one_tokens(self) -> list[str]:
        """The stage-one and predecessor tokens of the mapping, in mapping order (each once)."""
        entries = self.two_stage or ()
        return list(dict.fromkeys(token for e in entries for token in (e.stage_one, e.previous)))

    def stage_two_tokens(self) -> list[str]:
        """The synthetic tokens of the mapping, in mapping order (each once)."""
        return list(dict.fromkeys(token for e in self.two_stage or () for token in e.synthetic_tokens))


def _two_stage_mapping(value: Any, source: str) -> tuple[TwoStageEntry, ...]:
    """Parse ``reactive_all_mapping``; a token must be a (quoted) string."""
    if not isinstance(value, list):
        raise SceneFilterError(f"{source}: reactive_all_mapping must be a list, got {type(value).__name__}")
    entries = []
    for i, item in enumerate(value):
        where = f"{source}: reactive_all_mapping[{i}]"
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], list)):
            raise SceneFilterError(f"{where}: expected [stage-one token, previous token, [[now, prev], ...]]")
        pairs = item[2]
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
            raise SceneFilterError(f"{where}: each synthetic entry must be a [now, prev] pair of tokens")
        tokens = [item[0], item[1], *(token for pair in pairs for token in pair)]
        bad = [token for token in tokens if not isinstance(token, str)]
        if bad:
            raise SceneFilterError(f"{where}: tokens must be strings (quote them in YAML), found {bad[0]!r}")
        entries.append(TwoStageEntry(item[0], item[1], tuple((a, b) for a, b in pairs)))
    return tuple(entries)


def _split_file_fields(data: dict[str, Any], source: str) -> tuple[str, str]:
    """(scene filter name, data_split) of a parsed ``<split>.yaml``."""
    defaults = data.get("defaults")
    names = [
        item["scene_filter"]
        for item in (defaults or [])
        if isinstance(item, dict) and isinstance(item.get("scene_filter"), str)
    ]
    if len(names) != 1:
        raise SceneFilterError(f"{source}: expected 'defaults: [- scene_filter: <name>]', got {defaults!r}")
    data_split = data.get("data_split")
    if not isinstance(data_split, str) or not data_split:
        raise SceneFilterError(f"{source}: 'data_split' must be a folder name such as 'test', got {data_split!r}")
    return names[0], data_split


def load_split(config_dir: str | Path, name: str) -> Split:
    """Load ``<config_dir>/<name>.yaml`` and its ``<config_dir>/scene_filter/<filter>.yaml``.

    ``config_dir`` is a ``train_test_split`` folder (NAVSIM: ``navsim/planning/script/config/common/
    train_test_split``).
    """
    config_dir = Path(config_dir)
    path = config_dir / f"{name}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SceneFilterError(f"{path}: cannot read split file ({error.strerror or error})") from None
    data = parse_split_yaml(text, str(path))
    filter_name, data_split = _split_file_fields(data, str(path))
    scene_filter = read_scene_filter(config_dir / SCENE_FILTER_DIR / f"{filter_name}.yaml")
    mapping = data.get("reactive_all_mapping")
    two_stage = None if mapping is None else _two_stage_mapping(mapping, str(path))
    return Split(name, data_split, scene_filter, filter_name, two_stage)


def write_split(config_dir: str | Path, split: Split) -> Path:
    """Write ``<config_dir>/<name>.yaml`` and its scene filter file; returns the split file path."""
    config_dir = Path(config_dir)
    write_scene_filter(config_dir / SCENE_FILTER_DIR / f"{split.scene_filter_name}.yaml", split.scene_filter)
    text = f"defaults:\n  - scene_filter: {split.scene_filter_name}\n\ndata_split: {split.data_split}\n"
    if split.two_stage is not None:
        text += "reactive_all_mapping:\n"
        for entry in split.two_stage:
            text += f"  - - {_quote(entry.stage_one)}\n    - {_quote(entry.previous)}\n"
            if not entry.pairs:
                text += "    - []\n"
            for i, (now, previous) in enumerate(entry.pairs):
                lead = "    - - - " if i == 0 else "      - - "
                text += f"{lead}{_quote(now)}\n{' ' * (len(lead) - 2)}- {_quote(previous)}\n"
    return atomic_write_text(config_dir / f"{split.name}.yaml", text)
