"""vla-drive compare: the plan, the knob mapping, budgets, the report (from crafted run folders) and, end to end on
a tiny world, resuming, shards, and one-line failures while the other runs go on."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from vla_drive.cli import main
from vla_drive.eval.compare import CompareError, load_plan
from vla_drive.eval.compare.budgets import RunBudget, budget_conflicts, budgets_csv, read_budgets
from vla_drive.eval.compare.checkpoints import SELECTED_DIR, best_step, select_checkpoint, validation_scores
from vla_drive.eval.compare.knobs import (
    PredictionSettings,
    default_knob,
    head_calls_per_plan,
    knob_beyond,
    knob_grid,
    knob_mismatch,
    prediction_settings,
    validation_settings,
)
from vla_drive.eval.compare.plan import Algorithm, Run, algorithm_of, shard_runs
from vla_drive.eval.compare.report import paired_to, read_results, report_tables, write_report
from vla_drive.eval.compare.runner import RESULT_FILE, RunFailed, World, rl_config, run_comparison, start_default

# ------------------------------------------------------------------------------------------------------ the plan


def test_a_preset_with_command_line_overrides_becomes_the_plan(tmp_path):
    plan = load_plan(
        "tiny",
        tmp_path,
        algorithms=["fpo+dipod", "dipole"],
        seeds=[3, 4],
        overrides=["budget.iterations=7", "knobs.omegas=0,2", "train.learning_rate=0.01"],
    )
    assert plan.budget.iterations == 7 and plan.knobs.omegas == (0.0, 2.0)
    assert "train.learning_rate=0.01" in plan.overrides and plan.seeds == (3, 4)
    algorithms, problems = plan.resolved()
    assert [a.label for a in algorithms] == ["imitation", "fpo+dipod", "dipole"] and not problems
    assert algorithms[1] == Algorithm("fpo+dipod", "fpo", ("algorithm.dipod_lambda=0.05",))
    assert [r.key for r in plan.runs()][:3] == ["imitation/seed3", "fpo+dipod/seed3", "dipole/seed3"]
    assert plan.world_of(4) == tmp_path / "worlds" / "seed4" and plan.world_seed(4) == 4


def test_an_unknown_algorithm_is_one_problem_line_and_the_others_still_run(tmp_path):
    plan = load_plan("tiny", tmp_path, algorithms=["dipole", "dipol", "bc"])
    algorithms, problems = plan.resolved()
    assert [a.label for a in algorithms] == ["imitation", "dipole"]
    assert len(problems) == 2 and problems[0].startswith("unknown algorithm 'dipol'; expected one of dipole")
    assert algorithm_of("genpo").head_kind == "coupled_flow" and algorithm_of("awr").head_kind == "diffusion"


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("nope", [], "unknown compare preset 'nope'; presets: full, full-cpu, quick, tiny"),
        ("tiny", ["budget.iterations=x"], "iterations: expected an integer, got 'x'"),
        ("tiny", ["knobs.omegas=0,1,2"], "equal-sized grid; omegas has 3 values, temperatures 2"),
        ("tiny", ["knobs.temperatures=-1,1"], "knobs.temperatures: expected finite numbers >= 0, got [-1.0, 1.0]"),
        ("tiny", ["budget.rollout_steps=0"], "budget.rollout_steps: expected >= 1, got 0"),
        ("tiny", ["knobs.widen=-1"], "knobs.widen: expected an integer >= 0, got -1"),
        ("tiny", ["knobs.widen=two"], "widen: expected an integer, got 'two'"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(tmp_path, preset, overrides, message):
    with pytest.raises(CompareError, match=re.escape(message)):
        load_plan(preset, tmp_path, overrides=overrides)


def test_shards_share_out_the_runs_round_robin_and_together_cover_each_once(tmp_path):
    runs = load_plan("tiny", tmp_path, seeds=[0, 1, 2]).runs()
    shards = [shard_runs(runs, (i, 4)) for i in range(4)]
    assert sorted(r.key for s in shards for r in s) == sorted(r.key for r in runs)
    assert shards[1] == runs[1::4]
    with pytest.raises(CompareError, match="0 <= i < n"):
        shard_runs(runs, (4, 4))


# ------------------------------------------------------------------------------------------------------ knobs


def test_dipole_tunes_omega_and_the_others_tune_the_temperature_on_grids_of_one_size(tmp_path):
    plan = load_plan("quick", tmp_path)
    dipole, awr = algorithm_of("dipole"), algorithm_of("awr")
    assert knob_grid(awr, plan.knobs) == (0.0, 0.5, 1.0) and len(knob_grid(dipole, plan.knobs)) == 3
    guided = prediction_settings(dipole, 3.0, plan.budget, plan.knobs)
    assert (guided.omega, guided.steps, guided.temperature) == (3.0, plan.budget.sample_steps, 0.0)  # noise-free
    cooled = prediction_settings(awr, 0.5, plan.budget, plan.knobs)
    assert (cooled.omega, cooled.steps, cooled.temperature) == (None, plan.budget.sample_steps, 0.5)
    assert (default_knob(dipole, plan.budget), default_knob(awr, plan.budget)) == (0.0, 1.0)
    assert head_calls_per_plan(dipole, guided) == 2 * plan.budget.sample_steps  # pos and neg branches
    assert head_calls_per_plan(dipole, replace(guided, omega=0.0)) == plan.budget.sample_steps
    assert head_calls_per_plan(awr, cooled) == plan.budget.sample_steps


def test_dipole_sweeps_its_omegas_at_the_plans_omega_temperature_and_the_others_ignore_it(tmp_path):
    assert load_plan("quick", tmp_path).knobs.omega_temperature == 0.0  # the default: chosen on val
    plan = load_plan("quick", tmp_path, overrides=["knobs.omega_temperature=0.5"])
    assert plan.knobs.omega_temperature == 0.5
    sampled = prediction_settings(algorithm_of("dipole"), 2.0, plan.budget, plan.knobs)
    assert (sampled.omega, sampled.temperature) == (2.0, 0.5)
    assert prediction_settings(algorithm_of("awr"), 0.25, plan.budget, plan.knobs).temperature == 0.25
    with pytest.raises(CompareError, match="omega_temperature: expected a finite number >= 0"):
        load_plan("quick", tmp_path, overrides=["knobs.omega_temperature=-1"])
    with pytest.raises(CompareError, match="omega_temperature: expected a number, got 'warm'"):
        load_plan("quick", tmp_path, overrides=["knobs.omega_temperature=warm"])


def test_a_grid_whose_best_is_its_largest_value_grows_past_it_by_one_rule_for_every_policy(monkeypatch):
    from types import SimpleNamespace

    from vla_drive.eval.compare import evaluation

    dipole, awr = algorithm_of("dipole"), algorithm_of("awr")
    assert (knob_beyond(dipole, [0.0, 1.0, 2.0, 3.0, 5.0]), knob_beyond(dipole, [0.0])) == (8.0, 1.0)  # as the sweep
    assert knob_beyond(awr, [0.0, 0.25, 0.5, 0.75, 1.0]) == 1.25 and knob_beyond(awr, [0.5]) == 0.75
    scores = {0.0: 0.5, 1.0: 0.6, 3.0: 0.7, 4.8: 0.75, 7.68: 0.72, 12.288: 0.9}
    monkeypatch.setattr(evaluation, "predict_plans", lambda model, data, settings, seed, batch: ({"t": settings}, 0.0))
    monkeypatch.setattr(evaluation, "summarize", lambda plans: {"score": scores[plans["t"].omega]})
    scorer = SimpleNamespace(score_plans=lambda plans: plans)

    def swept(widen: int):
        return evaluation.sweep_knob(
            None,
            None,
            scorer,
            (0.0, 1.0, 3.0),
            lambda knob: PredictionSettings(omega=knob, steps=1),
            0,
            1,
            widen=widen,
            beyond=lambda tried: knob_beyond(dipole, tried),
        )

    grown = swept(widen=3)
    assert [row["knob"] for row in grown.rows] == [0.0, 1.0, 3.0, 4.8, 7.68] and grown.chosen == 4.8, (
        "it grows while the best is the largest tried and stops once a larger value scores lower"
    )
    assert grown.plans["t"].omega == 4.8, "the chosen value's plans"
    edge = swept(widen=0)
    assert [row["knob"] for row in edge.rows] == [0.0, 1.0, 3.0] and edge.chosen == 3.0
    plan = load_plan("tiny", Path("unused"), overrides=["knobs.omegas=0,1,3", "knobs.temperatures=0,0.5,1"])
    result = {
        "chosen_knob": 3.0,
        "grid": edge.rows,
        "chosen_settings": asdict(prediction_settings(dipole, 3.0, plan.budget, plan.knobs)),
        "val_temperature": 0.0,
    }
    assert "its best knob 3 the largest of the 3 tried (the plan widens past it)" in knob_mismatch(
        dipole, result, plan.budget, plan.knobs
    ), "a result made before its grid could grow is not the plan's"
    result.update(
        chosen_knob=4.8,
        grid=grown.rows,
        chosen_settings=asdict(prediction_settings(dipole, 4.8, plan.budget, plan.knobs)),
    )
    assert knob_mismatch(dipole, result, plan.budget, plan.knobs) == ""


# ------------------------------------------------------------------------------------------------------ budgets


def _budget(algorithm: str, seed: int = 0, **changes) -> RunBudget:
    base = RunBudget(algorithm, seed, 4, 2, 2, 2, 8, 2, 2, 4, 6, 1, 0.25, 100)
    if algorithm == "imitation":
        base = replace(base, iterations=0, scenes_per_iteration=0, samples_per_scene=0, rollouts=0, rollout_steps=0)
    return replace(base, **changes)


def test_equal_budgets_have_no_conflict_and_updates_or_adapters_may_differ():
    budgets = [
        _budget("imitation"),
        _budget("dipole", adapter_parameters=200),
        _budget("fpo", updates_per_iteration=16),
    ]
    assert budget_conflicts(budgets) == []


def test_a_differing_budget_is_named_with_its_runs():
    budgets = [
        _budget("dipole"),
        _budget("awr", rollouts=4, iterations=1),
        _budget("awr", seed=1, test_scenes=9, val_scenes=7),
    ]
    conflicts = budget_conflicts(budgets)
    assert "budgets differ in rollouts (8: dipole/seed0, awr/seed1; 4: awr/seed0)" in conflicts
    assert any(c.startswith("budgets differ in iterations") for c in conflicts)
    assert not any("_scenes" in c for c in conflicts)  # another seed's world may have other val / test scenes
    assert budget_conflicts([_budget("dipole"), _budget("awr", val_scenes=3)]) == [
        "budgets differ in val_scenes (4: dipole/seed0; 3: awr/seed0)"
    ]


def test_budgets_csv_round_trips(tmp_path):
    budgets = [_budget("imitation"), _budget("dipole", seed=1)]
    path = tmp_path / "budgets.csv"
    path.write_text(budgets_csv(budgets))
    assert read_budgets(path) == sorted(budgets, key=lambda b: (b.algorithm, b.seed))


def test_an_algorithm_that_cannot_meet_the_equal_budget_fails_its_run_in_one_line(tmp_path):
    plan = load_plan("tiny", tmp_path, overrides=["budget.scenes_per_iteration=1"])  # 1 scene x K 2 = 2 rollouts
    run = Run(algorithm_of("dppo"), 0)  # DPPO splits every iteration into 4 minibatches
    world = World(tmp_path / "world", tmp_path / "caches", 0)
    with pytest.raises(
        RunFailed, match=r"^dppo/seed0: the equal budget cannot be met: .*algorithm.minibatches"
    ) as info:
        rl_config(plan, run, world, tmp_path / "start" / "model")
    assert "\n" not in str(info.value)
    config = rl_config(plan, Run(algorithm_of("dipole"), 0), world, tmp_path / "start" / "model")
    assert config.train.batch_size == 1 and config.algorithm.samples_per_scene == plan.budget.samples_per_scene
    assert config.train.max_steps == plan.budget.iterations  # DIPOLE: one update per iteration


@pytest.mark.parametrize("omega_temperature", [0.0, 0.5])
def test_an_rl_run_validates_and_so_chooses_its_checkpoint_at_the_temperature_its_knob_is_tried_at(
    tmp_path, omega_temperature
):
    plan = load_plan("tiny", tmp_path, overrides=[f"knobs.omega_temperature={omega_temperature}"])
    world, start = World(tmp_path / "world", tmp_path / "caches", 0), tmp_path / "start" / "model"
    dipole = rl_config(plan, Run(algorithm_of("dipole"), 0), world, start)
    awr = rl_config(plan, Run(algorithm_of("awr"), 0), world, start)
    assert dipole.eval.temperature == omega_temperature, "DIPOLE's checkpoint is chosen where its omegas are swept"
    assert awr.eval.temperature == 1.0, "the others validate at their default knob, temperature 1"


def test_a_curve_starts_from_the_imitation_start_at_the_temperature_the_run_validates_at():
    start = {"grid": [{"knob": 0.0, "score": 0.8}, {"knob": 0.5, "score": 0.75}], "val_default": 0.6}

    def at(temperature: float) -> float:
        return start_default(start, PredictionSettings(omega=0.0, steps=10, temperature=temperature))

    assert (at(0.0), at(0.5)) == (0.8, 0.75)
    assert at(1.0) == 0.6  # the start's own default knob
    assert math.isnan(at(0.3)), "never the score of another temperature"


# ------------------------------------------------------------------------------------------------------ report


def _write_run(plan, algorithm: str, seed: int, scores: list[float], val: float, start_val: float, **budget):
    """A finished run folder as the runner writes it for ``plan``: result.json and test_scenes.csv (two logs)."""
    folder = plan.out / "runs" / algorithm / f"seed{seed}"
    folder.mkdir(parents=True)
    knob = "omega" if algorithm == "dipole" else "temperature"
    policy = algorithm_of(algorithm) if algorithm != "imitation" else Algorithm("imitation", "bc")
    test_v1 = {"score": sum(scores) / len(scores), "ego_progress": 0.8, "num_scenes": len(scores)}
    result = {
        "algorithm": algorithm,
        "seed": seed,
        "world_seed": seed,
        "knob": knob,
        "chosen_knob": 1.0,
        "chosen_settings": asdict(prediction_settings(policy, 1.0, plan.budget, plan.knobs)),
        "val_temperature": validation_settings(policy, plan.budget, plan.knobs).temperature,
        "grid": [{"knob": 0.0, "score": val - 0.01}, {"knob": 1.0, "score": val}, {"knob": 2.0, "score": val - 0.02}],
        "val": {"score": val, "num_scenes": 4, "predict_seconds_per_scene": 0.01},
        "val_default": val,
        "start_val": start_val,
        "start_val_default": start_val,
        "head_calls_per_plan": 4,
        "training": {"wall_seconds": 10.0, "resumed": False, "steps_per_iteration": 1},
        "curve": {"val_iteration": [1.0, 2.0], "val_score": [val + 0.02, val], "reward_iteration": [], "reward": []},
        "drift_from_imitation": 0.1,
        "test_v1": test_v1,
        "test_v2": {"score": test_v1["score"] - 0.05},
        "test_scenes": len(scores),
        "distance_ratio": 1.05,
        "predict_seconds_per_scene": 0.01,
        "budget": asdict(_budget(algorithm, seed, test_scenes=len(scores), **budget)),
    }
    (folder / RESULT_FILE).write_text(json.dumps(result))
    with (folder / "test_scenes.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["token", "log", "scenario", "v1_score", "v2_score", "distance", "human_distance"])
        for index, score in enumerate(scores):
            writer.writerow(
                [f"t{index}", f"log{index % 2}", "cut_in" if index % 2 else "merge", score, score - 0.05, 10, 9]
            )


def _crafted(tmp_path, **awr_budget):
    plan = load_plan("tiny", tmp_path / "cmp", seeds=[0, 1], algorithms=["dipole", "awr"])
    for seed in (0, 1):
        _write_run(plan, "imitation", seed, [0.5, 0.6, 0.7, 0.8], 0.70, 0.70)
        _write_run(plan, "dipole", seed, [0.6, 0.7, 0.8, 0.9], 0.75, 0.70)
        _write_run(plan, "awr", seed, [0.4, 0.5, 0.6, 0.7], 0.60, 0.70, **awr_budget)  # collapsed on val
    return plan


def test_the_report_ranks_equal_budgets_with_paired_differences_collapses_and_scenarios(tmp_path):
    plan = _crafted(tmp_path)
    files = write_report(plan, plots=False)
    text = files["compare.md"].read_text()
    assert "ranked by mean test PDMS" in text
    table = text.split("## Test scores", 1)[1].split("## Sub-metrics", 1)[0]
    ranked = [
        line.split(" | ")[1]
        for line in table.splitlines()
        if line.startswith("| 1 ") or line.startswith("| 2 ") or line.startswith("| 3 ")
    ]
    assert ranked == ["dipole", "imitation", "awr"]
    dipole = next(line for line in table.splitlines() if "| dipole |" in line)
    assert "+0.1000 [+0.1000, +0.1000] *" in dipole  # +0.1 on every scene of both seeds
    awr = next(line for line in table.splitlines() if "| awr |" in line)
    assert "-0.1000" in awr and "| 2 / 2 |" in awr  # 0.60 on val vs a 0.70 start: both seeds collapsed
    assert "| cut_in | 4 |" in text and "| merge | 4 |" in text
    rows = list(csv.DictReader(files["compare.csv"].open()))
    assert len(rows) == 3 * 2 * 2 and {r["split"] for r in rows} == {"synthetic_val", "synthetic_test"}
    dipole_val = next(r for r in rows if r["algorithm"] == "dipole" and r["split"] == "synthetic_val")
    assert float(dipole_val["best_val"]) == pytest.approx(0.77) and float(dipole_val["final_val"]) == pytest.approx(
        0.75
    )
    assert float(dipole_val["wall_seconds_per_iteration"]) == pytest.approx(5.0)


def test_the_report_refuses_to_rank_runs_whose_budgets_differ(tmp_path):
    plan = _crafted(tmp_path, rollouts=4, iterations=1)
    text = write_report(plan, plots=False)["compare.md"].read_text()
    assert "**Not ranked: the runs' budgets differ**" in text and "budgets differ in rollouts" in text
    assert "ranked by mean test PDMS" not in text and "| rank |" not in text


def test_the_tables_come_from_the_csv_files_alone(tmp_path):
    plan = _crafted(tmp_path)
    files = write_report(plan, plots=True)
    rows, scenes, budgets = read_results(plan.out)
    assert report_tables(rows, scenes, budgets, ["imitation", "dipole", "awr"]) in files["compare.md"].read_text()
    assert all(
        (plan.out / "plots" / f"{name}.png").stat().st_size > 0 for name in ("curves", "knob_sweep", "test_scores")
    )


def test_a_finished_run_made_at_other_knob_settings_is_named_left_as_it_is_and_kept_out_of_the_report(tmp_path):
    plan = _crafted(tmp_path)  # DIPOLE's omegas at temperature 0, the default
    old = plan.out / "runs" / "dipole" / "seed1" / RESULT_FILE
    result = json.loads(old.read_text())
    result["chosen_settings"]["temperature"] = 1.0  # as written before the default changed: swept and
    del result["val_temperature"]  # validated at temperature 1
    old.write_text(json.dumps(result))
    before = old.read_text()
    said: list[str] = []
    failures = run_comparison(plan, say=said.append)
    assert list(failures) == ["dipole/seed1"] and old.read_text() == before
    assert "temperature 1.0 (the plan: 0.0); validation temperature 1 (the plan: 0)" in failures["dipole/seed1"]
    assert "knobs.omega_temperature" in failures["dipole/seed1"] and said == [f"compare: {failures['dipole/seed1']}"]
    text = write_report(plan, plots=False)["compare.md"].read_text()
    assert "- `dipole/seed1`: dipole/seed1: " in text and "| dipole | 1 |" in text  # one seed ranked, not two
    at_one = replace(plan, knobs=replace(plan.knobs, omega_temperature=1.0))  # read with the knobs it was made with
    assert knob_mismatch(algorithm_of("dipole"), result, at_one.budget, at_one.knobs) == ""
    assert list(run_comparison(at_one, say=said.append)) == ["dipole/seed0"]


def test_failed_and_pending_runs_are_listed_in_the_report(tmp_path):
    plan = _crafted(tmp_path)
    (plan.out / "runs" / "awr" / "seed1" / RESULT_FILE).unlink()
    (plan.out / "runs" / "awr" / "seed1" / "failed.txt").write_text("awr/seed1: training failed: boom\n")
    (plan.out / "runs" / "dipole" / "seed1" / RESULT_FILE).unlink()
    text = write_report(plan, plots=False)["compare.md"].read_text()
    assert "- `awr/seed1`: awr/seed1: training failed: boom" in text and "## Not run yet\n\n- `dipole/seed1`" in text


# ------------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_world_dir(tmp_path_factory):
    from navsim_eval.synthetic.world import WorldConfig, generate_world

    root = tmp_path_factory.mktemp("compare") / "world"
    generate_world(root, WorldConfig(num_logs=4, seed=0, workers=1))
    return root


@pytest.mark.slow
def test_compare_end_to_end_resumes_shards_and_reports_failures_in_one_line(
    tmp_path, tiny_world_dir, monkeypatch, capsys
):
    import vla_drive.train.stages as stages

    out = tmp_path / "cmp"
    real = stages.train_imitation

    def failing_for_seed_1(config):
        if config.train.seed == 1:
            raise RuntimeError("no data for this seed")
        return real(config)

    monkeypatch.setattr(stages, "train_imitation", failing_for_seed_1)
    common = ["compare", "--preset", "tiny", "--out", str(out), "--world", str(tiny_world_dir), "--seeds", "0", "1"]
    code = main([*common, "--algos", "dipole,bogus", "awr", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 1
    assert "vla-drive compare: unknown algorithm 'bogus'; expected one of" in err
    assert "vla-drive compare: imitation of seed 1 (diffusion head) failed: RuntimeError: no data for this seed" in err
    assert "Traceback" not in err
    done = {p.parent.parent.name for p in out.glob("runs/*/seed0/result.json")}
    assert done == {"imitation", "dipole", "awr"}  # seed 0 went on
    result = json.loads((out / "runs" / "dipole" / "seed0" / RESULT_FILE).read_text())
    assert result["test_evaluations"] == 1 and result["knob"] == "omega" and result["budget"]["knob_grid"] == 2
    tried = [row["knob"] for row in result["grid"]]
    assert tried[:2] == [0.0, 1.0] and len(tried) <= 2 + 2, f"the grid, widened only past a best at its top: {tried}"
    assert result["budget"]["rollouts"] == 2 * 2 * 2 and result["budget"]["iterations"] == 2
    assert len(result["curve"]["val_score"]) == 2  # validated every iteration
    for name in ("dipole", "awr"):  # the evaluated checkpoint is the best on val, the earliest on ties
        run = json.loads((out / "runs" / name / "seed0" / RESULT_FILE).read_text())
        curve = run["curve"]
        best = curve["val_iteration"][curve["val_score"].index(max(curve["val_score"]))]
        assert run["training"]["selected_iteration"] == best, f"{name}: evaluated {run['training']}, curve {curve}"
        selected = out / "runs" / name / "seed0" / "train" / SELECTED_DIR
        assert selected.is_dir() == (best < run["training"]["final_iteration"]), f"{name}: {selected}"
    _an_earlier_checkpoint_becomes_a_model_with_its_own_weights(out / "runs" / "dipole" / "seed0" / "train", tmp_path)
    stamp = (out / "runs" / "dipole" / "seed0" / RESULT_FILE).stat().st_mtime_ns

    monkeypatch.setattr(stages, "train_imitation", real)  # the data is back: the same command continues, by shards
    for shard in ("0/2", "1/2"):
        assert main([*common, "--algos", "dipole,awr", "--shard", shard]) == 0
    assert (out / "runs" / "dipole" / "seed0" / RESULT_FILE).stat().st_mtime_ns == stamp  # finished runs are kept
    assert main([*common, "--algos", "dipole,awr", "--merge"]) == 0
    text = (out / "compare.md").read_text()
    assert "ranked by mean test PDMS" in text and "Failed runs" not in text and "Not run yet" not in text
    rows, _, budgets = read_results(out)
    assert len(rows) == 3 * 2 * 2 and len(budgets) == 6 and budget_conflicts(budgets) == []
    assert (out / "plots" / "test_scores.png").is_file()
    _a_tuning_variant_reuses_the_comparison_and_never_touches_test(out, tiny_world_dir, tmp_path)


def _load_benchmark(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _a_tuning_variant_reuses_the_comparison_and_never_touches_test(out: Path, world: Path, tmp_path: Path) -> None:
    """benchmarks/tune_dipole.py: a DIPOLE variant trained from the comparison's imitation start, chosen on val."""
    from vla_drive.eval.compare.runner import run_comparison, run_folder

    tune = _load_benchmark("tune_dipole")
    defaults = load_plan("tiny", out, algorithms=["dipole"], seeds=[0], world=world)
    variant = tune.variant_plan(defaults, "centred", tmp_path / "tune")
    start = run_folder(variant, variant.runs()[0]) / RESULT_FILE
    assert start.is_file(), "the imitation start is the comparison's (linked), not trained again"
    assert run_comparison(variant, test=False) == {}
    folder = run_folder(variant, variant.runs()[1])
    result = json.loads((folder / RESULT_FILE).read_text())
    assert result["test_evaluations"] == 0 and "test_v1" not in result and not (folder / "test_scenes.csv").exists()
    assert "advantage: centred" in (folder / "train" / "config.yaml").read_text()
    mine, theirs = tune.val_rows(variant, "centred", 0), tune.val_rows(defaults, tune.DEFAULTS, 0)
    assert len(mine) == result["val"]["num_scenes"] and {r["token"] for r in mine} == {r["token"] for r in theirs}
    assert abs(sum(row["v1_score"] for row in mine) / len(mine) - result["val"]["score"]) < 1e-9
    sampled = tune.variant_plan(defaults, "omega-at-T1", tmp_path / "tune")
    assert sampled.knobs.omega_temperature == 1.0 and sampled.rl_overrides == defaults.rl_overrides, (
        "a knobs.* variant changes how omega is swept and validated, not the training options"
    )
    diff = paired_to([*mine, *theirs], "centred", tune.DEFAULTS)
    default_val = json.loads((run_folder(defaults, defaults.runs()[1]) / RESULT_FILE).read_text())["val"]["score"]
    assert diff.per_seed[0] == pytest.approx(result["val"]["score"] - default_val)


