"""``vla-drive eval`` and ``submit`` on a two-stage split end to end, offline: a world, its two-stage split, both
stages predicted with camera images and scored like ``navsim-eval score --split`` scores the same plans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from navsim_eval.cli import main as navsim_eval_main
from navsim_eval.submission import read_submission
from tests.vla_drive.tiny_world import tiny_world
from vla_drive.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_stage")
    tiny = tiny_world(root, frames_per_log=36, spread=0.2)
    world = tiny.world.root
    code = navsim_eval_main(["two-stage", "--world", str(world), "--max-entries", "2", "--pairs", "2", "--stride", "4"])
    assert code == 0
    return world, tiny.model.save_pretrained(root / "model"), world / "splits" / "synthetic_two_stage.yaml"


def _plans(folder) -> dict[str, list]:
    plans = {}
    for part in sorted(folder.rglob("part-*.npz")):
        with np.load(part) as data:
            plans.update({t: p[0].tolist() for t, p in zip(data["tokens"], data["trajectories"], strict=True)})
    return plans


def test_eval_predicts_both_stages_and_scores_them_as_navsim_eval_does(two_stage, tmp_path):
    world, model_dir, split = two_stage
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        str(model_dir),
        "--split",
        str(split),
        "--data-root",
        str(world),
        "--maps-root",
        str(world / "maps"),
        "--steps",
        "3",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert main([*args, "--version", "v1"]) == 2, "a two-stage split is refused in v1"
    assert main([*args, "--version", "v2"]) == 0
    plans = _plans(out / "predictions")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["entries_aggregated"] == metrics["entries"] == 2 and metrics["missing"] == 0
    assert len(plans) == 2 * 2 + 2 * 2 * 2, "every stage-one scene (and predecessor) and every synthetic scene"
    trajectories = tmp_path / "plans.json"
    trajectories.write_text(json.dumps(plans))
    reference = tmp_path / "navsim_eval.csv"
    argv = [
        "score",
        "--cache",
        str(out / "metric_cache"),
        "--trajectories",
        str(trajectories),
        "--version",
        "v2",
        "--split",
        str(split),
        "--out",
        str(reference),
        "--workers",
        "1",
    ]
    assert navsim_eval_main(argv) == 0
    assert (out / "v2_two_stage_scores.csv").read_text() == reference.read_text()


def test_submit_writes_both_stages_of_a_two_stage_split(two_stage, tmp_path):
    world, model_dir, split = two_stage
    team = ["--team-name", "T", "--authors", "A", "--email", "a@b.c", "--institution", "I", "--country", "C"]
    code = main(
        [
            "submit",
            "--model",
            str(model_dir),
            "--split",
            str(split),
            "--data-root",
            str(world),
            "--steps",
            "3",
            "--seeds",
            "0",
            "1",
            "--out",
            str(tmp_path),
            *team,
        ]
    )
    assert code == 0
    submission = read_submission(tmp_path / "submission.pkl")
    assert submission.version == "v2" and len(submission.first_stage) == len(submission.second_stage) == 2
    assert len(submission.first_stage[0]) == 4 and len(submission.second_stage[0]) == 8
