"""submission.pkl: unpickled with stand-ins of the official classes at the official module paths, every field
checked; loadable under NumPy 1.x; our reader; leaderboard requirements enforced at write time."""

from __future__ import annotations

import math
import pickle
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

from navsim_eval.pickle_io import pickle_globals
from navsim_eval.submission import SubmissionError, TeamInfo, read_submission, write_submission

TEAM = TeamInfo(
    '<a href="https://example.org/repo">VLA-DIPOLE</a>',
    "A. Author, B. Author",
    "a@example.org",
    "Example University",
    "Germany",
)


def _predictions(tokens, seed=0):
    rng = np.random.default_rng(seed)
    return {token: rng.normal(size=(8, 3)).astype(np.float32) for token in tokens}


def _install_official_stand_ins(monkeypatch):
    """Classes written here, independently of vla_drive, shaped like navsim's and nuplan's (with their checks)."""

    @dataclass
    class TrajectorySampling:
        num_poses: int | None = None
        time_horizon: float | None = None
        interval_length: float | None = None

        def __post_init__(self):
            if self.num_poses and self.interval_length and not self.time_horizon:
                self.time_horizon = self.num_poses * self.interval_length

    @dataclass
    class Trajectory:
        poses: np.ndarray
        trajectory_sampling: TrajectorySampling = None

        def __post_init__(self):
            assert self.poses.ndim == 2 and self.poses.shape[1] == 3

    paths = {
        "navsim.common.dataclasses": ("Trajectory", Trajectory),
        "nuplan.planning.simulation.trajectory.trajectory_sampling": ("TrajectorySampling", TrajectorySampling),
    }
    for module_path, (name, cls) in paths.items():
        parts = module_path.split(".")
        for depth in range(1, len(parts) + 1):
            monkeypatch.setitem(sys.modules, ".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        cls.__module__, cls.__qualname__ = module_path, name
        setattr(sys.modules[module_path], name, cls)
    return Trajectory, TrajectorySampling


def test_v1_file_unpickles_into_the_official_classes_with_every_field(tmp_path, monkeypatch):
    tokens = ["a1", "b2", "c3"]
    seeds = [_predictions(tokens, 0), _predictions(tokens, 1)]
    path = write_submission(tmp_path / "submission.pkl", TEAM, seeds, required_tokens=tokens)
    assert "navsim" not in sys.modules and "nuplan" not in sys.modules, "the stand-in modules are removed again"

    trajectory_cls, sampling_cls = _install_official_stand_ins(monkeypatch)
    with path.open("rb") as stream:
        content = pickle.load(stream)  # the plain unpickler, as the leaderboard does
    assert list(content) == ["team_name", "authors", "email", "institution", "country / region", "predictions"]
    assert content["team_name"] == TEAM.team_name and content["country / region"] == "Germany"
    assert isinstance(content["predictions"], list) and len(content["predictions"]) == 2
    for seed, expected in zip(content["predictions"], seeds, strict=True):
        assert list(seed) == tokens
        for token, trajectory in seed.items():
            assert type(trajectory) is trajectory_cls
            assert trajectory.poses.dtype == np.float32 and trajectory.poses.shape == (8, 3)
            np.testing.assert_array_equal(trajectory.poses, expected[token])
            sampling = trajectory.trajectory_sampling
            assert type(sampling) is sampling_cls
            assert (sampling.num_poses, sampling.time_horizon, sampling.interval_length) == (8, 4.0, 0.5)


def test_v2_two_stage_layout_and_round_trip(tmp_path, monkeypatch):
    first, second = _predictions(["o1", "o2"]), _predictions(["s1", "s2", "s3"], 5)
    path = write_submission(
        tmp_path / "submission.pkl",
        TEAM,
        [first],
        [second],
        required_tokens=["o1", "o2"],
        required_second_stage_tokens=["s1", "s2", "s3"],
    )
    submission = read_submission(path)
    assert submission.version == "v2" and submission.team == TEAM
    assert submission.first_stage[0].keys() == first.keys() and submission.second_stage[0].keys() == second.keys()
    for token, poses in second.items():
        np.testing.assert_array_equal(submission.second_stage[0][token], poses)
    trajectory_cls, _ = _install_official_stand_ins(monkeypatch)
    with path.open("rb") as stream:
        raw = pickle.load(stream)
    assert list(raw)[-2:] == ["first_stage_predictions", "second_stage_predictions"] and "predictions" not in raw
    assert all(type(t) is trajectory_cls for t in raw["second_stage_predictions"][0].values())


def test_reader_loads_v1_and_refuses_foreign_globals(tmp_path):
    tokens = ["t1"]
    path = write_submission(tmp_path / "submission.pkl", TEAM, [_predictions(tokens)], required_tokens=tokens)
    submission = read_submission(path)
    assert submission.version == "v1" and list(submission.first_stage[0]) == tokens
    evil = tmp_path / "evil" / "submission.pkl"
    evil.parent.mkdir()
    evil.write_bytes(b"cos\nsystem\n(S'echo owned'\ntR.")
    with pytest.raises(SubmissionError, match=r"refusing to load global os\.system \(a submission holds only"):
        read_submission(evil)
    with pytest.raises(SubmissionError, match="no such file"):
        read_submission(tmp_path / "missing" / "submission.pkl")


def test_leaderboard_requirements_are_enforced_at_write_time(tmp_path):
    target = tmp_path / "submission.pkl"
    with pytest.raises(SubmissionError, match=r"lacks 1 of the 3 tokens.*'c3'"):
        write_submission(target, TEAM, [_predictions(["a1", "b2"])], required_tokens=["a1", "b2", "c3"])
    bad = _predictions(["a1"])
    bad["a1"][3, 1] = math.nan
    with pytest.raises(SubmissionError, match="token a1: expected finite poses"):
        write_submission(target, TEAM, [bad])
    with pytest.raises(SubmissionError, match=r"shape \[7, 3\]"):
        write_submission(target, TEAM, [{"a1": np.zeros((7, 3))}])
    with pytest.raises(SubmissionError, match=r"named submission\.pkl"):
        write_submission(tmp_path / "preds.pkl", TEAM, [_predictions(["a1"])])
    assert not target.exists(), "nothing is written when a check fails"


def test_writing_touches_no_module_and_names_only_numpy_1_and_official_paths(tmp_path):
    modules = set(sys.modules)
    path = write_submission(tmp_path / "submission.pkl", TEAM, [_predictions(["a1"])])
    assert set(sys.modules) == modules
    names = set(pickle_globals(path.read_bytes()))
    assert ("navsim.common.dataclasses", "Trajectory") in names
    assert ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling") in names
    assert not [n for n in names if n[0].startswith("numpy._core")], names
    assert {m.split(".")[0] for m, _ in names} <= {"numpy", "navsim", "nuplan", "builtins"}


def test_reader_accepts_official_protocol_5_files(tmp_path, monkeypatch):
    """What the official script writes: its own classes pickled by the C pickler, protocol 5."""
    trajectory_cls, sampling_cls = _install_official_stand_ins(monkeypatch)
    poses = np.arange(24, dtype=np.float32).reshape(8, 3)
    content = {**TEAM.as_dict(), "predictions": [{"t1": trajectory_cls(poses, sampling_cls(8, 4.0, 0.5))}]}
    path = tmp_path / "submission.pkl"
    path.write_bytes(pickle.dumps(content, protocol=5))
    np.testing.assert_array_equal(read_submission(path).first_stage[0]["t1"], poses)
    content["predictions"] = [{"t1": "not a trajectory"}]
    path.write_bytes(pickle.dumps(content, protocol=5))
    with pytest.raises(SubmissionError, match="holds no Trajectory"):
        read_submission(path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(SubmissionError, match="not a readable submission pickle"):
        read_submission(path)


def test_submit_command_writes_both_layouts_from_trajectory_files(tmp_path, capsys):
    import json

    from navsim_eval.cli import main

    first = {"a1b2c3d4e5f60718": np.zeros((8, 3)).tolist(), "0011223344556677": np.ones((8, 3)).tolist()}
    synthetic = {"0123456789abcdef0": np.full((8, 3), 0.5).tolist()}
    seed0, seed1 = tmp_path / "seed0.json", tmp_path / "seed1.json"
    seed0.write_text(json.dumps({**first, **synthetic}))
    seed1.write_text(json.dumps({**first, **synthetic}))
    team = ["--team-name", "T", "--authors", "A", "--email", "a@b.c", "--institution", "I", "--country", "C"]
    out = tmp_path / "v2" / "submission.pkl"
    assert main(["submit", "--trajectories", str(seed0), str(seed1), "--two-stage", *team, "--out", str(out)]) == 0
    assert "v2 two-stage layout, 2 seed(s), 2 first-stage + 1 second-stage tokens" in capsys.readouterr().out
    submission = read_submission(out)
    assert submission.version == "v2" and len(submission.first_stage) == 2
    assert sorted(submission.first_stage[0]) == sorted(first) and list(submission.second_stage[1]) == list(synthetic)
    np.testing.assert_array_equal(submission.second_stage[0]["0123456789abcdef0"], np.full((8, 3), 0.5, np.float32))

    v1 = tmp_path / "v1" / "submission.pkl"
    assert main(["submit", "--trajectories", str(seed0), *team, "--out", str(v1)]) == 0
    assert read_submission(v1).version == "v1" and len(read_submission(v1).first_stage[0]) == 3

    candidates = tmp_path / "k.json"
    candidates.write_text(json.dumps({"a1b2c3d4e5f60718": np.zeros((2, 8, 3)).tolist()}))
    assert main(["submit", "--trajectories", str(candidates), *team, "--out", str(v1)]) == 2
    assert "holds 2 candidates; a submission takes one trajectory [8, 3] per token" in capsys.readouterr().err
    assert main(["submit", "--trajectories", str(seed0), *team, "--out", str(tmp_path / "preds.pkl")]) == 2
    assert "named submission.pkl" in capsys.readouterr().err
