"""Atomic file and folder writes: a reader (or a crash) sees the old one or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> Path:
    """Write via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # umask-respecting mode
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, fsync: bool = True) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync)


def replace_directory(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Put the finished folder ``staging`` in place of ``target`` (a sibling of it): a rename when ``target`` does
    not exist; otherwise the old folder is moved aside to ``.<name>.old``, the new one renamed in, the old one
    removed. Folders cannot be swapped in one step, so a crash in between leaves the old one under ``.old``."""
    staging, target = Path(staging), Path(target)
    if target.exists():
        previous = target.with_name(f".{target.name}.old")
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        staging.rename(target)
    return target
