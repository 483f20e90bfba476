"""Every RL algorithm from the command line: ``vla-drive train debug-rl algorithm.name=<each>`` builds the debug
imitation model it starts from when missing (GenPO: a coupled-flow one), writes runs/debug-rl-<name> (or where
``train.output_dir`` says), trains only its branches over the frozen imitation head, and the model it saves loads
in ``vla-drive eval``. Each ``demo-<name>`` preset runs one iteration of its algorithm the same way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.vla_drive.algorithms.helpers import RL_ALGORITHMS
from vla_drive.cli import main
from vla_drive.config import load_config
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rl import steps_per_iteration

pytestmark = pytest.mark.slow
SHARED_CACHE = "data.metric_cache=runs/debug/metric_cache_train"  # every run scores the same 16 scenes


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for every run of the module (the world and the imitation models are built once, by the first
    run that needs them)."""
    folder = tmp_path_factory.mktemp("cli-rl")
    previous = Path.cwd()
    os.chdir(folder)
    yield folder
    os.chdir(previous)


def _trained(workdir: Path, name: str) -> Path:
    output = workdir / f"runs/debug-rl-{name}"
    if not (output / "model").exists():
        assert main(["train", "debug-rl", f"algorithm.name={name}", SHARED_CACHE]) == 0
    return output


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_debug_rl_trains_every_algorithm_from_the_cli(workdir, name):
    output = _trained(workdir, name)
    kind = "coupled_flow" if name == "genpo" else "diffusion"
    imitation = DrivingVLA.from_pretrained(workdir / f"runs/debug-{kind}/model")  # built first when missing
    tuned = DrivingVLA.from_pretrained(output / "model")
    assert tuned.head.config.kind == kind == imitation.head.config.kind
    branches = ("pos", "neg") if name == "dipole" else ("policy",)
    assert tuned.config.policy_branch == ("" if name == "dipole" else "policy")
    before, after = imitation.head.state_dict(), tuned.head.state_dict()
    moved = [key for key in after if key not in before or not before[key].equal(after[key])]
    assert moved and all(key.rsplit(".", 1)[-1] in branches for key in moved), "only the algorithm's branches move"
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss" in r or "train/skipped_step" in r]
    config = load_config("debug-rl", [f"algorithm.name={name}"])
    per_iteration = steps_per_iteration(config)
    assert len(steps) == per_iteration * -(-config.train.max_steps // per_iteration)  # whole iterations
    assert all(0.0 <= r["train/rl/reward_mean"] <= 1.0 for r in steps if "train/loss" in r)  # real PDM scores
    assert any("eval/score" in r for r in records)


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_each_trained_model_loads_in_vla_drive_eval(workdir, name, capsys):
    output = _trained(workdir, name)
    world = "runs/debug/world"
    command = ["eval", "--model", str(output / "model"), "--split", f"{world}/splits/synthetic_test.yaml"]
    command += ["--data-root", world, "--maps-root", f"{world}/maps", "--max-scenes", "1", "--workers", "1"]
    command += ["--metric-cache", "runs/debug/metric_cache_test", "--worst", "0"]
    assert main(command) == 0
    assert (output / "model/eval/synthetic_test/v1_scores.csv").is_file()


def test_train_output_dir_overrides_the_algorithm_folder(workdir):
    _trained(workdir, "awr")  # the imitation model exists by now
    assert main(["train", "debug-rl", "algorithm.name=rwr", "train.output_dir=runs/elsewhere", SHARED_CACHE]) == 0
    assert (workdir / "runs/elsewhere/model").is_dir()


@pytest.mark.parametrize("name", [name for name in RL_ALGORITHMS if name != "dipole"])
def test_each_demo_preset_runs_one_iteration_of_its_algorithm(workdir, name):
    """``demo-<name>`` with its own algorithm settings, on the debug world and the debug imitation model."""
    _trained(workdir, "awr" if name != "genpo" else "genpo")  # the world and both imitation models
    preset = load_config(f"demo-{name}")
    assert preset.algorithm.name == name and preset.train.init_preset == "demo-imitation"
    assert preset.train.max_steps % steps_per_iteration(preset) == 0
    assert preset.train.eval_every % steps_per_iteration(preset) == 0
    kind = "coupled_flow" if name == "genpo" else "diffusion"
    world = "runs/debug/world"
    overrides = [
        f"data.synthetic_world={world}",
        f"data.data_root={world}",
        f"data.maps_root={world}/maps",
        f"data.train_split={world}/splits/synthetic_train.yaml",
        "data.val_split=",  # no validation: one iteration, nothing to compare
        "data.max_train_scenes=16",
        SHARED_CACHE,
        f"train.init_from=runs/debug-{kind}/model",
        f"train.output_dir=runs/demo-{name}",
        "train.feature_cache=",
        "train.batch_size=2",
        "train.max_steps=1",  # rounded up to one whole iteration
        "algorithm.update_epochs=1",  # one pass of the preset's minibatches: one iteration in seconds
        "train.warmup_steps=0",
        "train.eval_every=0",
    ]
    assert main(["train", f"demo-{name}", *overrides]) == 0
    assert DrivingVLA.from_pretrained(workdir / f"runs/demo-{name}/model").config.policy_branch == "policy"
