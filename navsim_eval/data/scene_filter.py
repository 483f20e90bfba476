"""NAVSIM's ``SceneFilter`` and scene windowing (``navsim/common/dataclasses.py``, ``navsim/common/dataloader.py``).

A scene is a window ``frames[i : i + num_frames]`` of one log, ``i in range(0, len(frames), frame_interval)``;
windows shorter than ``num_frames`` are dropped, so are windows whose current frame (index ``num_history_frames - 1``)
has no ``roadblock_ids`` when ``has_route``; with a token list only windows whose current-frame token is listed are
kept. The scene key is that token; a later window with the same token replaces the earlier one (a dict assignment),
and loading stops once ``max_scenes`` scenes are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from navsim_eval.errors import InvalidSceneError, NavsimEvalError


class SceneFilterError(NavsimEvalError):
    """A scene filter or split file has an invalid value."""


_TOKEN_LISTS = (
    "log_names",
    "tokens",
    "synthetic_scene_tokens",
    "reactive_synthetic_initial_tokens",
    "non_reactive_synthetic_initial_tokens",
)


@dataclass(frozen=True)
class SceneFilter:
    """Which scenes to extract from the logs (NAVSIM ``SceneFilter``; ``frame_interval=None`` = non-overlapping).

    The synthetic-scene fields of NAVSIM v2 are carried so split files round-trip; this package loads original
    scenes only.
    """

    num_history_frames: int = 4
    num_future_frames: int = 10
    frame_interval: int | None = None
    has_route: bool = True
    max_scenes: int | None = None
    log_names: tuple[str, ...] | None = None
    tokens: tuple[str, ...] | None = None
    include_synthetic_scenes: bool = False
    synthetic_scene_tokens: tuple[str, ...] | None = None
    reactive_synthetic_initial_tokens: tuple[str, ...] | None = None
    non_reactive_synthetic_initial_tokens: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("num_history_frames", "num_future_frames"):
            _check_int(name, getattr(self, name))
        if self.num_history_frames < 1:
            raise SceneFilterError(f"SceneFilter: num_history_frames must be >= 1, got {self.num_history_frames}")
        if self.num_future_frames < 0:
            raise SceneFilterError(f"SceneFilter: num_future_frames must be >= 0, got {self.num_future_frames}")
        if self.frame_interval is None:
            object.__setattr__(self, "frame_interval", self.num_frames)  # as NAVSIM: non-overlapping windows
        _check_int("frame_interval", self.frame_interval)
        if self.frame_interval < 1:
            raise SceneFilterError(f"SceneFilter: frame_interval must be >= 1 or null, got {self.frame_interval}")
        if self.max_scenes is not None:
            _check_int("max_scenes", self.max_scenes)
            if self.max_scenes < 1:
                raise SceneFilterError(f"SceneFilter: max_scenes must be >= 1 or null, got {self.max_scenes}")
        for name in ("has_route", "include_synthetic_scenes"):
            if not isinstance(getattr(self, name), bool):
                raise SceneFilterError(f"SceneFilter: {name} must be true or false, got {getattr(self, name)!r}")
        for name in _TOKEN_LISTS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
                raise SceneFilterError(f"SceneFilter: {name} must be a list of strings or null, got {value!r}")
            items = tuple(value)
            bad = [item for item in items if not isinstance(item, str)]
            if bad:
                raise SceneFilterError(f"SceneFilter: {name} must hold strings (quote them in YAML), found {bad[0]!r}")
            object.__setattr__(self, name, items)

    @property
    def num_frames(self) -> int:
        """Frames per scene: history (current included) + future."""
        return self.num_history_frames + self.num_future_frames

    @property
    def current_index(self) -> int:
        """Index of the current frame inside a scene window."""
        return self.num_history_frames - 1

    def to_dict(self) -> dict[str, Any]:
        """Field values with lists for token tuples (the split-file layout)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SceneFilterError(f"SceneFilter: {name} must be an integer, got {value!r}")


@dataclass(frozen=True)
class SceneWindow:
    """One kept scene: its token (the current frame's), the log and the window's first frame index."""

    token: str
    log_name: str
    start: int
    num_frames: int

    @property
    def stop(self) -> int:
        return self.start + self.num_frames


def window_starts(num_log_frames: int, scene_filter: SceneFilter) -> range:
    """Start indices of the full-length windows of a log with ``num_log_frames`` frames."""
    last_start = num_log_frames - scene_filter.num_frames
    assert scene_filter.frame_interval is not None  # resolved in __post_init__
    return range(0, max(last_start + 1, 0), scene_filter.frame_interval)


def window_token(
    frames: Sequence[Mapping[str, Any]],
    start: int,
    scene_filter: SceneFilter,
    tokens: frozenset[str] | set[str] | None = None,
) -> str | None:
    """The scene token of the window at ``start``, or None when the route or token filter drops it.

    ``tokens`` is the token set (default: ``scene_filter.tokens``). Raises :class:`InvalidSceneError` when the
    current frame lacks what the filter reads (``roadblock_ids`` when ``has_route``, ``token``).
    """
    current = frames[start + scene_filter.current_index]
    index = start + scene_filter.current_index
    if not isinstance(current, Mapping):
        raise InvalidSceneError(f"frame {index}: expected a dict, got {type(current).__name__}")
    if scene_filter.has_route:
        roadblock_ids = current.get("roadblock_ids")
        if roadblock_ids is None or not hasattr(roadblock_ids, "__len__"):
            raise InvalidSceneError(f"frame {index}: key 'roadblock_ids': missing or not a list")
        if len(roadblock_ids) == 0:
            return None
    token = current.get("token")
    if not isinstance(token, str):
        raise InvalidSceneError(f"frame {index}: key 'token': missing or not a string")
    if tokens is None and scene_filter.tokens is not None:
        tokens = frozenset(scene_filter.tokens)
    if tokens is not None and token not in tokens:
        return None
    return token


def filter_scenes(
    logs: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], scene_filter: SceneFilter
) -> dict[str, list[Mapping[str, Any]]]:
    """NAVSIM's ``filter_scenes`` over in-memory logs ``(log_name, frame dicts)``: token -> the window's frames."""
    log_names = set(scene_filter.log_names) if scene_filter.log_names is not None else None
    tokens = frozenset(scene_filter.tokens) if scene_filter.tokens is not None else None
    scenes: dict[str, list[Mapping[str, Any]]] = {}
    for log_name, frames in logs:
        if log_names is not None and log_name not in log_names:
            continue
        for start in window_starts(len(frames), scene_filter):
            token = window_token(frames, start, scene_filter, tokens)
            if token is None:
                continue
            scenes[token] = list(frames[start : start + scene_filter.num_frames])
            if scene_filter.max_scenes is not None and len(scenes) >= scene_filter.max_scenes:
                return scenes
    return scenes
