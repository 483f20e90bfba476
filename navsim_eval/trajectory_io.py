"""Trajectory files, the input of ``navsim-eval score`` / ``submit``: ``{token: poses}`` in JSON or ``.npz``.

Each value is one trajectory [8, 3] or K candidates [K, 8, 3]: rear-axle poses (x forward, y left, heading in
radians) every 0.5 s in the scene's current ego frame, as NAVSIM's ``Trajectory`` holds them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.errors import NavsimEvalError
from navsim_eval.scene import validate_trajectory_array


class TrajectoryFileError(NavsimEvalError):
    """A trajectory file is missing, unreadable or holds a malformed trajectory."""


def load_trajectories(path: str | os.PathLike, require_finite: bool = True) -> dict[str, np.ndarray]:
    """Read ``{token: [8, 3] or [K, 8, 3]}`` from a JSON object or a ``.npz`` archive keyed by token.

    A wrong shape is always an error; NaN or infinite poses only with ``require_finite`` (a submission). Scoring
    passes False: such a candidate becomes an invalid row with its reason and the rest is scored.
    """
    path = Path(path)
    if not path.is_file():
        raise TrajectoryFileError(f"{path}: no such file")
    raw: dict[str, Any]
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError) as error:
            raise TrajectoryFileError(f"{path}: not a readable .npz archive ({error})") from None
    elif path.suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TrajectoryFileError(f"{path}: not readable JSON ({error})") from None
        if not isinstance(raw, dict):
            raise TrajectoryFileError(f"{path}: expected a JSON object {{token: [[x, y, heading] * 8]}}")
    else:
        raise TrajectoryFileError(f"{path}: unsupported file type {path.suffix!r}; use .json or .npz")
    if not raw:
        raise TrajectoryFileError(f"{path}: holds no trajectories")
    return {
        str(token): validate_trajectory_array(value, name=f"{path}: token {token!r}", require_finite=require_finite)
        for token, value in raw.items()
    }
