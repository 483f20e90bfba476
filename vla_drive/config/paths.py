"""Where a config's data is, and whether everything it reads exists, checked before anything is built.

Paths inside a config (data, splits, checkpoints, model directories) are relative to the working directory of the
run and may use environment variables (``${NAVSIM_DEVKIT_ROOT}/...``); an empty data or maps root falls back to
``$OPENSCENE_DATA_ROOT`` / ``$NUPLAN_MAPS_ROOT``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vla_drive.config.loader import PRESETS, Problems
from vla_drive.config.schema import RESUME_MODES, DataConfig, ExperimentConfig

DATA_ROOT_ENV, MAPS_ROOT_ENV = "OPENSCENE_DATA_ROOT", "NUPLAN_MAPS_ROOT"
_UNSET_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


@dataclass(frozen=True)
class DataPaths:
    """The data locations of a config, resolved (environment variables and the root fallbacks applied)."""

    data_root: Path
    maps_root: Path
    train_split: Path
    val_split: Path | None


def resolve_path(path: str, value: str, problems: Problems, env: str = "") -> Path | None:
    """``value`` with ``$VARS`` and ``~`` expanded ("" falls back to ``$env``); None after recording a problem."""
    if not value:
        if env and os.environ.get(env):
            return Path(os.environ[env]).expanduser()
        problems.add(path, f"not set{f' and ${env} is not set' if env else ''}")
        return None
    expanded = os.path.expandvars(value)
    unset = _UNSET_VAR.search(expanded)
    if unset:
        problems.add(path, f"${unset.group(1).strip('{}')} is not set (in {value!r})")
        return None
    return Path(expanded).expanduser()


def _data_fields(config: ExperimentConfig, problems: Problems) -> dict[str, Path | None]:
    """Each data path resolved on its own (None where unset or unresolvable, after recording why)."""
    data = config.data
    return {
        "data_root": resolve_path("data.data_root", data.data_root, problems, DATA_ROOT_ENV),
        "maps_root": resolve_path("data.maps_root", data.maps_root, problems, MAPS_ROOT_ENV),
        "train_split": resolve_path("data.train_split", data.train_split, problems),
        "val_split": resolve_path("data.val_split", data.val_split, problems) if data.val_split else None,
    }


def data_paths(config: ExperimentConfig) -> DataPaths:
    """Where the data of ``config`` is; raises :class:`ConfigError` for an unset root or environment variable."""
    problems = Problems(f"config {config.name!r}")
    paths = _data_fields(config, problems)
    problems.raise_if_any()
    return DataPaths(**paths)  # type: ignore[arg-type]


def synthetic_data(world: str | Path, **fields_: Any) -> DataConfig:
    """A DataConfig that generates the synthetic world in ``world`` (if missing) and trains on its splits."""
    world = str(world).rstrip("/") or "."
    return DataConfig(
        data_root=world,
        maps_root=f"{world}/maps",
        train_split=f"{world}/splits/synthetic_train.yaml",
        val_split=f"{world}/splits/synthetic_val.yaml",
        synthetic_world=world,
        **fields_,
    )


def with_synthetic_world(config: ExperimentConfig, world: str | Path) -> ExperimentConfig:
    """The config with every data path moved into the synthetic world ``world`` (e.g. a test's tmp_path)."""
    keep = (
        "max_train_scenes",
        "max_val_scenes",
        "num_workers",
        "metric_cache",
        "val_metric_cache",
        "synthetic_logs",
        "synthetic_seed",
    )
    return replace(config, data=synthetic_data(world, **{name: getattr(config.data, name) for name in keep}))


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def validate_paths(config: ExperimentConfig) -> None:
    """Check that what the config reads exists, before anything is built; raises :class:`ConfigError`.

    Checks the data and maps roots, the split files (and that each parses, names an existing scene filter and a
    ``navsim_logs/<data_split>`` folder), ``train.init_from``, a ``train.resume`` checkpoint and a local
    ``model.backbone`` directory. With ``data.synthetic_world`` set, data paths inside the world may be missing:
    the world will be generated there. (The DeepSpeed JSON is checked by the training set-up, which owns it.)
    """
    from navsim_eval.data.scene_filter import SceneFilterError
    from navsim_eval.data.splits import load_split

    problems = Problems(f"config {config.name!r}")
    paths = _data_fields(config, problems)
    world = None
    if config.data.synthetic_world:
        world = resolve_path("data.synthetic_world", config.data.synthetic_world, problems)

    def missing(path: str, location: Path, kind: str) -> bool:
        """Record a missing file or folder unless the synthetic world will create it."""
        if location.exists():
            return False
        if world is not None and _inside(location, world):
            return True  # generated with the world; nothing more to check
        where = f" (outside data.synthetic_world {str(world)!r}, so generating the world will not create it)"
        problems.add(path, f"{kind} {str(location)!r} does not exist" + (where if world is not None else ""))
        return True

    root = paths["data_root"]
    for name, kind in (("data_root", "folder"), ("maps_root", "folder")):
        if paths[name] is not None:
            missing(f"data.{name}", paths[name], kind)
    for name in ("train_split", "val_split"):
        split = paths[name]
        if split is None or missing(f"data.{name}", split, "split file"):
            continue
        try:
            loaded = load_split(split.parent, split.stem)
        except SceneFilterError as error:
            problems.add(f"data.{name}", str(error))
            continue
        logs = root / "navsim_logs" / loaded.data_split if root is not None else None
        if logs is not None and root.exists() and not logs.is_dir():
            message = f"its data_split {loaded.data_split!r} reads {str(logs)!r}, which does not exist"
            problems.add(f"data.{name}", message)
    checks = [] if config.train.init_preset else [("train.init_from", config.train.init_from, "model directory")]
    if config.train.init_preset:  # the init_from model is trained from this preset first when it is missing
        if config.train.init_preset not in PRESETS:
            checks.append(("train.init_preset", config.train.init_preset, "preset or config file"))
        if Path(config.train.init_from).name != "model":  # the stages write <output_dir>/model
            problems.add(
                "train.init_from",
                f"expected a path ending in /model when train.init_preset trains it, got {config.train.init_from!r}",
            )
    if config.train.resume not in RESUME_MODES:
        checks.append(("train.resume", config.train.resume, "checkpoint"))
    if config.model.backbone.startswith(("/", "./", "../", "~", "$")):
        checks.append(("model.backbone", config.model.backbone, "backbone directory"))
    for path, value, kind in checks:
        if value:
            location = resolve_path(path, value, problems)
            if location is not None and not location.exists():
                problems.add(path, f"{kind} {str(location)!r} does not exist")
    problems.raise_if_any()
