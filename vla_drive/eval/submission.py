"""NAVSIM leaderboard submissions: ``submission.pkl`` written and read without navsim or nuplan installed.

The leaderboard unpickles a dict of team metadata and per-token ``navsim.common.dataclasses.Trajectory`` objects
(each holding a ``nuplan.planning.simulation.trajectory.trajectory_sampling.TrajectorySampling``):

* v1 (navtest): ``{"team_name", "authors", "email", "institution", "country / region", "predictions": [{token:
  Trajectory}, ...]}``; a list of several dicts is a multi-seed submission;
* v2 (two-stage, e.g. navhard / private_test_hard): the same metadata with ``"first_stage_predictions"`` and
  ``"second_stage_predictions"``, each a list of {token: Trajectory}.

The stand-in classes below have exactly the official fields. While a submission is pickled they are registered
under the official module paths (only where those modules are not importable; with navsim installed its own
classes are used), so the file unpickles into the official classes on the server. :func:`read_submission` loads
official and our pickles alike with a restricted unpickler (only these classes and numpy arrays).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_bytes

TRAJECTORY_PATH = ("navsim.common.dataclasses", "Trajectory")
SAMPLING_PATH = ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling")
METADATA_KEYS = ("team_name", "authors", "email", "institution", "country / region")
NUM_POSES, INTERVAL_S = 8, 0.5


class SubmissionError(ValueError):
    """A submission that cannot be written (missing tokens, bad trajectories) or read."""


@dataclass
class TrajectorySampling:
    """Stand-in for nuplan's ``TrajectorySampling`` (same fields, so the pickled state is the same)."""

    num_poses: int | None = None
    time_horizon: float | None = None
    interval_length: float | None = None


@dataclass
class Trajectory:
    """Stand-in for ``navsim.common.dataclasses.Trajectory``: poses [8, 3] float32 in the ego frame."""

    poses: np.ndarray
    trajectory_sampling: TrajectorySampling = field(
        default_factory=lambda: TrajectorySampling(NUM_POSES, NUM_POSES * INTERVAL_S, INTERVAL_S)
    )


@dataclass
class TeamInfo:
    """The metadata the leaderboard shows (``team_name`` may be ``<a href=repo>Method</a>``)."""

    team_name: str
    authors: str
    email: str
    institution: str
    country: str

    def as_dict(self) -> dict[str, str]:
        values = (self.team_name, self.authors, self.email, self.institution, self.country)
        return dict(zip(METADATA_KEYS, values, strict=True))


@dataclass
class Submission:
    """A read submission: metadata, and per stage a list (one per seed) of token -> poses [8, 3]."""

    team: TeamInfo
    first_stage: list[dict[str, np.ndarray]]
    second_stage: list[dict[str, np.ndarray]] | None = None

    @property
    def version(self) -> str:
        return "v1" if self.second_stage is None else "v2"


def write_submission(
    path: str | os.PathLike[str],
    team: TeamInfo,
    first_stage: Sequence[Mapping[str, np.ndarray]],
    second_stage: Sequence[Mapping[str, np.ndarray]] | None = None,
    *,
    required_tokens: Sequence[str] | None = None,
    required_second_stage_tokens: Sequence[str] | None = None,
) -> Path:
    """Write ``submission.pkl`` (v1 layout, or the v2 two-stage layout when ``second_stage`` is given).

    Every seed's predictions must hold every required token (the leaderboard scores a missing token as a
    failure); every trajectory must be finite [8, 3]. The file is written atomically.
    """
    path = Path(path)
    if path.name != "submission.pkl":
        raise SubmissionError(f"{path}: the leaderboard expects the file to be named submission.pkl")
    if not team.team_name.strip() or not team.email.strip():
        raise SubmissionError("submission: team_name and email must not be empty")
    stages = {"predictions" if second_stage is None else "first_stage_predictions": (first_stage, required_tokens)}
    if second_stage is not None:
        stages["second_stage_predictions"] = (second_stage, required_second_stage_tokens)
    with official_classes() as (trajectory_cls, sampling_cls):
        content: dict[str, object] = dict(team.as_dict())
        for key, (seeds, required) in stages.items():
            if not seeds:
                raise SubmissionError(f"submission: {key} has no predictions")
            content[key] = [_trajectories(key, seed, required, trajectory_cls, sampling_cls) for seed in seeds]
        buffer = io.BytesIO()
        _PortablePickler(buffer, protocol=4).dump(content)
        data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return path


def read_submission(path: str | os.PathLike[str]) -> Submission:
    """Load a ``submission.pkl`` (ours or the official script's) into plain arrays, without navsim installed."""
    path = Path(path)
    try:
        content = _SubmissionUnpickler(io.BytesIO(path.read_bytes())).load()
    except FileNotFoundError:
        raise SubmissionError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as error:
        raise SubmissionError(f"{path}: not a readable submission pickle ({error})") from None
    if not isinstance(content, dict):
        raise SubmissionError(f"{path}: expected a dict, found {type(content).__name__}")
    missing = [key for key in METADATA_KEYS if key not in content]
    if missing:
        raise SubmissionError(f"{path}: metadata {missing} missing")
    team = TeamInfo(*(str(content[key]) for key in METADATA_KEYS))
    if "predictions" in content:
        return Submission(team, _plain(path, "predictions", content["predictions"]))
    if "first_stage_predictions" in content and "second_stage_predictions" in content:
        return Submission(
            team,
            _plain(path, "first_stage_predictions", content["first_stage_predictions"]),
            _plain(path, "second_stage_predictions", content["second_stage_predictions"]),
        )
    raise SubmissionError(f"{path}: neither 'predictions' (v1) nor first/second_stage_predictions (v2)")


