"""``vla-drive train``: a bad config is refused in one line before any model or data is built."""

from __future__ import annotations

import pytest

from vla_drive.algorithms.registry import ALGORITHMS
from vla_drive.cli import main


def test_an_unknown_algorithm_exits_2_naming_the_field_and_the_choices_before_building_anything(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)

    def built(*args, **kwargs):
        raise AssertionError("nothing may be built for a config that is refused")

    monkeypatch.setattr("vla_drive.model.vla.DrivingVLA.build", built)
    monkeypatch.setattr("vla_drive.train.distributed.setup_accelerator", built)
    monkeypatch.setattr("navsim_eval.synthetic.world.generate_world", built)
    code = main(["train", "debug", "algorithm.name=no_such_algorithm"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0, f"one line, got:\n{err}"
    assert "algorithm.name: expected one of " + ", ".join(ALGORITHMS) + ", got 'no_such_algorithm'" in err
    assert list(tmp_path.iterdir()) == [], "no run folder, world or cache was written"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["algorithm.rollout_omega=3"],
            "algorithm.rollout_omega: not a setting of algorithm 'bc' (algorithm 'dipole' has it)",
        ),
        (["model.head.sample_steps=0"], "model.head.sample_steps: expected an integer >= 1, got 0"),
    ],
)
def test_other_config_errors_are_one_line(tmp_path, monkeypatch, capsys, overrides, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "debug", *overrides]) == 2
    assert expected in capsys.readouterr().err


def test_ctrl_c_in_training_is_one_line_with_the_step_and_how_to_resume(tmp_path, monkeypatch, capsys):
    from vla_drive.train.trainer import TrainingInterrupted

    def interrupted(config):
        raise TrainingInterrupted(37, 800, tmp_path / "checkpoints" / "step_00000020")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("vla_drive.train.run.train", interrupted)
    assert main(["train", "debug"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"vla-drive train: interrupted at step 37 of 800; the latest checkpoint is {tmp_path}/checkpoints/"
        "step_00000020; the same command resumes from it"
    )


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    import errno

    def full(config):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/debug/checkpoints/.tmp/model.safetensors")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("vla_drive.train.run.train", full)
    assert main(["train", "debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no space left on the device while writing runs/debug/checkpoints/" in err
