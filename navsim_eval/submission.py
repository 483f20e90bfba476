"""NAVSIM leaderboard submissions: ``submission.pkl`` written and read without navsim or nuplan installed.

The leaderboard unpickles a dict of team metadata and per-token ``navsim.common.dataclasses.Trajectory`` objects
(each holding a ``nuplan.planning.simulation.trajectory.trajectory_sampling.TrajectorySampling``):

* v1 (navtest): ``{"team_name", "authors", "email", "institution", "country / region", "predictions": [{token:
  Trajectory}, ...]}``; a list of several dicts is a multi-seed submission;
* v2 (two-stage, e.g. navhard / private_test_hard): the same metadata with ``"first_stage_predictions"`` and
  ``"second_stage_predictions"``, each a list of {token: Trajectory}.

The stand-in classes below have exactly the official fields and are pickled under the official class paths
(:mod:`navsim_eval.pickle_io`), so the file unpickles into the official classes on the server, under NumPy 1.x
and 2.x alike. :func:`read_submission` loads official and our pickles with an allow-list unpickler (only these
two classes and numpy arrays).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navsim_eval.errors import NavsimEvalError
from navsim_eval.pickle_io import (
    BASE_GLOBALS,
    CORRUPT_PICKLE_ERRORS,
    ForbiddenGlobalError,
    restricted_loads,
    write_pickle,
)

TRAJECTORY_PATH = ("navsim.common.dataclasses", "Trajectory")
SAMPLING_PATH = ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling")
METADATA_KEYS = ("team_name", "authors", "email", "institution", "country / region")
V1_KEY = "predictions"
V2_KEYS = ("first_stage_predictions", "second_stage_predictions")
SUBMISSION_FILE = "submission.pkl"
NUM_POSES, INTERVAL_S = 8, 0.5


class SubmissionError(NavsimEvalError):
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


OFFICIAL_NAMES = {Trajectory: TRAJECTORY_PATH, TrajectorySampling: SAMPLING_PATH}


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

    ``first_stage`` / ``second_stage``: one {token: poses [8, 3]} per seed. Every seed's predictions must hold
    every required token (the leaderboard scores a missing token as a failure); every trajectory must be finite
    [8, 3]. The file is written atomically, and only when every check passed.
    """
    path = Path(path)
    if path.name != SUBMISSION_FILE:
        raise SubmissionError(f"{path}: the leaderboard expects the file to be named {SUBMISSION_FILE}")
    if not team.team_name.strip() or not team.email.strip():
        raise SubmissionError("submission: team_name and email must not be empty")
    stages = {V1_KEY if second_stage is None else V2_KEYS[0]: (first_stage, required_tokens)}
    if second_stage is not None:
        stages[V2_KEYS[1]] = (second_stage, required_second_stage_tokens)
    content: dict[str, object] = dict(team.as_dict())
    for key, (seeds, required) in stages.items():
        if not seeds:
            raise SubmissionError(f"submission: {key} has no predictions")
        content[key] = [_trajectories(key, seed, required) for seed in seeds]
    return write_pickle(path, content, names=OFFICIAL_NAMES)


def read_submission(path: str | os.PathLike[str]) -> Submission:
    """Load a ``submission.pkl`` (ours or the official script's) into plain arrays, without navsim installed."""
    path = Path(path)
    try:
        content = restricted_loads(path.read_bytes(), _READ_GLOBALS, "a submission holds only trajectories")
    except FileNotFoundError:
        raise SubmissionError(f"{path}: no such file") from None
    except OSError as error:
        raise SubmissionError(f"{path}: cannot read ({error.strerror or error})") from None
    except ForbiddenGlobalError as error:
        raise SubmissionError(f"{path}: not a submission: {error}") from None
    except CORRUPT_PICKLE_ERRORS as error:
        raise SubmissionError(f"{path}: not a readable submission pickle ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict):
        raise SubmissionError(f"{path}: expected a dict, found {type(content).__name__}")
    missing = [key for key in METADATA_KEYS if key not in content]
    if missing:
        raise SubmissionError(f"{path}: metadata {missing} missing")
    team = TeamInfo(*(str(content[key]) for key in METADATA_KEYS))
    if V1_KEY in content:
        return Submission(team, _plain(path, V1_KEY, content[V1_KEY]))
    if all(key in content for key in V2_KEYS):
        return Submission(team, *(_plain(path, key, content[key]) for key in V2_KEYS))
    raise SubmissionError(f"{path}: neither {V1_KEY!r} (v1) nor {' and '.join(map(repr, V2_KEYS))} (v2)")


def _trajectories(key: str, predictions: Mapping[str, np.ndarray], required: Sequence[str] | None) -> dict:
    out: dict[str, Trajectory] = {}
    for token, poses in predictions.items():
        poses = np.asarray(poses, dtype=np.float32)
        if poses.shape != (NUM_POSES, 3) or not np.isfinite(poses).all():
            raise SubmissionError(
                f"submission: {key} token {token}: expected finite poses [{NUM_POSES}, 3], got shape "
                f"{list(poses.shape)}{'' if np.isfinite(poses).all() else ' with NaN / inf'}"
            )
        out[str(token)] = Trajectory(poses, TrajectorySampling(NUM_POSES, NUM_POSES * INTERVAL_S, INTERVAL_S))
    if required is not None:
        missing = [token for token in required if token not in out]
        if missing:
            raise SubmissionError(
                f"submission: {key} lacks {len(missing)} of the {len(required)} tokens of the split (e.g. "
                f"{missing[:5]}); the leaderboard needs every token"
            )
    return out


def _plain(path: Path, key: str, seeds: object) -> list[dict[str, np.ndarray]]:
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


_READ_GLOBALS = {
    **BASE_GLOBALS,
    TRAJECTORY_PATH: Trajectory,
    SAMPLING_PATH: TrajectorySampling,
    ("numpy", "array"): np.array,  # submissions written by vla-drive before navsim_eval.pickle_io
}

__all__ = [
    "Submission",
    "SubmissionError",
    "TeamInfo",
    "Trajectory",
    "TrajectorySampling",
    "read_submission",
    "write_submission",
]
