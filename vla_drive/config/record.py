"""The run record: the resolved config and the package versions, written into every run directory."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from navsim_eval.atomic import atomic_write_text
from vla_drive.config.loader import save_config
from vla_drive.config.schema import ExperimentConfig

RUN_CONFIG_FILE, VERSIONS_FILE = "config.yaml", "versions.json"  # in every run directory
_PACKAGES = ("torch", "transformers", "peft", "accelerate", "deepspeed", "numpy", "vla-drive")


def run_metadata() -> dict[str, Any]:
    """Python and package versions (installed ones only), the CUDA build and the git commit, for the run record."""
    meta: dict[str, Any] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            meta[package.replace("-", "_")] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import torch

        meta["cuda"] = torch.version.cuda
    except ImportError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        meta["git_commit"] = commit or None
    except (OSError, subprocess.SubprocessError):
        pass
    return meta


def save_run_config(config: ExperimentConfig, run_dir: str | Path) -> Path:
    """Write ``config.yaml`` (resolved) and ``versions.json`` into ``run_dir`` atomically; returns ``run_dir``."""
    run_dir = Path(run_dir)
    save_config(config, run_dir / RUN_CONFIG_FILE)
    atomic_write_text(run_dir / VERSIONS_FILE, json.dumps(run_metadata(), indent=2, sort_keys=True) + "\n")
    return run_dir
