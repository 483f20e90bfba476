"""Every RL algorithm on 2 CPU ranks over gloo (torchrun), under DeepSpeed ZeRO-2 and ZeRO-3: one launch per stage
runs all of them (``rl_worker.py``) through the real RL stage with PDM rewards; each resumes exactly from its first
checkpoint, and every model pass is a typed request inside ``DrivingVLA.forward`` (under ZeRO-3 inside the engine's
forward, where the partitioned weights are gathered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.vla_drive.algorithms.helpers import RL_ALGORITHMS
from vla_drive.config import get_preset, with_synthetic_world
from vla_drive.model.vla import DrivingVLA

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("rl_worker.py")
REQUESTS = {  # what each algorithm's iteration asks of the model, besides encoding and rollouts
    "dipole": {"HeadLossRequest"},
    "awr": {"HeadLossRequest"},
    "rwr": {"HeadLossRequest"},
    "diffgrpo": {"ChainLogProbRequest"},
    "dppo": {"ChainLogProbRequest"},
    "fpo": {"HeadLossRequest"},
    "genpo": {"FlowLikelihoodRequest"},
}


@pytest.fixture(scope="module")
def imitation(tmp_path_factory):
    """The debug world, its training scenes' metric caches and a debug imitation model of each head kind."""
    from navsim_eval.data.loader import SceneLoader
    from vla_drive.config import data_paths
    from vla_drive.eval.scoring import build_metric_caches
    from vla_drive.train.stages import train_imitation

    root = tmp_path_factory.mktemp("rl-ranks")
    for kind in ("diffusion", "coupled_flow"):
        config = with_synthetic_world(get_preset("debug"), root / "world")
        config.model.head.kind = kind
        config.train.output_dir = str(root / "models" / kind)
        config.train.eval_every = 0
        train_imitation(config)
    paths = data_paths(config)
    scenes = SceneLoader.from_split_file(paths.train_split, paths.data_root, config.data.max_train_scenes)
    build_metric_caches(scenes, paths.maps_root, root / "cache")
    return root


@pytest.fixture(scope="module", params=[2, 3], ids=["zero2", "zero3"])
def launch(request, imitation) -> dict:
    stage = request.param
    out = imitation / f"launch-{stage}"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER)]
    command += ["--stage", str(stage), "--out", str(out), "--world", str(imitation / "world")]
    command += ["--models", str(imitation / "models"), "--cache", str(imitation / "cache"), "--algorithms"]
    command += RL_ALGORITHMS
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return {"stage": stage, **json.loads((out / "results.json").read_text())}


def head_difference(left: str, right: str) -> float:
    """The largest difference between two saved heads' weights (a branch one of them lacks counts from zero: the
    RL stage adds branches with zero B matrices)."""
    a, b = DrivingVLA.from_pretrained(left).head.state_dict(), DrivingVLA.from_pretrained(right).head.state_dict()
    shared = max(float((a[k].float() - b[k].float()).abs().max()) for k in a.keys() & b.keys())
    added = [float(v.abs().max()) for k, v in {**a, **b}.items() if (k in a) != (k in b) and ".lora_B." in k]
    return max([shared, *added])


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_every_algorithm_trains_and_resumes_exactly(launch, name):
    run = launch[name]
    assert run["steps"] == [1, 2] and run["resumed_steps"] == [2]
    assert all(np.isfinite(run["loss"])) and all(0.0 <= r <= 1.0 for r in run["reward"])
    assert run["resumed_loss"] == run["loss"][1:] and run["resumed_reward"] == run["reward"][1:]
    assert head_difference(run["straight_model"], run["resumed_model"]) == 0.0, "the resumed run ends alike"
    assert head_difference(run["straight_model"], run["imitation_model"]) > 0.0, "the update changed the policy"


@pytest.mark.parametrize("name", RL_ALGORITHMS)
def test_every_model_pass_is_a_request_inside_the_forward(launch, name):
    run = launch[name]
    assert run["module_calls"] > 0
    assert run["outside_model_forward"] == 0, "a pass outside DrivingVLA.forward (not a typed request)"
    if launch["stage"] == 3:
        assert run["outside_engine_forward"] == 0, "a pass outside the engine's forward under ZeRO-3"
    assert {"EncodeRequest", "SampleRequest"} | REQUESTS[name] <= set(run["requests"]), run["requests"]
