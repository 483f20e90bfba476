"""Progress of long commands (eval, sweep, submit): one bar per stage with its rate and ETA on a terminal (tqdm),
plain lines when the output is a file or a pipe (a SLURM log), so nobody watches a silent minute.

A progress callback is ``progress(stage, done, total)``; :class:`StageProgress` is one, and every stage it is told
about gets its own bar (or its own lines: at most one every ``interval`` seconds, and the last).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class StageProgress:
    """``progress(stage, done, total)`` shown as tqdm bars on a terminal, else as lines with rate and ETA."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0, bars: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interval = float(interval)
        self.bars = self.stream.isatty() if bars is None else bars
        self._stage: str | None = None
        self._bar: Any = None
        self._start = 0.0
        self._first = 0
        self._last_line = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self.close()
            self._stage, self._start, self._first, self._last_line = stage, time.perf_counter(), done, 0.0
            if self.bars:
                from tqdm import tqdm

                self._bar = tqdm(total=total, initial=done, desc=stage, unit="scene", file=self.stream, leave=True)
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)
        else:
            now = time.perf_counter()
            if done >= total or now - self._last_line >= self.interval:
                self._last_line = now
                text = self.line(stage, done, total, now - self._start, done - self._first)
                print(text, file=self.stream, flush=True)
        if done >= total:
            self.close()

    @staticmethod
    def line(stage: str, done: int, total: int, seconds: float, counted: int) -> str:
        """``stage: 120/480 scenes (25%), 12.3 scenes/s, ETA 29 s`` (rate over the scenes done in this run)."""
        percent = 100.0 * done / total if total else 100.0
        text = f"{stage}: {done}/{total} scenes ({percent:.0f}%)"
        if counted > 0 and seconds > 0:
            rate = counted / seconds
            text += f", {rate:.1f} scenes/s"
            if done < total:
                text += f", ETA {_duration((total - done) / rate)}"
            else:
                text += f", {_duration(seconds)}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
