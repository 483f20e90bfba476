"""``vla-drive eval``: official CSV layout with the average row, summary, BEV plots, missing scenes, resume."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from navsim_eval.csv_io import AVERAGE_TOKEN, official_columns
from tests.vla_drive.tiny_world import tiny_world
from vla_drive.cli import main
from vla_drive.eval.leaderboard import EvalSettings, evaluate_split
from vla_drive.eval.submission import read_submission
from vla_drive.model.vla import DrivingVLA, store_guidance_omega

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tiny = tiny_world(root, frames_per_log=18, spread=0.2)
    world, loader, model = tiny.world, tiny.loader, tiny.model
    model_dir = model.save_pretrained(root / "model")
    # a split that also names a scene no log has: reported, not fatal
    tokens = list(loader.tokens)
    filters = world.splits_dir / "scene_filter"
    text = (filters / "synthetic_all.yaml").read_text()
    (filters / "with_missing.yaml").write_text(text.replace("tokens:\n", "tokens:\n  - 'ffffffffffffffff'\n"))
    (world.splits_dir / "with_missing.yaml").write_text(
        (world.splits_dir / "synthetic_all.yaml").read_text().replace("synthetic_all", "with_missing")
    )
    return world, model_dir, tokens


def _evaluate(setup, out, split="synthetic_all", **settings):
    world, model_dir, _ = setup
    model = DrivingVLA.from_pretrained(model_dir)
    settings = EvalSettings(**{"workers": 1, "steps": 3, "batch_size": 4, "worst": 2, **settings})
    return evaluate_split(model, world.splits_dir / f"{split}.yaml", world.data_root, world.maps_root, out, settings)


def test_csv_has_the_official_layout_and_average_row(setup, tmp_path):
    _, _, tokens = setup
    for version in ("v1", "v2"):
        result = _evaluate(setup, tmp_path / version, version=version)
        with result.csv.open() as stream:
            rows = list(csv.reader(stream))
        assert rows[0] == ["", *official_columns(version)], f"{version}: header differs from the official CSV"
        assert [r[1] for r in rows[1:-1]] == tokens and rows[-1][1] == AVERAGE_TOKEN[version]
        assert [r[0] for r in rows[1:]] == [str(i) for i in range(len(tokens) + 1)], "pandas' index column"
        scores = np.array([float(r[-1]) for r in rows[1:-1]])
        assert float(rows[-1][-1]) == pytest.approx(scores.mean(), abs=1e-12)
        assert result.metrics["score"] == pytest.approx(scores.mean(), abs=1e-12)
        assert result.scored == len(tokens) and not result.missing
        summary = result.summary.read_text()
        assert "| score |" in summary and "Lowest-scoring scenes" in summary
        assert len(result.plots) == 2 and all(p.stat().st_size > 5000 for p in result.plots)


def test_missing_scenes_are_reported_and_count_as_zero(setup, tmp_path):
    _, _, tokens = setup
    result = _evaluate(setup, tmp_path / "missing", split="with_missing")
    assert result.scored == len(tokens)
    assert "ffffffffffffffff" in result.missing and "found in no log" in result.missing["ffffffffffffffff"]
    expected = result.metrics["score"] * len(tokens) / (len(tokens) + 1)
    assert result.metrics["score_with_missing_as_zero"] == pytest.approx(expected)
    assert "ffffffffffffffff" in result.summary.read_text()


def test_an_interrupted_evaluation_resumes_to_the_same_result(setup, tmp_path):
    straight = _evaluate(setup, tmp_path / "straight")
    resumed_dir = tmp_path / "resumed"
    _evaluate(setup, resumed_dir)
    parts = sorted((resumed_dir / "predictions").glob("part-*.npz"))
    assert len(parts) >= 2
    parts[-1].unlink()  # as if the run died before the last batch
    kept = parts[0].stat().st_mtime_ns
    resumed = _evaluate(setup, resumed_dir)
    assert parts[0].stat().st_mtime_ns == kept, "finished batches are not predicted again"
    assert resumed.csv.read_text() == straight.csv.read_text()
    other = _evaluate(setup, resumed_dir, omega=2.0)  # other settings: every batch is stale and predicted again
    assert all(part.stat().st_mtime_ns != kept for part in parts[:1])
    assert json.loads((resumed_dir / "predictions" / "meta.json").read_text())["omega"] == 2.0
    assert other.csv.read_text() == _evaluate(setup, tmp_path / "fresh", omega=2.0).csv.read_text()


def test_cli_eval_and_export(setup, tmp_path, capsys):
    world, model_dir, _ = setup
    code = main(
        [
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
            "--max-scenes",
            "3",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0 and (tmp_path / "cli" / "v1_scores.csv").is_file()
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "exported")]) == 0
    original, exported = DrivingVLA.from_pretrained(model_dir), DrivingVLA.from_pretrained(tmp_path / "exported")
    for name, tensor in original.head.state_dict().items():
        assert torch.equal(tensor, exported.head.state_dict()[name])
    code = main(["eval", "--model", str(tmp_path / "nowhere"), "--split", "x.yaml"])
    assert code == 2 and "not a DrivingVLA directory" in capsys.readouterr().err
    old_format = tmp_path / "old-format"
    shutil.copytree(model_dir, old_format)
    meta = json.loads((old_format / "vla_config.json").read_text())
    (old_format / "vla_config.json").write_text(json.dumps({**meta, "format_version": 0}))
    code = main(["eval", "--model", str(old_format), "--split", str(world.splits_dir / "synthetic_all.yaml")])
    assert code == 2 and "model format version 0" in capsys.readouterr().err


def test_cli_submit_writes_every_token_and_refuses_a_split_with_missing_scenes(setup, tmp_path, capsys):
    world, model_dir, tokens = setup
    team = [
        "--team-name",
        "Tester",
        "--authors",
        "A",
        "--email",
        "a@example.org",
        "--institution",
        "X",
        "--country",
        "Y",
        "--steps",
        "3",
        "--data-root",
        str(world.data_root),
    ]
    code = main(
        [
            "submit",
            "--model",
            str(model_dir),
            "--split",
            str(world.splits_dir / "synthetic_all.yaml"),
            "--seeds",
            "0",
            "1",
            "--out",
            str(tmp_path / "ok"),
            *team,
        ]
    )
    assert code == 0
    submission = read_submission(tmp_path / "ok" / "submission.pkl")
    assert submission.version == "v1" and len(submission.first_stage) == 2
    assert all(sorted(seed) == sorted(tokens) for seed in submission.first_stage)
    first, second = submission.first_stage
    assert any(not np.array_equal(first[t], second[t]) for t in tokens), "seeds give different samples"
    code = main(
        [
            "submit",
            "--model",
            str(model_dir),
            "--split",
            str(world.splits_dir / "with_missing.yaml"),
            "--out",
            str(tmp_path / "missing"),
            *team,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "lacks 1 of the" in err and "ffffffffffffffff" in err
    assert not (tmp_path / "missing" / "submission.pkl").exists()


def test_storing_omega_keeps_what_lies_in_the_model_dir_and_a_changed_model_is_predicted_again(setup, tmp_path):
    world, model_dir, _ = setup
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    model = DrivingVLA.from_pretrained(copy)
    settings = EvalSettings(workers=1, steps=3, worst=0, max_scenes=2)
    out = copy / "eval" / "synthetic_all"
    evaluate_split(model, world.splits_dir / "synthetic_all.yaml", world.data_root, world.maps_root, out, settings)
    store_guidance_omega(copy, 2.5)
    assert (out / "v1_scores.csv").is_file(), "storing the omega must not rewrite the model directory"
    reloaded = DrivingVLA.from_pretrained(copy)
    assert reloaded.config.guidance_omega == 2.5
    assert all(torch.equal(v, reloaded.head.state_dict()[k]) for k, v in model.head.state_dict().items())
    with torch.no_grad():
        model.head.final_out.weight.add_(0.01)  # "retrained": same path, same settings, other weights
    before = json.loads((out / "predictions" / "meta.json").read_text())["model_fingerprint"]
    evaluate_split(
        model,
        world.splits_dir / "synthetic_all.yaml",
        world.data_root,
        world.maps_root,
        out,
        replace(settings, omega=0.0),
    )
    after = json.loads((out / "predictions" / "meta.json").read_text())["model_fingerprint"]
    assert before != after, "a changed model's predictions are stale: predicted again, never reused"


def test_v2_evaluation_applies_two_frame_extended_comfort_as_navsim_eval_score_does(setup, tmp_path):
    from navsim_eval.cli import main as navsim_eval_main

    _, _, tokens = setup
    result = _evaluate(setup, tmp_path / "eval", version="v2")
    with result.csv.open() as stream:
        rows = list(csv.DictReader(stream))[:-1]
    ec = [row["two_frame_extended_comfort"] for row in rows]
    assert sum(value != "" for value in ec) == len(tokens) - 1, "every scene but the first of the log has EC"
    parts = sorted((tmp_path / "eval" / "predictions").glob("part-*.npz"))
    plans = {}
    for part in parts:
        with np.load(part) as data:
            plans.update({t: p[0].tolist() for t, p in zip(data["tokens"], data["trajectories"], strict=True)})
    trajectories = tmp_path / "plans.json"
    trajectories.write_text(json.dumps(plans))
    out = tmp_path / "navsim_eval_v2.csv"
    code = navsim_eval_main(
        [
            "score",
            "--cache",
            str(tmp_path / "eval" / "metric_cache"),
            "--trajectories",
            str(trajectories),
            "--version",
            "v2",
            "--out",
            str(out),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert out.read_text() == result.csv.read_text(), "vla-drive eval and navsim-eval score disagree on v2"


def test_export_never_deletes_a_users_files(setup, tmp_path, monkeypatch, capsys):
    _, model_dir, _ = setup
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert main(["export", "--model", str(model_dir), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "holds files and is not a model directory" in err and "--overwrite" in err and "\n" == err[-1]
    assert (target / "notes.txt").read_text() == "keep me"
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(model_dir), "--out", "."]) == 2  # the working folder: never replaced
    assert "--out .: would replace" in capsys.readouterr().err
    assert main(["export", "--model", str(model_dir), "--out", str(model_dir)]) == 2
    assert "would replace the model itself" in capsys.readouterr().err
    exported = tmp_path / "exported"
    assert main(["export", "--model", str(model_dir), "--out", str(exported)]) == 0
    assert main(["export", "--model", str(model_dir), "--out", str(exported)]) == 0, "a previous export is replaced"
    assert f"wrote {exported}" in capsys.readouterr().out
    assert main(["export", "--model", str(model_dir), "--out", str(target), "--overwrite"]) == 0
    assert not (target / "notes.txt").exists() and (target / "vla_config.json").is_file()