def test_publishing_copies_the_csv_files_and_regenerates_the_marked_docs_sections(tmp_path):
    from vla_drive.eval.compare.docs import docs_sections, marked, publish

    plan = _crafted(tmp_path)
    write_report(plan, plots=False)
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    for path in (root / "docs" / "compare.md", root / "README.md"):
        path.write_text("before\n<!-- compare-x: begin -->\nstale\n<!-- compare-x: end -->\nafter\n")
    publish(plan.out, "x", root)
    assert (root / "docs" / "results" / "compare-x" / "scenes.csv").is_file()
    for path, body in docs_sections("x", root).items():
        text = path.read_text()
        assert marked(text, "x") == body and text.startswith("before\n") and text.endswith("after\n")
        assert "stale" not in text and "| dipole |" in body
    (root / "README.md").write_text("no markers\n")
    assert list(docs_sections("x", root)) == [root / "docs" / "compare.md"], "a README without the markers is left"
    publish(plan.out, "x", root)
    assert (root / "README.md").read_text() == "no markers\n"
    with pytest.raises(SystemExit, match="compare-y: begin"):
        publish(plan.out, "y", root)
    assert not (root / "docs" / "results" / "compare-y").exists(), "nothing is copied for a page without markers"


@pytest.mark.parametrize("name", ["quick", "full-cpu", "full-cpu-v"])
def test_the_docs_tables_are_what_the_committed_csv_files_give(name):
    from vla_drive.eval.compare.docs import ROOT, docs_sections, marked

    sections = docs_sections(name)
    if name == "full-cpu-v":
        assert ROOT / "README.md" in sections, "the README shows the newest full comparison"
    for path, body in sections.items():
        assert marked(path.read_text(), name) == body, (
            f"{path.name}: the compare-{name} tables differ from docs/results/compare-{name}/*.csv; regenerate them "
            f"with python -m vla_drive.eval.compare.docs OUT {name}"
        )


