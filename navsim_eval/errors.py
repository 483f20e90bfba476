"""Exceptions raised on bad input. Every message names the offending file or field and what was expected."""

from __future__ import annotations


class NavsimEvalError(ValueError):
    """Base class of navsim_eval input errors."""


class InvalidTrajectoryError(NavsimEvalError):
    """A trajectory has the wrong shape, length or non-finite values."""


class InvalidSceneError(NavsimEvalError):
    """A scene, map or metric cache is malformed or incomplete."""


class CacheFileError(NavsimEvalError):
    """A metric cache file is missing, truncated, corrupt or of another format version."""
