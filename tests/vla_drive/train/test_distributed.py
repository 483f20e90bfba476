"""DeepSpeed config resolution, the shipped DeepSpeed / accelerate configs, the launch scripts, rank helpers."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.vla_drive.train.standins import stand_in_config
from vla_drive.config import ConfigError, DistributedConfig
from vla_drive.train import barrier, is_main, rank_seed, resolve_deepspeed_config, world_size
from vla_drive.train.deepspeed_config import fill_model_dependent

ROOT = Path(__file__).resolve().parents[3]


def _config(tmp_path, **distributed):
    config = stand_in_config(tmp_path, batch_size=3, grad_accumulation=2, max_grad_norm=0.7, mixed_precision="bf16")
    return replace(config, distributed=DistributedConfig(backend="deepspeed", **distributed))


def test_generated_config_takes_every_value_from_the_experiment(tmp_path):
    ds = resolve_deepspeed_config(_config(tmp_path, zero_stage=3, offload_optimizer=True), num_processes=4)
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 3 * 2 * 4 and ds["gradient_clipping"] == 0.7 and ds["bf16"]["enabled"]
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in ds["zero_optimization"] and "optimizer" not in ds


@pytest.mark.parametrize(
    ("name", "distributed"),
    [
        ("zero2.json", dict(zero_stage=2)),
        ("zero3.json", dict(zero_stage=3)),
        ("zero3_offload.json", dict(zero_stage=3, offload_optimizer=True, offload_params=True)),
    ],
)
def test_shipped_deepspeed_configs_resolve(tmp_path, name, distributed):
    config = _config(tmp_path, deepspeed_config=str(ROOT / "configs/deepspeed" / name), **distributed)
    ds = resolve_deepspeed_config(config, num_processes=2)
    assert ds["train_batch_size"] == 12 and ds["zero_optimization"]["stage"] == distributed["zero_stage"]
    assert ds["gradient_clipping"] == 0.7 and ds["bf16"]["enabled"] is True
    fill_model_dependent(ds, hidden_size=64)
    assert ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert "auto" not in json.dumps(ds)
    fill_model_dependent(dropped := resolve_deepspeed_config(config, 2), hidden_size=None)
    assert "reduce_bucket_size" not in dropped["zero_optimization"]  # DeepSpeed's default applies


def test_conflicts_and_bad_settings_are_named(tmp_path):
    zero3 = str(ROOT / "configs/deepspeed/zero3.json")
    with pytest.raises(ConfigError, match=r"'zero_optimization\.stage' is 3 but distributed\.zero_stage is 2"):
        resolve_deepspeed_config(_config(tmp_path, deepspeed_config=zero3), 2)
    offload = str(ROOT / "configs/deepspeed/zero3_offload.json")
    with pytest.raises(ConfigError, match=r"offload_optimizer\.device' is 'cpu' but distributed\.offload_optimizer"):
        resolve_deepspeed_config(_config(tmp_path, deepspeed_config=offload, zero_stage=3), 2)
    with pytest.raises(ConfigError, match="no such file"):
        resolve_deepspeed_config(_config(tmp_path, deepspeed_config=str(tmp_path / "zero9.json")), 2)
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR"}}))
    with pytest.raises(ConfigError, match="remove the 'scheduler' block"):
        resolve_deepspeed_config(_config(tmp_path, deepspeed_config=str(custom)), 2)
    custom.write_text(json.dumps({"zero_optimization": {"stage": 2, "sub_group_size": "auto"}}))
    with pytest.raises(ConfigError, match="cannot fill 'auto' for"):
        resolve_deepspeed_config(_config(tmp_path, deepspeed_config=str(custom)), 2)


def test_accelerate_configs_name_existing_deepspeed_files():
    for name, stage in (("zero2.yaml", 2), ("zero3.yaml", 3), ("single.yaml", None)):
        data = yaml.safe_load((ROOT / "configs/accelerate" / name).read_text())
        if stage is None:
            assert data["distributed_type"] == "MULTI_GPU"
            continue
        assert data["distributed_type"] == "DEEPSPEED"
        ds = json.loads((ROOT / data["deepspeed_config"]["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == stage


def _dry_run(script, *args, **env):
    result = subprocess.run(
        ["bash", str(ROOT / "launch" / script), *args],
        env={**os.environ, "LAUNCH_DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return shlex.split(result.stdout)


def test_launch_scripts_build_their_commands(tmp_path):
    single = _dry_run("single_node.sh", "configs/debug.yaml", "train.max_steps=2", NUM_GPUS="4", MASTER_PORT="29999")
    assert single[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert single[single.index("--num_processes") + 1] == "4" and "29999" in single
    assert single[-4:] == ["vla_drive.cli", "train", "configs/debug.yaml", "train.max_steps=2"]

    node = _dry_run("deepspeed_node.sh", "configs/debug.yaml", NUM_GPUS="2")
    assert node[1:3] == ["-m", "deepspeed.launcher.runner"] and node[node.index("--num_gpus") + 1] == "2"
    assert "--no_local_rank" in node and node[-3:] == ["vla_drive.cli", "train", "configs/debug.yaml"]

    hostfile = tmp_path / "hosts"
    hostfile.write_text("# nodes\nnode-a slots=8\nnode-b slots=8\n")
    multi = _dry_run("multi_node.sh", "configs/debug.yaml", HOSTFILE=str(hostfile))
    assert multi[multi.index("--master_addr") + 1] == "node-a" and multi[multi.index("--hostfile") + 1] == str(hostfile)

    bin_dir = tmp_path / "bin"  # a fake scontrol, as on a SLURM node
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node-7\necho node-8\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm_env = dict(SLURM_JOB_NODELIST="node-[7-8]", SLURM_JOB_ID="123", SLURM_SUBMIT_DIR=str(ROOT))
    slurm = _dry_run("slurm.sbatch", "configs/debug.yaml", PATH=f"{bin_dir}:{os.environ['PATH']}", **slurm_env)
    assert slurm[0] == "srun" and "vla_drive.cli" in slurm[-3] and slurm[-1] == "configs/debug.yaml"

    missing = subprocess.run(["bash", str(ROOT / "launch/single_node.sh")], capture_output=True, text=True)
    assert missing.returncode == 2 and "usage:" in missing.stderr


def test_rank_helpers_in_one_process():
    assert world_size() == 1 and is_main() and rank_seed(10) == 10 and rank_seed(10, 3) == 13
    barrier()  # no process group: returns at once