@contextlib.contextmanager
def official_classes() -> Iterator[tuple[type, type]]:
    """The official Trajectory and TrajectorySampling classes, each from its installed package when importable
    (navsim, nuplan-devkit), otherwise our stand-in registered under the official module path for the duration
    of the block (so pickle names it so). Every module and attribute the block adds is removed again, and
    attributes it replaced are put back, even when pickling fails."""
    added_modules: list[str] = []
    replaced: list[tuple[types.ModuleType, str, object]] = []
    classes = []
    try:
        for (module_path, name), stand_in in ((TRAJECTORY_PATH, Trajectory), (SAMPLING_PATH, TrajectorySampling)):
            official = _import_official(module_path, name)
            if official is not None:
                classes.append(official)
                continue
            parts = module_path.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix not in sys.modules:
                    sys.modules[prefix] = types.ModuleType(prefix)
                    added_modules.append(prefix)
            module = sys.modules[module_path]
            replaced.append((module, name, getattr(module, name, _ABSENT)))
            setattr(module, name, stand_in)
            stand_in.__module__ = module_path
            classes.append(stand_in)
        yield classes[0], classes[1]
    finally:
        Trajectory.__module__ = TrajectorySampling.__module__ = __name__
        for module, name, previous in reversed(replaced):
            if previous is _ABSENT:
                delattr(module, name)
            else:
                setattr(module, name, previous)
        for prefix in reversed(added_modules):
            sys.modules.pop(prefix, None)


_ABSENT = object()


def _import_official(module_path: str, name: str) -> type | None:
    """The installed official class, or None (not installed, or an unrelated package of the same name)."""
    if sys.modules.get(module_path) is not None and not getattr(sys.modules[module_path], "__file__", None):
        return None  # a module object without a file: a stand-in, not an installed package
    try:
        cls = getattr(importlib.import_module(module_path), name)
    except (ImportError, AttributeError):
        return None
    if cls in (Trajectory, TrajectorySampling) or not hasattr(cls, "__dataclass_fields__"):
        return None
    return cls


def _trajectories(key, predictions, required, trajectory_cls, sampling_cls) -> dict[str, object]:
    out: dict[str, object] = {}
    for token, poses in predictions.items():
        poses = np.asarray(poses, dtype=np.float32)
        if poses.shape != (NUM_POSES, 3) or not np.isfinite(poses).all():
            raise SubmissionError(
                f"submission: {key} token {token}: expected finite poses [{NUM_POSES}, 3], got shape "
                f"{list(poses.shape)}{'' if np.isfinite(poses).all() else ' with NaN / inf'}"
            )
        sampling = sampling_cls(num_poses=NUM_POSES, time_horizon=NUM_POSES * INTERVAL_S, interval_length=INTERVAL_S)
        out[str(token)] = trajectory_cls(poses, sampling)
    if required is not None:
        missing = [token for token in required if token not in out]
        if missing:
            raise SubmissionError(
                f"submission: {key} lacks {len(missing)} of the {len(required)} tokens of the split (e.g. "
                f"{missing[:5]}); the leaderboard needs every token"
            )
    return out


def _plain(path: Path, key: str, seeds) -> list[dict[str, np.ndarray]]:
    if not isinstance(seeds, list) or not seeds:
        raise SubmissionError(f"{path}: {key} must be a non-empty list of {{token: Trajectory}} dicts")
    out = []
    for seed in seeds:
        if not isinstance(seed, dict):
            raise SubmissionError(f"{path}: {key} holds a {type(seed).__name__}, expected a dict")
        bad = [token for token, trajectory in seed.items() if not isinstance(trajectory, Trajectory)]
        if bad:
            raise SubmissionError(f"{path}: {key} token {bad[0]} holds no Trajectory ({len(bad)} such tokens)")
        out.append({str(token): np.asarray(trajectory.poses) for token, trajectory in seed.items()})
    return out


_NUMPY_GLOBALS = frozenset({
    ("numpy", "array"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
})  # fmt: skip


class _PortablePickler(pickle.Pickler):
    """Pickles arrays as ``numpy.array(nested lists, dtype)``: loadable by NumPy 1.x and 2.x alike (NumPy 2 would
    otherwise name ``numpy._core``, which the NumPy 1.x of navsim's environment cannot import)."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            return np.array, (obj.tolist(), obj.dtype.str)
        return NotImplemented


class _SubmissionUnpickler(pickle.Unpickler):
    """Resolves only the two official trajectory classes (to our stand-ins) and what numpy arrays need."""

    def find_class(self, module: str, name: str):
        if (module, name) == TRAJECTORY_PATH:
            return Trajectory
        if (module, name) == SAMPLING_PATH:
            return TrajectorySampling
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a submission holds only trajectories)")
