"""``vla-drive demo``: the whole pipeline on the embedded synthetic world, on a laptop CPU.

Stages (the world and the two training stages are skipped when their output exists, so an interrupted demo picks
up where it stopped; the sweep always runs, and the evaluation reuses its stored predictions when the model, its
omega and the split are the ones they were made with):

1. generate the synthetic world (the proving ground of ``navsim-eval synth``: scenarios where safety decides the
   score, a validation split from the training towns and a test split from a town no training log drives in);
2. imitation (config ``demo-imitation``: small random-weight VLM backbone, frozen and cached, DiT head);
3. DIPOLE RL from the imitation model (config ``demo-dipole``: PDMS rewards, pos / neg branches);
4. on the **validation** split, the guidance sweep of omega (the best is stored in the DIPOLE model), at the
   sampler temperature of ``demo-dipole``'s ``eval.temperature`` (0: the noise-free guided plan, which beat
   temperature 1 on validation, docs/training.md), and the choice of imitation's sampler temperature (0: its
   noise-free plan, 1: a sample as trained), so that both policies are reported at a knob chosen on validation;
5. leaderboard-style evaluation of both models on the **test** split, once, at the chosen omega and temperature
   (official CSV, summary, BEV plots);
6. ``report.md`` in the demo folder: what the world measures (the reference plans beside the models, per
   scenario), the tables, the plots and the time each stage took.

Overrides (``key.sub=value``) apply to both training configs, e.g. ``train.max_steps=50`` for a quick look.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from navsim_eval.atomic import atomic_write_text
from vla_drive.config import data_paths, load_config, with_synthetic_world
from vla_drive.eval.world_report import world_section

LOG = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class DemoResult:
    """Where the demo wrote its report and models, and the headline scores."""

    report: Path
    imitation_model: Path
    dipole_model: Path
    imitation_score: float
    dipole_score: float
    chosen_omega: float
    imitation_temperature: float = 1.0
    dipole_temperature: float = 0.0  # the sampler temperature DIPOLE's omega was swept and evaluated at
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: str | Path = "runs/demo",
    overrides: Sequence[str] = (),
    *,
    omegas: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    eval_workers: int = 2,
    say: Say = print,
) -> DemoResult:
    """Run every stage into ``out_dir``; returns the report's path and the headline numbers (``omegas`` and
    ``temperatures``: the grids tried on validation, default the sweep module's)."""
    import os

    from navsim_eval.synthetic.world import split_file
    from vla_drive.eval.leaderboard import EvalSettings, evaluate_split
    from vla_drive.eval.sweep import DEFAULT_OMEGAS, DEFAULT_TEMPERATURES
    from vla_drive.train.rl import train_rl
    from vla_drive.train.stages import ensure_synthetic_world, train_imitation

    os.environ.setdefault("WANDB_MODE", "offline")  # the demo never reaches W&B's servers unless the user says so
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    reused: dict[str, Path] = {}  # stage -> the model found in the output folder (not trained again)
    common = [f"train.feature_cache={out / 'features'}", "train.eval_every=1000000", *overrides]
    imitation = _stage_config("demo-imitation", common, out / "world", out / "imitation", say)
    paths = data_paths(imitation)

    with _stage("world", seconds, say, "1/6 generating the synthetic world"):
        ensure_synthetic_world(imitation)
    imitation_model = out / "imitation" / "model"
    with _stage("imitation", seconds, say, f"2/6 imitation: {imitation.train.max_steps} steps"):
        if _complete(imitation_model):
            reused["imitation"] = imitation_model
            say(f"    reusing {imitation_model} (trained by an earlier run; delete it to train again)")
        else:
            train_imitation(imitation)
    dipole = _stage_config(
        "demo-dipole", [*common, f"train.init_from={imitation_model}"], out / "world", out / "dipole", say
    )
    dipole_model = out / "dipole" / "model"
    with _stage(
        "dipole",
        seconds,
        say,
        f"3/6 DIPOLE: {dipole.train.max_steps} steps, {dipole.algorithm.samples_per_scene} rollouts per scene",
    ):
        if _complete(dipole_model):
            reused["dipole"] = dipole_model
            say(f"    reusing {dipole_model} (trained by an earlier run; delete it to train again)")
        else:
            train_rl(dipole)

    from vla_drive.model.vla import DrivingVLA

    grid = tuple(omegas) if omegas is not None else DEFAULT_OMEGAS
    heat = tuple(temperatures) if temperatures is not None else DEFAULT_TEMPERATURES
    sweep_dir = out / "sweep"
    guided = dipole.eval.temperature  # DIPOLE's sampler temperature: its omega is swept and reported at it
    with _stage(
        "sweep",
        seconds,
        say,
        f"4/6 on validation: guidance sweep over omega {', '.join(f'{o:g}' for o in grid)} at temperature "
        f"{guided:g}, imitation's temperature over {', '.join(f'{t:g}' for t in heat)}",
    ):
        chosen, heat_rows, temperature = _sweep(dipole_model, imitation_model, paths, (grid, guided), heat, sweep_dir)
    settings = EvalSettings(workers=eval_workers, worst=4)
    results = {}
    test_split = split_file(out / "world", "test")
    with _stage(
        "eval",
        seconds,
        say,
        f"5/6 evaluation of both models on the test split (imitation at temperature {temperature:g}, DIPOLE at "
        f"omega {chosen:g}, temperature {guided:g})",
    ):
        for name, directory, omega, heat_of in (
            ("imitation", imitation_model, 0.0, temperature),
            ("dipole", dipole_model, chosen, guided),
        ):
            model = DrivingVLA.from_pretrained(directory)
            settings.omega, settings.temperature = omega, heat_of
            results[name] = evaluate_split(  # its prediction store keeps what the same model and omega predicted
                model,
                test_split,
                paths.data_root,
                paths.maps_root,
                out / "eval" / name,
                settings,
                metric_cache=out / "eval" / "metric_cache",
                model_name=name,
                model_dir=directory,
            )
    with _stage("report", seconds, say, "6/6 writing the report"):
        world = world_section(
            test_split, out / "eval" / "metric_cache", {name: result.csv for name, result in results.items()}
        )
        report = _write_report(
            out,
            _trained_config(imitation),
            _trained_config(dipole),
            (chosen, guided, heat_rows, temperature),
            results,
            seconds,
            reused,
            world,
        )
    say(f"done: {report}")
    return DemoResult(
        report,
        imitation_model,
        dipole_model,
        results["imitation"].metrics["score"],
        results["dipole"].metrics["score"],
        chosen,
        temperature,
        guided,
        seconds,
    )