def _an_earlier_checkpoint_becomes_a_model_with_its_own_weights(run_dir: Path, tmp_path: Path) -> None:
    """A copy of a real RL run whose metrics favour iteration 1: its checkpoint is consolidated and differs from the
    final model (the weights trained after it)."""
    import shutil

    import torch

    from vla_drive.model.vla import DrivingVLA

    copy = tmp_path / "run_copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(SELECTED_DIR))
    (copy / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "eval/score": 0.9}) + "\n" + json.dumps({"step": 2, "eval/score": 0.1}) + "\n"
    )
    selection = select_checkpoint(copy, copy / "model", 2)
    assert (selection.step, selection.final_step, selection.note) == (1, 2, "")
    assert selection.model_dir == copy / SELECTED_DIR
    chosen, final = DrivingVLA.from_pretrained(selection.model_dir), DrivingVLA.from_pretrained(copy / "model")
    assert chosen.training_record["selected_step"] == 1
    trained = [name for name, p in final.named_parameters() if "lora" in name]
    assert trained, "the DIPOLE model has no LoRA weights"
    before, after = dict(chosen.named_parameters()), dict(final.named_parameters())
    differ = [name for name in trained if not torch.equal(before[name], after[name])]
    assert differ, "the step-1 checkpoint has the final model's adapter weights"


