"""``SceneLoader``: scenes of a data split, built from OpenScene logs with NAVSIM's scene filter.

Mirrors ``navsim/common/dataloader.py`` (``filter_scenes`` + ``SceneLoader``) for original scenes, with three
differences that make a long run robust and reproducible:

* logs are read in file-name order (NAVSIM: ``Path.iterdir`` order, which depends on the file system);
* a log that cannot be read, a scene with an invalid frame and a scene whose required camera image is missing are
  skipped, never fatal; :class:`LoadReport` counts them and says why (NAVSIM would raise);
* ``max_scenes`` counts loaded scenes, so skipped scenes do not use up the budget.

A scene's ``log_name`` is its current frame's, its ``map_name`` the current frame's ``map_location`` (``las_vegas``
mapped to ``us-nv-las-vegas-strip`` as ``NavSimScenario`` does). Frames are decoded once per log and shared by the
overlapping scenes that contain them: treat them as read-only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from navsim_eval.data.openscene import CAMERA_NAMES, LogFrame, decode_frame, load_log_pickle
from navsim_eval.data.paths import DatasetPathError, OpenScenePaths
from navsim_eval.data.scene_filter import SceneFilter, SceneWindow, window_starts, window_token
from navsim_eval.errors import InvalidSceneError
from navsim_eval.scene import Scene

SKIP_UNREADABLE_LOG = "unreadable log"
SKIP_INVALID_FRAME = "invalid frame"
SKIP_MISSING_CAMERA = "missing camera file"
SKIP_DUPLICATE_TOKEN = "duplicate token"
CameraFrames = Literal["history", "current", "all"]
MAX_LISTED = 5


@dataclass(frozen=True)
class SkipRecord:
    """One skipped log or scene: a reason category (``SKIP_*``), where, and the detailed message."""

    kind: str
    log_name: str
    token: str | None
    detail: str


@dataclass
class LoadReport:
    """What a :class:`SceneLoader` read, loaded and skipped, and why."""

    log_dir: Path
    logs_found: int = 0
    logs_loaded: int = 0
    frames_decoded: int = 0
    scenes_loaded: int = 0
    skipped_logs: list[SkipRecord] = field(default_factory=list)
    skipped_scenes: list[SkipRecord] = field(default_factory=list)
    missing_logs: list[str] = field(default_factory=list)  # named by the filter, no file
    missing_tokens: list[str] = field(default_factory=list)  # listed by the filter, in no window of any log
    seconds: float = 0.0

    @property
    def scenes_skipped(self) -> int:
        return len(self.skipped_scenes)

    def reasons(self) -> dict[str, int]:
        """Skip counts by reason category (logs and scenes together)."""
        return dict(Counter(record.kind for record in (*self.skipped_logs, *self.skipped_scenes)))

    @property
    def scenes_per_second(self) -> float:
        return self.scenes_loaded / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """A few lines for a log file: counts, skip reasons with examples, missing logs and tokens."""
        lines = [
            f"{self.log_dir}: {self.scenes_loaded} scenes from {self.logs_loaded}/{self.logs_found} logs "
            f"({self.frames_decoded} frames decoded, {self.seconds:.2f} s); skipped {len(self.skipped_logs)} logs "
            f"and {self.scenes_skipped} scenes"
        ]
        for kind, count in sorted(self.reasons().items()):
            examples = [r for r in (*self.skipped_logs, *self.skipped_scenes) if r.kind == kind][:MAX_LISTED]
            lines.append(f"  {kind}: {count}")
            lines.extend(f"    {record.detail}" for record in examples)
        if self.missing_logs:
            lines.append(f"  logs named by the filter but not found: {len(self.missing_logs)}")
            lines.extend(f"    {name}" for name in self.missing_logs[:MAX_LISTED])
        if self.missing_tokens:
            lines.append(f"  tokens listed by the filter but in no log window: {len(self.missing_tokens)}")
            lines.extend(f"    {token}" for token in self.missing_tokens[:MAX_LISTED])
        return "\n".join(lines)


class _LogFrames:
    """One log's frame dicts, decoded on first use (the validation result is cached too)."""

    def __init__(
        self, path: Path, raw: list[dict[str, Any]], sensor_root: Path | None, require_annotations: bool
    ) -> None:
        self.path, self.raw = path, raw
        self.sensor_root, self.require_annotations = sensor_root, require_annotations
        self.decoded: dict[int, LogFrame] = {}
        self.errors: dict[int, str] = {}
        self.missing_camera: dict[int, str | None] = {}

    def get(self, index: int) -> LogFrame | None:
        if index in self.decoded:
            return self.decoded[index]
        if index in self.errors:
            return None
        try:
            frame = decode_frame(
                self.raw[index],
                source=str(self.path),
                index=index,
                sensor_root=self.sensor_root,
                require_annotations=self.require_annotations,
            )
        except InvalidSceneError as error:
            self.errors[index] = str(error)
            return None
        self.decoded[index] = frame
        return frame

    def first_missing_camera(self, index: int, cameras: Sequence[str]) -> str | None:
        """The first required camera image of frame ``index`` that is not a file (its path), or None."""
        if index not in self.missing_camera:
            frame = self.decoded[index]
            missing = None
            for name in cameras:
                path = frame.cameras[name].path(self.sensor_root) if self.sensor_root else None
                if path is None or not path.is_file():
                    missing = f"{name} image {path}"
                    break
            self.missing_camera[index] = missing
        return self.missing_camera[index]


