"""Run logging on the main rank: a progress bar, ``metrics.jsonl`` in the run directory, TensorBoard, and Weights &
Biases when asked (``train.loggers``). Other ranks log nothing. Images (BEV plots, the sweep plot) go to TensorBoard
and W&B too. W&B follows the user's own settings (``WANDB_MODE``, ``WANDB_API_KEY``, ...); the test suite and the
demo set ``WANDB_MODE=offline`` unless it is set.

Training metrics are averaged over the ``log_every`` steps since the last record; evaluation metrics are written as
they come. On resume, records past the resumed step are dropped from ``metrics.jsonl`` and TensorBoard (its
``purge_step``), so the files describe the run that continued, not the one that crashed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_run_id"
KNOWN_LOGGERS = ("jsonl", "tensorboard", "wandb")


class _LinePrinter:
    """Progress without tqdm (or without a terminal): one line per logged step."""

    def __init__(self, total: int, initial: int, stream: TextIO) -> None:
        self.total, self.n, self.stream = total, initial, stream

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str) -> None:
        print(f"step {self.n}/{self.total} {text}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _LinePrinter(total, initial, sys.stderr)
    if not sys.stderr.isatty():
        return _LinePrinter(total, initial, sys.stderr)
    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, mininterval=1.0)


def _step_of(line: str) -> float:
    """The step of a metrics.jsonl record; infinity for a line that is not one (dropped on resume)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


PROGRESS_METRICS = (("loss", "loss"), ("rl/reward_mean", "reward"), ("lr", "lr"))  # (metric, name on the line)


def _format(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{key}={value:.4g}" for key, value in metrics.items())


class RunLogger:
    """Logs one run from the main rank; a disabled logger (other ranks) accepts every call and does nothing."""

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        loggers: Sequence[str] = ("jsonl", "tensorboard"),
        total_steps: int,
        initial_step: int = 0,
        log_every: int = 10,
        enabled: bool = True,
        run_name: str = "run",
        config: Mapping[str, Any] | None = None,
        wandb_project: str = "vla-drive",
        progress: bool = True,
    ) -> None:
        unknown = sorted(set(loggers) - set(KNOWN_LOGGERS))
        if unknown:
            raise ValueError(f"train.loggers: unknown {unknown}; expected some of {list(KNOWN_LOGGERS)}")
        self.enabled = enabled
        self.output_dir = Path(output_dir)
        self.log_every = max(1, int(log_every))
        self._window: dict[str, list[float]] = {}
        self._last_validation: float | None = None  # the last eval/score, shown on the progress line
        self._jsonl: TextIO | None = None
        self._tensorboard: Any = None
        self._wandb: Any = None
        self._bar: Any = None
        if not enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if "jsonl" in loggers:
            self._jsonl = self._open_jsonl(initial_step)
        if "tensorboard" in loggers:
            self._tensorboard = self._open_tensorboard(initial_step)
        elif progress:
            self.message(
                f"TensorBoard is off (train.loggers: [{', '.join(loggers)}]); add tensorboard to it for curves in "
                f"{self.output_dir / TENSORBOARD_DIR}"
            )
        if "wandb" in loggers:
            self._wandb = self._open_wandb(run_name, config, wandb_project)
        if progress:
            self._bar = _progress_bar(total_steps, initial_step)

    # -------------------------------------------------------------------------------------------- backends

    def _open_jsonl(self, initial_step: int) -> TextIO:
        path = self.output_dir / METRICS_FILE
        if path.is_file():  # keep what the resumed run had logged up to its checkpoint (not a torn last line)
            kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= initial_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        return open(path, "a", encoding="utf-8")  # closed in close()

    def _open_tensorboard(self, initial_step: int) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            logger.warning("TensorBoard logging is off: %s (pip install tensorboard)", error)
            return None
        purge = initial_step + 1 if initial_step > 0 else None
        return SummaryWriter(log_dir=str(self.output_dir / TENSORBOARD_DIR), purge_step=purge)

    def _open_wandb(self, run_name: str, config: Mapping[str, Any] | None, project: str) -> Any:
        try:
            import wandb
        except ImportError:
            logger.warning("Weights & Biases logging is off: wandb is not installed (pip install wandb)")
            return None
        id_file = self.output_dir / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n", encoding="utf-8")
        return wandb.init(  # mode, entity, API key: the user's own W&B settings (WANDB_MODE, ...)
            project=project,
            name=run_name,
            id=run_id,
            resume="allow",
            dir=str(self.output_dir),
            config=dict(config or {}),
        )

    # -------------------------------------------------------------------------------------------- logging

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """One training step; written (averaged over the window) every ``log_every`` steps."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
        for key, value in metrics.items():
            self._window.setdefault(key, []).append(float(value))
        if step % self.log_every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Write the training metrics gathered since the last record (the last value of ``lr``)."""
        if not self.enabled or not self._window:
            return
        averaged = {
            key: values[-1] if key == "lr" else math.fsum(values) / len(values) for key, values in self._window.items()
        }
        self._window.clear()
        self.log(step, averaged, prefix="train/")
        if self._bar is not None:
            self._bar.set_postfix_str(self.progress_text(averaged))

    def progress_text(self, averaged: Mapping[str, float]) -> str:
        """The progress line's metrics: loss and learning rate, the RL reward when there is one, and the last
        validation score (``val=`` once a validation has run)."""
        shown = {name: averaged[key] for key, name in PROGRESS_METRICS if key in averaged}
        if self._last_validation is not None:
            shown["val"] = self._last_validation
        return _format(shown)

    def log(self, step: int, metrics: Mapping[str, float], prefix: str = "") -> None:
        """Write ``metrics`` at ``step`` now, every key prefixed (``train/``, ``eval/``)."""
        if not self.enabled or not metrics:
            return
        record = {f"{prefix}{key}": float(value) for key, value in metrics.items()}
        if prefix == "eval/" and "score" in metrics:
            self._last_validation = float(metrics["score"])
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **record}) + "\n")
            self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(record, step=step)

    def log_images(self, step: int, images: Mapping[str, str | os.PathLike[str]]) -> None:
        """PNG files (BEV plots of the worst scenes, the sweep plot) as images at ``step``, under their names."""
        if not self.enabled or not images:
            return
        if self._tensorboard is not None:
            import numpy as np
            from PIL import Image

            for name, path in images.items():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self._tensorboard.add_image(name, pixels, step, dataformats="HWC")
            self._tensorboard.flush()
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(str(path)) for name, path in images.items()}, step=step)

    def message(self, text: str) -> None:
        """A line for the person watching (above the progress bar)."""
        if not self.enabled:
            return
        if self._bar is not None and hasattr(self._bar, "write"):
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._jsonl = self._tensorboard = self._wandb = self._bar = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