def test_validation_scores_take_the_last_record_of_a_step_and_the_best_is_the_earliest_of_ties(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": 2, "eval/score": 0.5}, {"step": 4, "loss": 1.0}, {"step": 4, "eval/score": 0.7}]
    records += [{"step": 2, "eval/score": 0.7}, {"step": 6, "eval/score": float("nan")}]  # step 2 again: resumed
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    scores = validation_scores(metrics)
    assert scores == {2: 0.7, 4: 0.7, 6: pytest.approx(float("nan"), nan_ok=True)}
    assert best_step(scores, 6) == 2
    assert best_step({6: float("nan")}, 6) == 6 and best_step({}, 6) == 6


def test_a_checkpoint_that_cannot_be_consolidated_keeps_the_final_model_and_says_why(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "eval/score": 0.9}) + "\n")
    (tmp_path / "checkpoints" / "step_00000001").mkdir(parents=True)  # no weights in it
    selection = select_checkpoint(tmp_path, tmp_path / "model", 2)
    assert selection.model_dir == tmp_path / "model" and selection.step == 2
    assert selection.note.startswith("step 1 scored best on val but its checkpoint could not be used")
    assert select_checkpoint(tmp_path, tmp_path / "model", 1).model_dir == tmp_path / "model"  # final is best


