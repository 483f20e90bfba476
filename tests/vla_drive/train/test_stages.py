"""The imitation stage end to end in one process: synthetic world on demand, training, validation, resume."""

from __future__ import annotations

import json

import pytest

from vla_drive.config import get_preset, with_synthetic_world
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.stages import train_imitation

pytestmark = pytest.mark.slow


def _config(tmp_path, **train):
    config = with_synthetic_world(get_preset("debug"), tmp_path / "world")
    config.train.output_dir = str(tmp_path / "run")
    for name, value in train.items():
        setattr(config.train, name, value)
    return config


def test_imitation_stage_trains_validates_and_resumes(tmp_path, monkeypatch):
    from vla_drive.train import stages

    temperatures: list[float] = []

    def recording(*args, **kwargs):
        temperatures.append(kwargs["temperature"])
        return predict_scenes(*args, **kwargs)

    predict_scenes = stages.predict_scenes
    monkeypatch.setattr(stages, "predict_scenes", recording)
    config = _config(tmp_path)
    config.eval.temperature = 0.0
    model_dir = train_imitation(config)
    assert temperatures == [0.0, 0.0], "validation samples at eval.temperature"
    model = DrivingVLA.from_pretrained(model_dir)
    assert model.normalizer.count > 0  # fitted on the training split
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "train/loss" in line]
    assert steps == [1, 2, 3, 4]
    evals = [line for line in lines if "eval/score" in line]
    assert [line["step"] for line in evals] == [2, 4] and 0.0 <= evals[-1]["eval/score"] <= 1.0
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "versions.json").is_file()
    assert model.training_record["algorithm"] == "bc" and model.training_record["steps"] == 4
    card = (model_dir / "README.md").read_text()
    assert "| algorithm | bc, 4 steps (experiment `debug`) on `synthetic_train` |" in card

    # A longer run in the same folder resumes at step 4 instead of starting over.
    train_imitation(_config(tmp_path, max_steps=6))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "train/loss" in line] == [1, 2, 3, 4, 5, 6]
