"""``--temperature`` of ``vla-drive eval`` and ``vla-drive sweep``: parsed, refused when negative, and what it
does to the predictions (temperature 0: one plan whatever the seed)."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.cli import build_parser, main
from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.predictions import predict_scenes
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig


@pytest.mark.parametrize("command", ["eval", "sweep"])
def test_the_option_is_parsed_with_default_one(command):
    parser = build_parser()
    assert parser.parse_args([command, "--model", "m", "--split", "s"]).temperature == 1.0
    assert parser.parse_args([command, "--model", "m", "--split", "s", "--temperature", "0.5"]).temperature == 0.5


@pytest.mark.parametrize("value", ["-1", "nan", "warm"])
def test_a_bad_temperature_exits_2_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--model", "m", "--split", "s", "--temperature", value])
    assert stop.value.code == 2
    assert "--temperature: expected a finite number >= 0" in capsys.readouterr().err


def test_temperature_zero_predicts_one_plan_whatever_the_seed(tmp_path):
    world = generate_world(tmp_path / "world", WorldConfig(num_logs=1, frames_per_log=16))
    split = load_split(world.splits_dir, "synthetic_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    model = DrivingVLA.build(VLAConfig(backbone="none", head=HeadConfig(hidden_size=32, depth=1, num_heads=2)))
    for parameter in model.head.parameters():  # spread the zero-initialised output layer: noise shows through
        parameter.data.add_(0.05 * parameter.data.new_empty(parameter.shape).normal_())
    dataset = SceneDataset.for_model(loader, model)

    def plans(seed, temperature):
        result = predict_scenes(model, dataset, seed=seed, temperature=temperature, batch_size=4)
        return np.stack([result.first()[token] for token in dataset.tokens])

    np.testing.assert_array_equal(plans(0, 0.0), plans(1, 0.0))
    assert not np.array_equal(plans(0, 1.0), plans(1, 1.0))
    np.testing.assert_array_equal(plans(0, 1.0), plans(0, 1.0))
