"""Progress of a long loop on standard error, with the count, the rate and the time left.

On a terminal one line is redrawn in place (at most a few times a second); elsewhere (a log file, CI) a plain line
is written every ``NON_TTY_INTERVAL_S`` seconds, so short runs stay quiet and long ones show they are alive.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

NON_TTY_INTERVAL_S = 10.0  # a plain line at most this often when the stream is not a terminal
TTY_INTERVAL_S = 0.2  # redraw of the terminal line at most this often


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts finished items of a loop of ``total`` (None = unknown) and reports them on ``stream``.

    Use as a context manager (the terminal line is ended on exit) and call :meth:`update` per finished item.
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        unit: str = "scenes",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        initial: int = 0,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = self.initial = initial  # items done before this run (a resumed loop): not in the rate
        self.started = self.last_shown = clock()
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self._drawn = False

    def line(self) -> str:
        """``label: 470/1410 scenes (33%), 12.3 scenes/s, 1m16s left``."""
        elapsed = self.clock() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 and self.done > self.initial else math.nan
        text = f"{self.label}: {self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.1f} {self.unit}/s" if math.isfinite(rate) else ""
        if self.total and math.isfinite(rate) and rate > 0:
            text += f", {format_duration((self.total - self.done) / rate)} left"
        return text

    def update(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        interval = TTY_INTERVAL_S if self.terminal else NON_TTY_INTERVAL_S
        if now - self.last_shown >= interval:
            self._show()
            self.last_shown = now

    def _show(self) -> None:
        if self.terminal:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self, final_line: bool = False) -> None:
        """End the terminal line with the final count; elsewhere nothing more is written, unless ``final_line``."""
        if self.terminal and self._drawn:
            self._show()
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        elif final_line and not self.terminal:
            self._show()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
