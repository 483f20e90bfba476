"""Evaluation at scale: shards (--shard i/n, or the ranks of a launcher in 2 real processes) merged into the official
CSV byte for byte; outputs under $NAVSIM_EXP_ROOT; the model card, TensorBoard images and progress lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vla_drive.tiny_world import tiny_world
from vla_drive.cli import main
from vla_drive.eval.submission import read_submission

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    tiny = tiny_world(root, frames_per_log=18, spread=0.2)
    return tiny.world, tiny.model.save_pretrained(root / "run" / "model")


def _eval_args(setup, *extra: str) -> list[str]:
    world, model_dir = setup
    return [
        "eval",
        "--model",
        str(model_dir),
        "--split",
        str(world.splits_dir / "synthetic_all.yaml"),
        "--data-root",
        str(world.data_root),
        "--maps-root",
        str(world.maps_root),
        "--steps",
        "3",
        "--workers",
        "1",
        "--batch-size",
        "1",
        "--worst",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def unsharded(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsharded") / "eval"
    assert main(_eval_args(setup, "--out", str(out), "--loggers")) == 0
    return out


def test_shards_merge_into_the_unsharded_csv_byte_for_byte(setup, unsharded, tmp_path, capsys):
    world, model_dir = setup
    out = tmp_path / "eval"
    assert main(_eval_args(setup, "--out", str(out), "--shard", "0/2")) == 0
    assert "vla-drive eval --merge" in capsys.readouterr().out
    code = main(["eval", "--merge", str(out), "--maps-root", str(world.maps_root), "--workers", "1"])
    assert code == 2 and "shard(s) [1] of 2 are missing" in capsys.readouterr().err
    assert main(_eval_args(setup, "--out", str(out), "--shard", "1/2")) == 0
    (model_dir / "evaluations.json").unlink()  # written by the unsharded run: the merge must write it again
    code = main(["eval", "--merge", str(out), "--maps-root", str(world.maps_root), "--workers", "1", "--worst", "1"])
    assert code == 0
    assert (out / "v1_scores.csv").read_bytes() == (unsharded / "v1_scores.csv").read_bytes()
    assert (out / "metrics.json").read_text() == (unsharded / "metrics.json").read_text()
    assert len(list((out / "predictions" / "shard-1-of-2").glob("part-*.npz"))) > 0
    card = (model_dir / "README.md").read_text()
    assert "| synthetic_all | **" in card, "the merged result is recorded on the model card"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_launched_ranks_predict_their_shards_and_rank_0_scores(setup, unsharded, tmp_path):
    out = tmp_path / "eval"
    port = str(_free_port())
    processes = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, "-m", "vla_drive.cli", *_eval_args(setup, "--out", str(out), "--loggers")]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    assert (out / "v1_scores.csv").read_bytes() == (unsharded / "v1_scores.csv").read_bytes()
    assert "wrote" in results[0][0] and "wrote" not in results[1][0], "rank 0 alone merges and writes"


def test_outputs_default_under_navsim_exp_root_with_progress_and_images(setup, monkeypatch, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("NAVSIM_EXP_ROOT", str(tmp_path / "exp"))
    assert main(_eval_args(setup, "--max-scenes", "2")) == 0
    out = tmp_path / "exp" / "vla_drive" / "run" / "eval" / "synthetic_all"
    assert (out / "v1_scores.csv").is_file() and (out / "summary.md").is_file()
    cache = tmp_path / "exp" / "vla_drive" / "metric_cache" / "synthetic_all"
    assert (cache / "metadata.json").is_file() and not (out / "metric_cache").exists()
    err = capsys.readouterr().err
    assert "predict: 2/2 scenes (100%)" in err and "scenes/s" in err and "score: 2/2 scenes" in err
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert any(tag.startswith("eval/worst/") for tag in events.Tags()["images"])
    assert "eval/score" in events.Tags()["scalars"]


def test_sharded_submission_equals_the_unsharded_one(setup, tmp_path):
    world, model_dir = setup
    team = ["--team-name", "T", "--authors", "A", "--email", "a@b.c", "--institution", "I", "--country", "C"]
    common = [
        "submit",
        "--model",
        str(model_dir),
        "--split",
        str(world.splits_dir / "synthetic_all.yaml"),
        "--data-root",
        str(world.data_root),
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--seeds",
        "0",
        "1",
        *team,
    ]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    for shard in ("0/3", "1/3", "2/3"):
        assert main([*common, "--out", str(tmp_path / "sharded"), "--shard", shard]) == 0
    assert not (tmp_path / "sharded" / "submission.pkl").exists()
    assert main([*common, "--out", str(tmp_path / "sharded"), "--merge"]) == 0
    whole, sharded = (read_submission(tmp_path / d / "submission.pkl") for d in ("whole", "sharded"))
    assert len(sharded.first_stage) == 2
    for left, right in zip(whole.first_stage, sharded.first_stage, strict=True):
        assert left.keys() == right.keys() and all((left[t] == right[t]).all() for t in left)
