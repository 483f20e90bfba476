"""Progress of long commands (eval, sweep, submit) made of stages (predict, metric caches, score): each stage a
:class:`navsim_eval.progress.Progress` line with its rate and time left, redrawn in place on a terminal, a line every
few seconds and the last one elsewhere (a SLURM log), so nobody watches a silent minute.
"""

from __future__ import annotations

import sys
from typing import TextIO

from navsim_eval.progress import Progress


class StageProgress:
    """A progress callback ``progress(stage, done, total)``: every stage it is told about gets its own progress."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._stage: str | None = None
        self._progress: Progress | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage or self._progress is None:
            self.close()
            self._stage, self._progress = stage, Progress(total, stage, stream=self.stream, initial=done)
        self._progress.total = total
        self._progress.update(done - self._progress.done)
        if done >= total:
            self._progress.close(final_line=True)
            self._stage, self._progress = None, None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._stage, self._progress = None, None