def test_a_run_another_process_is_working_on_is_left_to_it(tmp_path):
    from contextlib import ExitStack

    from vla_drive.eval.compare.runner import claimed, run_comparison, run_folder

    plan = load_plan("tiny", tmp_path / "cmp", seeds=[0], algorithms=["dipole"])
    said = []
    with ExitStack() as others:  # another process holds every run of the plan
        held = [others.enter_context(claimed(run_folder(plan, run))) for run in plan.runs()]
        assert all(held)
        with claimed(run_folder(plan, plan.runs()[0])) as mine:
            assert not mine
        assert run_comparison(plan, say=said.append) == {}
    assert said == [f"compare: {run.key} is running in another process; left to it" for run in plan.runs()]
    assert not (plan.out / "worlds").exists()  # nothing was done twice
    with claimed(run_folder(plan, plan.runs()[0])) as mine:
        assert mine  # released with its holder


def test_a_report_of_a_subset_goes_into_its_own_folder_and_leaves_the_whole_one(tmp_path):
    plan = _crafted(tmp_path)
    whole = write_report(plan, plots=False)["compare.md"].read_text()
    subset = replace(plan, algorithms=("dipole",))
    files = write_report(subset, plots=False, into=plan.out / "proof")
    assert files["compare.md"] == plan.out / "proof" / "compare.md"
    assert "| awr |" not in files["compare.md"].read_text() and "| dipole |" in files["compare.md"].read_text()
    assert (plan.out / "compare.md").read_text() == whole