class SceneLoader:
    """Scenes of one data split, keyed by token (the current frame's), in log-file then window order.

    ``loader[token]`` (or ``loader[i]``) builds a :class:`Scene`; iteration yields scenes; ``report`` says what was
    skipped. ``require_cameras`` names cameras (``CAMERA_NAMES``) whose image files must exist under
    ``sensor_root`` in the ``camera_frames`` of each scene (default: the history frames, the agent's input).
    """

    def __init__(
        self,
        data_root: str | Path | None = None,
        split: str | None = None,
        scene_filter: SceneFilter | None = None,
        sensor_root: str | Path | None = None,
        require_cameras: Sequence[str] = (),
        *,
        camera_frames: CameraFrames = "history",
        require_annotations: bool = True,
        log_dir: str | Path | None = None,
    ) -> None:
        if log_dir is None:
            if split is None:
                raise DatasetPathError("pass the data split ('test', 'trainval', 'mini', ...) or a log_dir")
            paths = OpenScenePaths.resolve(split, data_root)
            log_dir = paths.log_dir
            sensor_root = sensor_root if sensor_root is not None else paths.sensor_dir
        self.log_dir = Path(log_dir)
        self.sensor_root = Path(sensor_root) if sensor_root is not None else None
        self.scene_filter = scene_filter if scene_filter is not None else SceneFilter()
        self.require_cameras = tuple(require_cameras)
        unknown = [name for name in self.require_cameras if name not in CAMERA_NAMES]
        if unknown:
            raise DatasetPathError(f"unknown cameras {unknown}; expected some of {list(CAMERA_NAMES)}")
        if self.require_cameras and self.sensor_root is None:
            raise DatasetPathError("require_cameras needs a sensor_root (the sensor_blobs/<split> folder)")
        if camera_frames not in ("history", "current", "all"):
            raise DatasetPathError(f"camera_frames must be 'history', 'current' or 'all', got {camera_frames!r}")
        self.camera_frames = camera_frames
        self.require_annotations = require_annotations
        if not self.log_dir.is_dir():
            origin = " (data root from $OPENSCENE_DATA_ROOT)" if data_root is None and split is not None else ""
            raise DatasetPathError(
                f"log folder {self.log_dir} does not exist{origin}; expected navsim_logs/<split>/*.pkl"
            )
        self._logs: dict[str, _LogFrames] = {}
        self._windows: dict[str, tuple[str, SceneWindow]] = {}
        self.report = LoadReport(self.log_dir)
        self._load()

    @classmethod
    def from_log_dir(
        cls, log_dir: str | Path, scene_filter: SceneFilter | None = None, sensor_root: str | Path | None = None, **kw
    ) -> SceneLoader:
        """A loader over any folder of log pickles (not necessarily ``navsim_logs/<split>``)."""
        return cls(scene_filter=scene_filter, sensor_root=sensor_root, log_dir=log_dir, **kw)

    @classmethod
    def from_split_file(
        cls, split_file: str | Path, data_root: str | Path | None = None, max_scenes: int | None = None, **kw
    ) -> SceneLoader:
        """The scenes of a NAVSIM split file (``<name>.yaml`` next to ``scene_filter/``), the first ``max_scenes``
        of them when given; ``data_root`` None reads ``$OPENSCENE_DATA_ROOT``."""
        from dataclasses import replace

        from navsim_eval.data.splits import load_split

        path = Path(split_file)
        split = load_split(path.parent, path.stem)
        scene_filter = split.scene_filter if max_scenes is None else replace(split.scene_filter, max_scenes=max_scenes)
        return cls(data_root, split.data_split, scene_filter, **kw)

    # -------------------------------------------------------------------------------------------- loading

    def _camera_indices(self, window: SceneWindow) -> range:
        history = self.scene_filter.num_history_frames
        if self.camera_frames == "all":
            return range(window.start, window.stop)
        if self.camera_frames == "current":
            return range(window.start + history - 1, window.start + history)
        return range(window.start, window.start + history)

    def _load(self) -> None:
        started = time.perf_counter()
        scene_filter, report = self.scene_filter, self.report
        paths = sorted(p for p in self.log_dir.iterdir() if p.suffix == ".pkl" and p.is_file())
        if scene_filter.log_names is not None:
            wanted = set(scene_filter.log_names)
            found = {p.stem for p in paths}
            report.missing_logs = [name for name in scene_filter.log_names if name not in found]
            paths = [p for p in paths if p.stem in wanted]
        tokens = frozenset(scene_filter.tokens) if scene_filter.tokens is not None else None
        report.logs_found = len(paths)
        full = False
        for path in paths:
            try:
                raw = load_log_pickle(path)
            except InvalidSceneError as error:
                report.skipped_logs.append(SkipRecord(SKIP_UNREADABLE_LOG, path.stem, None, str(error)))
                continue
            log = _LogFrames(path, raw, self.sensor_root, self.require_annotations)
            report.logs_loaded += 1
            full = self._load_log(path.stem, log, tokens)
            if log.decoded:
                self._logs[path.stem] = log
            log.raw = []  # the decoded frames keep their own dicts
            report.frames_decoded += len(log.decoded)
            if full:
                break
        report.scenes_loaded = len(self._windows)
        if tokens is not None and not full:
            seen = set(self._windows) | {r.token for r in report.skipped_scenes if r.token}
            report.missing_tokens = [t for t in dict.fromkeys(scene_filter.tokens or ()) if t not in seen]
        report.seconds = time.perf_counter() - started

    def _load_log(self, log_key: str, log: _LogFrames, tokens: frozenset[str] | None) -> bool:
        """Add the kept scenes of one log; True when ``max_scenes`` is reached."""
        scene_filter, report = self.scene_filter, self.report
        for start in window_starts(len(log.raw), scene_filter):
            try:
                token = window_token(log.raw, start, scene_filter, tokens)
            except InvalidSceneError as error:
                detail = f"{log.path}: {error}"
                report.skipped_scenes.append(SkipRecord(SKIP_INVALID_FRAME, log_key, None, detail))
                continue
            if token is None:
                continue
            window = SceneWindow(token, log_key, start, scene_filter.num_frames)
            reason = self._window_problem(log, window)
            if reason is not None:
                report.skipped_scenes.append(SkipRecord(reason[0], log_key, token, reason[1]))
                continue
            if token in self._windows:
                previous = self._windows[token][0]
                detail = f"scene {token} of {previous} replaced by the window of {log_key} (as NAVSIM's dict)"
                report.skipped_scenes.append(SkipRecord(SKIP_DUPLICATE_TOKEN, previous, token, detail))
            self._windows[token] = (log_key, window)
            if scene_filter.max_scenes is not None and len(self._windows) >= scene_filter.max_scenes:
                return True
        return False

    def _window_problem(self, log: _LogFrames, window: SceneWindow) -> tuple[str, str] | None:
        for index in range(window.start, window.stop):
            if log.get(index) is None:
                return SKIP_INVALID_FRAME, log.errors[index]
        if self.require_cameras:
            for index in self._camera_indices(window):
                missing = log.first_missing_camera(index, self.require_cameras)
                if missing is not None:
                    token = log.decoded[index].token
                    return SKIP_MISSING_CAMERA, f"{log.path}: frame {index} (token {token}): {missing}"
        return None

    # -------------------------------------------------------------------------------------------- access

    @property
    def tokens(self) -> list[str]:
        """Scene tokens in load order."""
        return list(self._windows)

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, token: object) -> bool:
        return token in self._windows

    def log_frames(self, token: str) -> list[LogFrame]:
        """The decoded log frames of a scene (camera calibration, raw dicts, ego-frame annotations)."""
        try:
            log_key, window = self._windows[token]
        except KeyError:
            raise KeyError(f"scene token {token!r} is not loaded ({len(self)} scenes from {self.log_dir})") from None
        log = self._logs[log_key]
        return [log.decoded[i] for i in range(window.start, window.stop)]

    def __getitem__(self, key: str | int) -> Scene:
        """The scene of a token (or of a position in :attr:`tokens`)."""
        token = self.tokens[key] if isinstance(key, int) else key
        frames = self.log_frames(token)
        current = frames[self.scene_filter.current_index]
        return Scene(
            token=token,
            log_name=current.log_name,
            map_name=current.map_name,
            frames=[f.frame for f in frames],
            num_history=self.scene_filter.num_history_frames,
        )

    def __iter__(self) -> Iterator[Scene]:
        for token in self._windows:
            yield self[token]

    def tokens_per_log(self) -> dict[str, list[str]]:
        """Scene tokens grouped by log name (NAVSIM's ``get_tokens_list_per_log``)."""
        grouped: dict[str, list[str]] = {}
        for token, (log_key, window) in self._windows.items():
            log_name = self._logs[log_key].decoded[window.start].log_name
            grouped.setdefault(log_name, []).append(token)
        return grouped