class _stage:
    """Times a stage and announces it."""

    def __init__(self, name: str, seconds: dict[str, float], say: Say, message: str) -> None:
        self.name, self.seconds, self.say, self.message = name, seconds, say, message

    def __enter__(self) -> None:
        self.say(self.message)
        self.start = time.perf_counter()

    def __exit__(self, kind, *_: object) -> None:
        if kind is None:
            self.seconds[self.name] = time.perf_counter() - self.start
            self.say(f"    {self.name} done in {self.seconds[self.name]:.0f} s")


def _stage_config(preset: str, overrides: Sequence[str], world: Path, output: Path, say: Say):
    """A preset with the demo's overrides, in the demo's folders. ``train.max_steps=N`` without a warm-up of its own
    scales the preset's warm-up to at most N / 10 steps (a warm-up must be shorter than the run)."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    if "train.max_steps" in keys and "train.warmup_steps" not in keys:
        steps = next(int(item.partition("=")[2]) for item in reversed(overrides) if item.startswith("train.max_steps"))
        warmup = min(load_config(preset).train.warmup_steps, steps // 10)
        overrides = [*overrides, f"train.warmup_steps={warmup}"]
        say(f"    {preset}: train.max_steps={steps}, so its warm-up is {warmup} steps")
    config = with_synthetic_world(load_config(preset, overrides), world)
    config.train.output_dir = str(output)
    return config


def _trained_config(config):
    """What a stage's model was really trained with: its run's own config.yaml (an earlier run's, when the model was
    reused), else the config of this run."""
    from vla_drive.config import RUN_CONFIG_FILE

    saved = Path(config.train.output_dir) / RUN_CONFIG_FILE
    return load_config(saved) if saved.is_file() else config


def _complete(model_dir: Path) -> bool:
    return (model_dir / "vla_config.json").is_file()


def _sweep(dipole_dir: Path, imitation_dir: Path, paths, omegas, heat, sweep_dir: Path):
    """On the validation split: sweep DIPOLE's omega (``omegas``: the grid and the sampler temperature; the chosen
    omega stored in its model, the sweep files written) and choose imitation's sampler temperature; returns the
    chosen omega, the temperature table and its choice."""
    from navsim_eval.data.loader import SceneLoader
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.eval.scoring import SceneScorer
    from vla_drive.eval.sweep import best_temperature, store_sweep, sweep_guidance, sweep_temperature, write_sweep
    from vla_drive.model.vla import DrivingVLA

    loader = SceneLoader.from_split_file(paths.val_split, paths.data_root)
    scorer = SceneScorer.from_scenes(loader, paths.maps_root, sweep_dir / "metric_cache")
    model = DrivingVLA.from_pretrained(dipole_dir)
    grid, guided = omegas
    rows = sweep_guidance(model, SceneDataset.for_model(loader, model), scorer, grid, temperature=guided)
    title = f"DIPOLE on the validation split {Path(paths.val_split).stem} (PDMS v1, temperature {guided:g})"
    write_sweep(rows, sweep_dir, title=title)
    chosen = store_sweep(dipole_dir, rows, Path(paths.val_split).stem, "v1", temperature=guided)
    model = DrivingVLA.from_pretrained(imitation_dir)
    heat_rows = sweep_temperature(model, SceneDataset.for_model(loader, model), scorer, heat)
    return chosen, heat_rows, best_temperature(heat_rows)


def _write_report(out: Path, imitation, dipole, knobs, results, seconds, reused, world) -> Path:
    chosen, guided, heat_rows, temperature = knobs  # the omega sweep's table is its sweep.md
    im, dp = results["imitation"], results["dipole"]
    names = [n for n in im.metrics if n not in ("score_with_missing_as_zero",)]
    val = Path(dipole.data.val_split).stem
    lines = [
        "# vla-drive demo report",
        "",
        f"Synthetic world: `{out / 'world'}`. Omega (DIPOLE) and the sampler temperature (imitation) were chosen "
        f"on the validation split `{val}`; the test split "
        f"({im.scored} scenes, PDMS v1.1, NAVSIM scoring) was scored once, for the tables below.",
        "",
        *world,
        "## Imitation vs DIPOLE on the test split",
        "",
        "| model | knob | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        f"| imitation | temperature {temperature:g} | " + " | ".join(f"{im.metrics[n]:.4f}" for n in names) + " |",
        f"| DIPOLE | omega {chosen:g}, temperature {guided:g} | "
        + " | ".join(f"{dp.metrics[n]:.4f}" for n in names)
        + " |",
        "",
        f"DIPOLE at omega {chosen:g} (temperature {guided:g}) vs imitation at temperature {temperature:g}: "
        f"{dp.metrics['score'] - im.metrics['score']:+.4f} PDMS "
        "(one seed; `benchmarks/bench_dipole_vs_imitation.py` measures the spread over seeds).",
        "",
        f"## Guidance sweep (DIPOLE at sampler temperature {guided:g}, on the validation split `{val}`)",
        "",
        (out / "sweep" / "sweep.md").read_text().strip(),
        "",
        "![sweep](sweep/sweep.png)",
        "",
        f"## Sampler temperature of imitation (on the validation split `{val}`)",
        "",
        "| temperature | score | " + " | ".join(n for n in names if n != "score") + " |",
        "|---|---|" + "---|" * (len(names) - 1),
        *[_temperature_row(row, temperature, names) for row in heat_rows],
        "",
        f"chosen temperature: {temperature:g} (highest mean score; 0 is the noise-free plan, 1 a sample as trained)",
        "",
    ]
    for title, result in (("DIPOLE", dp), ("imitation", im)):
        lines += ["", f"## Lowest-scoring test scenes of {title} (and those that drove the wrong way)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in result.plots] or ["(none)"]
    lines += [
        "",
        "## Training",
        "",
        f"- imitation{_reused_note('imitation', reused)}: `{imitation.name}`, {imitation.train.max_steps} steps, "
        f"backbone `{imitation.model.backbone}` ({imitation.model.trainable}), "
        f"log `{Path(imitation.train.output_dir) / 'metrics.jsonl'}`",
        f"- DIPOLE{_reused_note('dipole', reused)}: `{dipole.name}`, {dipole.train.max_steps} steps, "
        f"K = {dipole.algorithm.samples_per_scene}, beta {dipole.algorithm.beta:g}, logged trajectories in the "
        f"groups: {dipole.algorithm.include_logged}, log `{Path(dipole.train.output_dir) / 'metrics.jsonl'}`",
        *_reward_line(Path(dipole.train.output_dir) / "metrics.jsonl"),
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {'reused' if name in reused else f'{value:.0f}'} |" for name, value in seconds.items()],
        f"| total | {sum(seconds.values()):.0f} |",
        "",
        f"Official CSVs: `eval/imitation/v1_scores.csv`, `eval/dipole/v1_scores.csv`. Models: `imitation/model`, "
        f"`dipole/model` (chosen omega {chosen:g} stored).",
    ]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def _temperature_row(row: dict[str, float], chosen: float, names: Sequence[str]) -> str:
    """A row of the report's temperature table, the chosen temperature in bold."""
    mark = "**" if row["temperature"] == chosen else ""
    cells = [f"{mark}{row['temperature']:g}{mark}", f"{row['score']:.4f}"]
    cells += [f"{row[n]:.4f}" for n in names if n != "score"]
    return "| " + " | ".join(cells) + " |"


def _reused_note(stage: str, reused: dict[str, Path]) -> str:
    """How a reused stage is marked in the report: its settings are those its own run recorded."""
    return f" (reused from `{reused[stage]}`; settings from its run's config.yaml)" if stage in reused else ""


def _reward_line(metrics_file: Path) -> list[str]:
    """First and last logged training reward of the RL run."""
    if not metrics_file.is_file():
        return []
    rewards = [json.loads(line).get("train/rl/reward_mean") for line in metrics_file.read_text().splitlines()]
    rewards = [r for r in rewards if r is not None]
    if not rewards:
        return []
    return [
        f"- DIPOLE training reward (mean PDMS of the rollouts): {rewards[0]:.3f} at the start, "
        f"{rewards[-1]:.3f} at the end"
    ]
