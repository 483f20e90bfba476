"""The real stages on 2 CPU ranks over gloo (torchrun + the vla-drive CLI): imitation under ZeRO-3 with the world
generated on demand, then one DIPOLE run under ZeRO-2 with real PDM rewards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vla_drive.model.vla import DrivingVLA

pytestmark = pytest.mark.slow


def _torchrun(cwd, *args: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "vla_drive.cli", "train", "debug", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_imitation_then_dipole_on_two_ranks(tmp_path):
    _torchrun(tmp_path, "distributed.backend=deepspeed", "distributed.zero_stage=3")
    imitation = _metrics(tmp_path / "runs/debug/metrics.jsonl")
    assert [m["step"] for m in imitation if "train/loss" in m] == [1, 2, 3, 4]
    assert [m["step"] for m in imitation if "eval/score" in m] == [2, 4]  # validation gathered from both ranks
    DrivingVLA.from_pretrained(tmp_path / "runs/debug/model")  # consolidated from the ZeRO-3 shards

    _torchrun(
        tmp_path,
        "algorithm.name=dipole",
        "train.init_from=runs/debug/model",
        "train.output_dir=runs/rl",
        "algorithm.samples_per_scene=4",
        "algorithm.rollout_steps=3",
        "distributed.backend=deepspeed",
        "distributed.zero_stage=2",
    )
    rl = [m for m in _metrics(tmp_path / "runs/rl/metrics.jsonl") if "train/loss" in m]
    assert len(rl) == 4
    for record in rl:
        assert 0.0 <= record["train/rl/reward_mean"] <= 1.0  # real scorer rewards
        assert record["train/rl/failed_samples"] == 0.0
        assert record["train/rl/sample_seconds"] > 0 and record["train/rl/score_seconds"] > 0
