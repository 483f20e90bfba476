"""A shortened ``vla-drive demo`` end to end: world, imitation, DIPOLE, sweep, evaluation, report; and resume."""

from __future__ import annotations

import pytest

from navsim_eval.csv_io import AVERAGE_TOKEN, official_columns
from vla_drive.cli import main
from vla_drive.demo import run_demo
from vla_drive.model.vla import DrivingVLA

pytestmark = pytest.mark.slow

QUICK = ["train.max_steps=4", "train.warmup_steps=1", "train.log_every=2", "data.synthetic_logs=8"]


def test_short_demo_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    messages: list[str] = []
    result = run_demo(out, QUICK, omegas=(0.0, 1.0), temperatures=(0.0, 1.0), eval_workers=1, say=messages.append)
    assert [m.split()[0] for m in messages if m[0].isdigit()] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    report = result.report.read_text()
    for section in ("What this world measures", "Imitation vs DIPOLE", "Guidance sweep", "Lowest-scoring", "Time"):
        assert section in report, f"report lacks {section!r}"
    assert "| constant velocity |" in report and "| logged human |" in report, "the reference plans beside the models"
    assert "chosen on the validation split `synthetic_val`" in report
    assert "Sampler temperature of imitation" in report and result.imitation_temperature in (0.0, 1.0)
    assert f"| imitation | temperature {result.imitation_temperature:g} |" in report, "imitation at its chosen knob"
    assert result.dipole_temperature == 0.0, "demo-dipole samples its noise-free guided plan (eval.temperature 0)"
    assert f"| DIPOLE | omega {result.chosen_omega:g}, temperature 0 |" in report
    from navsim_eval.csv_io import read_score_csv
    from navsim_eval.data.loader import SceneLoader
    from vla_drive.model.card import read_evaluations

    def tokens(split: str) -> set[str]:
        return set(SceneLoader.from_split_file(out / "world" / "splits" / f"{split}.yaml", out / "world").tokens)

    test_tokens, val_tokens = tokens("synthetic_test"), tokens("synthetic_val")
    scored = {row["token"] for row in read_score_csv(out / "eval" / "dipole" / "v1_scores.csv").rows}
    assert scored == test_tokens and not scored & val_tokens, "the final table is on the test split"
    sweep = read_evaluations(result.dipole_model)["sweep"]
    assert (sweep["split"], sweep["temperature"]) == ("synthetic_val", 0.0), "omega chosen on val, at temperature 0"
    assert (out / "sweep" / "sweep.png").is_file() and (out / "eval" / "dipole" / "worst").is_dir()
    for name in ("imitation", "dipole"):
        lines = (out / "eval" / name / "v1_scores.csv").read_text().splitlines()
        assert lines[0] == "," + ",".join(official_columns("v1"))
        assert lines[-1].split(",")[1] == AVERAGE_TOKEN["v1"]
    assert DrivingVLA.from_pretrained(result.dipole_model).config.guidance_omega == result.chosen_omega
    assert 0.0 <= result.imitation_score <= 1.0 and 0.0 <= result.dipole_score <= 1.0

    # an interrupted demo continues: finished models are not trained again
    stamp = (result.imitation_model / "head.safetensors").stat().st_mtime_ns
    parts = sorted((out / "eval").glob("*/predictions/part-*.npz"))
    predicted = {part: part.stat().st_mtime_ns for part in parts}
    grids = ["--omegas", "0", "1", "--temperatures", "0", "1"]
    code = main(["demo", "--out", str(out), *grids, "--workers", "1", *QUICK, "train.max_steps=9"])
    assert code == 0 and (result.imitation_model / "head.safetensors").stat().st_mtime_ns == stamp
    assert parts and {part: part.stat().st_mtime_ns for part in parts} == predicted, "the same models re-predicted"
    assert "Report:" in capsys.readouterr().out
    report = result.report.read_text()
    assert "imitation (reused from" in report and "DIPOLE (reused from" in report
    assert "`demo-imitation`, 4 steps" in report, "a reused model is reported with the steps it was trained with"
    assert "| imitation | reused |" in report


def test_the_documented_quick_demo_overrides_make_valid_configs(tmp_path):
    from vla_drive.demo import _stage_config

    said: list[str] = []
    for preset in ("demo-imitation", "demo-dipole"):
        config = _stage_config(preset, ["train.max_steps=50"], tmp_path / "world", tmp_path / preset, said.append)
        assert config.train.max_steps == 50 and config.train.warmup_steps == 5
    assert any("warm-up is 5 steps" in line for line in said)
    kept = _stage_config(
        "demo-imitation", ["train.max_steps=50", "train.warmup_steps=2"], tmp_path, tmp_path, said.append
    )
    assert kept.train.warmup_steps == 2, "a warm-up the user gives is kept"
