"""Where eval, sweep and submit write when not told: under ``$NAVSIM_EXP_ROOT`` when it is set (NAVSIM's own
experiment root, where its scripts write too), otherwise next to the model as before.

    $NAVSIM_EXP_ROOT/vla_drive/<model>/eval/<split>/     the evaluation of a split
    $NAVSIM_EXP_ROOT/vla_drive/<model>/sweep/            the guidance sweep
    $NAVSIM_EXP_ROOT/vla_drive/<model>/submission/       submission.pkl and its predictions
    $NAVSIM_EXP_ROOT/vla_drive/metric_cache/<split>/     metric caches, shared by every model evaluated on the split

``<model>`` is the model directory's name, or its run's name for ``<run>/model``.
"""

from __future__ import annotations

import os
from pathlib import Path

EXP_ROOT_VARIABLE = "NAVSIM_EXP_ROOT"


def experiment_root() -> Path | None:
    """``$NAVSIM_EXP_ROOT`` as a path, or None when it is unset or empty."""
    value = os.environ.get(EXP_ROOT_VARIABLE, "").strip()
    return Path(value).expanduser() if value else None


def model_label(model_dir: str | os.PathLike[str]) -> str:
    """A model's name in output paths: its directory's name, or the run's for ``<run>/model``."""
    path = Path(model_dir).resolve()
    return path.parent.name if path.name == "model" else path.name


def default_output(model_dir: str | os.PathLike[str], kind: str, split: str | os.PathLike[str] | None = None) -> Path:
    """The output folder of ``kind`` ("eval", "sweep", "submission") for a model (and split)."""
    root = experiment_root()
    split_name = Path(split).stem if split is not None else None
    if root is not None:
        base = root / "vla_drive" / model_label(model_dir) / kind
    elif kind == "submission":
        base = Path("submission")
    else:
        base = Path(model_dir) / kind
    return base / split_name if kind == "eval" and split_name else base


def default_metric_cache(out_dir: str | os.PathLike[str], split: str | os.PathLike[str]) -> Path:
    """The metric-cache folder of a split: shared under ``$NAVSIM_EXP_ROOT``, else ``<out>/metric_cache``."""
    root = experiment_root()
    if root is not None:
        return root / "vla_drive" / "metric_cache" / Path(split).stem
    return Path(out_dir) / "metric_cache"
