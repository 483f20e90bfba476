"""The ``vla-drive`` command: train, sweep, eval, submit, export and the demo."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from vla_drive.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"vla-drive train: {error}", file=sys.stderr)
        return 2
    from vla_drive.train.run import train

    model_dir = train(config)
    print(f"model written to {model_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.paths import nuplan_maps_root, openscene_data_root
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.eval.scoring import SceneScorer
    from vla_drive.eval.sweep import DEFAULT_OMEGAS, best_omega, sweep_guidance, write_sweep
    from vla_drive.model.vla import DrivingVLA, store_guidance_omega

    split_file = Path(args.split)
    loader = SceneLoader.from_split_file(split_file, openscene_data_root(args.data_root), args.max_scenes)
    model = DrivingVLA.from_pretrained(args.model)
    dataset = SceneDataset.for_model(loader, model)
    out = Path(args.out or Path(args.model) / "sweep")
    scorer = SceneScorer.from_scenes(loader, nuplan_maps_root(args.maps_root), out / "metric_cache", args.version)
    omegas = args.omegas or DEFAULT_OMEGAS
    rows = sweep_guidance(model, dataset, scorer, omegas, steps=args.steps, seed=args.seed)
    files = write_sweep(rows, out, title=f"{Path(args.model).name} on {split_file.stem} ({args.version})")
    chosen = best_omega(rows)
    print(files["markdown"].read_text())
    if not args.no_store:
        store_guidance_omega(args.model, chosen)
        print(f"stored guidance_omega={chosen:g} in {args.model}")
    print(f"wrote {files['csv']}, {files['markdown']}, {files['plot']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from navsim_eval.data.paths import nuplan_maps_root, openscene_data_root
    from vla_drive.eval.leaderboard import EvalSettings, evaluate_split
    from vla_drive.model.vla import DrivingVLA

    model = DrivingVLA.from_pretrained(args.model)
    out = args.out or str(Path(args.model) / "eval" / Path(args.split).stem)
    settings = EvalSettings(
        version=args.version,
        omega=args.omega,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        worst=args.worst,
        max_scenes=args.max_scenes,
    )
    result = evaluate_split(
        model,
        args.split,
        openscene_data_root(args.data_root),
        nuplan_maps_root(args.maps_root),
        out,
        settings,
        metric_cache=args.metric_cache,
        model_name=str(args.model),
        progress=_progress_printer(),
    )
    print(result.summary.read_text())
    print(f"wrote {result.csv}, {result.summary} and {len(result.plots)} plots in {result.out_dir / 'worst'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vla_drive.model.vla import MODEL_CONFIG_FILE, DrivingVLA

    source, out = Path(args.model).resolve(), Path(args.out).resolve()
    kept = {source: "the model itself", Path.cwd().resolve(): "the working folder"}
    kept.update({parent: "a folder holding the model" for parent in source.parents})
    if out in kept:
        raise ExportError(f"--out {args.out}: would replace {kept[out]}; name a new folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MODEL_CONFIG_FILE).is_file() and not args.overwrite:
        raise ExportError(
            f"--out {args.out}: holds files and is not a model directory; name a new or empty folder, "
            "or pass --overwrite to replace it"
        )
    model = DrivingVLA.from_pretrained(args.model)
    merged = model.backbone.trainable == "lora"
    model.merge_lora().save_pretrained(out)
    print(
        f"wrote {out} ({'backbone LoRA merged' if merged else 'no backbone LoRA to merge'}; "
        f"guidance omega {model.config.guidance_omega:g}); load it with DrivingVLA.from_pretrained"
    )
    return 0


class ExportError(ValueError):
    """An export target that would lose files."""


def cmd_submit(args: argparse.Namespace) -> int:
    from navsim_eval.data.paths import openscene_data_root
    from vla_drive.eval.leaderboard import EvalSettings, predict_split
    from vla_drive.eval.submission import TeamInfo, write_submission
    from vla_drive.model.vla import DrivingVLA

    model = DrivingVLA.from_pretrained(args.model)
    out = Path(args.out)
    data_root = openscene_data_root(args.data_root)
    stages = [("first", args.split)] + ([("second", args.second_stage_split)] if args.second_stage_split else [])
    predictions: dict[str, list] = {}
    required: dict[str, list[str]] = {}
    for stage, split in stages:
        predictions[stage] = []
        for seed in args.seeds:
            settings = EvalSettings(omega=args.omega, steps=args.steps, seed=seed, batch_size=args.batch_size)
            folder = out / "predictions" / f"{stage}_stage" / f"seed{seed}"
            result = predict_split(model, split, data_root, folder, settings, str(args.model), _progress_printer())
            predictions[stage].append(result.predictions)
            required[stage] = result.required_tokens
            if result.missing:
                shown = ", ".join(f"{t} ({why})" for t, why in list(result.missing.items())[:5])
                print(
                    f"{stage} stage, seed {seed}: {len(result.missing)} scenes could not be predicted: {shown}",
                    file=sys.stderr,
                )
    team = TeamInfo(args.team_name, args.authors, args.email, args.institution, args.country)
    path = write_submission(
        out / "submission.pkl",
        team,
        predictions["first"],
        predictions.get("second"),
        required_tokens=required["first"],
        required_second_stage_tokens=required.get("second"),
    )
    counts = " + ".join(f"{len(tokens)} {stage}-stage" for stage, tokens in required.items())
    layout = "v2 two-stage" if args.second_stage_split else "v1"
    print(f"wrote {path} ({layout}, {len(args.seeds)} seed(s), {counts} tokens)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vla_drive.demo import run_demo

    result = run_demo(args.out, args.overrides, omegas=args.omegas, eval_workers=args.workers)
    minutes = sum(result.seconds.values()) / 60
    print(
        f"\nimitation PDMS {result.imitation_score:.4f}, DIPOLE PDMS {result.dipole_score:.4f} at omega "
        f"{result.chosen_omega:g}; total {minutes:.1f} min. Report: {result.report}"
    )
    return 0


def _progress_printer():
    """A progress callback (stage, done, total) that redraws one line per stage on a terminal."""
    state = {"stage": None}

    def show(stage: str, done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        if stage != state["stage"] and state["stage"] is not None:
            print(file=sys.stderr)
        state["stage"] = stage if done < total else None
        print(f"\r{stage}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _add_model_and_split(parser: argparse.ArgumentParser, split_help: str, scoring: bool) -> None:
    """The options every command that predicts a split shares (and, with ``scoring``, those of commands that also
    score it)."""
    parser.add_argument("--model", required=True, help="a DrivingVLA directory")
    parser.add_argument("--split", required=True, help=split_help)
    parser.add_argument("--data-root", help="OpenScene data root (default $OPENSCENE_DATA_ROOT)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    if scoring:
        parser.add_argument("--maps-root", help="nuPlan maps root (default $NUPLAN_MAPS_ROOT)")
        parser.add_argument("--version", choices=("v1", "v2"), default="v1", help="PDMS (v1, default) or EPDMS (v2)")
        parser.add_argument("--seed", type=int, default=0, help="sampling seed (with each scene's token)")
        parser.add_argument("--max-scenes", type=int, help="only the first N scenes of the split")


def build_parser() -> argparse.ArgumentParser:
    """The ``vla-drive`` argument parser (every command and option; docs/cli.md lists them all)."""
    parser = argparse.ArgumentParser(
        prog="vla-drive",
        description="Fine-tune driving VLAs with a diffusion trajectory head (imitation, then DIPOLE RL).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = sub.add_parser(
        "train",
        help="train a model from an experiment config",
        description="Train from an experiment config: a YAML file (configs/*.yaml) or a preset name (debug, "
        "demo-imitation, demo-dipole, navsim-imitation, navsim-dipole), with overrides key.sub=value. Runs in one "
        "process, or under accelerate launch / deepspeed / torchrun / srun (see launch/).",
    )
    train.add_argument("config", help="a YAML file or a preset name")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.max_steps=100 model.trainable=lora"
    )
    train.set_defaults(handler=cmd_train)
    sweep = sub.add_parser(
        "sweep",
        help="evaluate a grid of guidance omegas and store the best in the model",
        description="Predict a split once per omega (same seed: a paired comparison), score it like the "
        "leaderboard, write sweep.csv / sweep.md / sweep.png, and store the omega with the highest mean score "
        "in the model directory (predict and exports then use it).",
    )
    _add_model_and_split(sweep, "a NAVSIM split file (e.g. .../synthetic_test.yaml)", scoring=True)
    sweep.add_argument("--omegas", nargs="+", type=float, help="default 0 0.5 1 1.5 2 3 5")
    sweep.add_argument("--out", help="output folder (default <model>/sweep)")
    sweep.add_argument("--no-store", action="store_true", help="do not write the chosen omega into the model")
    sweep.set_defaults(handler=cmd_sweep)
    evaluate = sub.add_parser(
        "eval",
        help="predict a split and score it like the leaderboard (official CSV, summary, BEV plots)",
        description="Predict one trajectory per scene (the model's chosen omega unless --omega), score it with "
        "navsim_eval (PDMS v1.1 or EPDMS v2) in a process pool, and write <version>_scores.csv in the official "
        "layout with the average row, summary.md and BEV plots of the worst scenes. Predictions are saved batch by "
        "batch: run the same command again to resume an interrupted evaluation.",
    )
    _add_model_and_split(evaluate, "a NAVSIM split file (e.g. navtest.yaml)", scoring=True)
    evaluate.add_argument("--metric-cache", help="metric-cache folder to read and extend (default <out>/metric_cache)")
    evaluate.add_argument("--omega", type=float, help="guidance omega (default: the model's chosen one)")
    evaluate.add_argument("--batch-size", type=int, default=16, help="scenes per forward pass")
    evaluate.add_argument("--workers", type=int, default=0, help="scoring processes (default 0 = every CPU)")
    evaluate.add_argument("--worst", type=int, default=6, help="BEV plots of this many lowest-scoring scenes")
    evaluate.add_argument("--out", help="output folder (default <model>/eval/<split>)")
    evaluate.set_defaults(handler=cmd_eval)
    export = sub.add_parser(
        "export",
        help="merge the backbone's LoRA and write one from_pretrained directory",
        description="Load a DrivingVLA directory, fold the backbone's LoRA into its weights and write a single "
        "directory that DrivingVLA.from_pretrained (and vla_drive.navsim_agent) loads without peft adapters. The "
        "head keeps its pos / neg branches (guidance combines them at every step) and the chosen omega.",
    )
    export.add_argument("--model", required=True, help="a DrivingVLA directory")
    export.add_argument("--out", required=True, help="the directory to write (a new or empty folder, or an export)")
    export.add_argument("--overwrite", action="store_true", help="replace --out even if it holds other files")
    export.set_defaults(handler=cmd_export)
    submit = sub.add_parser(
        "submit",
        help="write submission.pkl for the NAVSIM leaderboard (no navsim install needed)",
        description="Predict every scene of the test split (one trajectory per scene and seed, resumable) and "
        "write submission.pkl exactly as the leaderboard expects: team metadata and per-token "
        "navsim.common.dataclasses.Trajectory objects; with --second-stage-split the v2 two-stage layout. Every "
        "token of the split must be predicted, or nothing is written.",
    )
    _add_model_and_split(submit, "the split file (navtest.yaml; the first stage for v2)", scoring=False)
    submit.add_argument("--second-stage-split", help="v2: the split file of the second-stage scenes")
    submit.add_argument("--team-name", required=True, help="shown on the board; e.g. '<a href=REPO>Method</a>'")
    submit.add_argument("--authors", required=True, help="shown on the board")
    submit.add_argument("--email", required=True, help="contact (not shown publicly)")
    submit.add_argument("--institution", required=True, help="shown on the board")
    submit.add_argument("--country", required=True, help="written as 'country / region'")
    submit.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        help="one prediction set per seed (>= 3 encouraged: the board shows max / mean / std)",
    )
    submit.add_argument("--omega", type=float, help="guidance omega (default: the model's chosen one)")
    submit.add_argument("--batch-size", type=int, default=16, help="scenes per forward pass")
    submit.add_argument("--out", default="submission", help="output folder (default ./submission)")
    submit.set_defaults(handler=cmd_submit)
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on the embedded synthetic world (minutes on a laptop CPU)",
        description="Generate the synthetic world, train imitation, fine-tune with DIPOLE, sweep omega, evaluate "
        "both models like the leaderboard and write report.md into the output folder. A world and trained models "
        "found there are reused (those stages are skipped), so an interrupted demo continues. Overrides "
        "key.sub=value apply to both training configs (e.g. train.max_steps=50 for a quick look).",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--omegas", nargs="+", type=float, help="sweep grid (default 0 0.5 1 1.5 2 3 5)")
    demo.add_argument("--workers", type=int, default=2, help="scoring processes for the evaluation (default 2)")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.max_steps=50")
    demo.set_defaults(handler=cmd_demo)
    return parser


LAUNCHER_OPTIONS = ("--local_rank", "--local-rank")  # appended by the deepspeed launcher; ranks come from env


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (a file, a directory, a config field): reported in one line. Anything else is a
    bug and keeps its traceback."""
    from navsim_eval.errors import NavsimEvalError
    from vla_drive.config import ConfigError
    from vla_drive.data.feature_cache import FeatureCacheError
    from vla_drive.eval.predictions import PredictionError
    from vla_drive.eval.submission import SubmissionError
    from vla_drive.model.processor import ModelSourceError
    from vla_drive.model.types import DrivingSampleError
    from vla_drive.model.vla import VLAModelError
    from vla_drive.train.checkpoint import CheckpointError
    from vla_drive.train.distributed import DistributedSetupError
    from vla_drive.train.trainer import TrainerError

    return (
        NavsimEvalError,
        ConfigError,
        DrivingSampleError,
        FeatureCacheError,
        ModelSourceError,
        PredictionError,
        SubmissionError,
        VLAModelError,
        CheckpointError,
        DistributedSetupError,
        TrainerError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        ExportError,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    unknown = [arg for arg in unknown if not (args.command == "train" and arg.split("=")[0] in LAUNCHER_OPTIONS)]
    if unknown:
        parser.error(f"unrecognized arguments for {args.command}: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("accelerate", "deepspeed", "transformers", "torch.distributed"):  # per-file chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except _user_errors() as error:  # bad input: one clear line naming it; bugs keep their traceback
        print(f"vla-drive {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: where it stopped and how to continue, not a traceback
        print(f"vla-drive {args.command}: {_interrupted(interrupt)}", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {error.filename}" if error.filename else ""
        print(
            f"vla-drive {args.command}: no space left on the device{where}; free some and run the same command "
            "again (finished checkpoints and predictions are kept)",
            file=sys.stderr,
        )
        return 2


def _interrupted(interrupt: KeyboardInterrupt) -> str:
    step = getattr(interrupt, "step", None)
    if step is None:
        return "interrupted; run the same command again to continue (finished work is kept)"
    checkpoint = getattr(interrupt, "checkpoint", None)
    saved = f"the latest checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
    return f"interrupted at step {step} of {interrupt.max_steps}; {saved}; the same command resumes from it"


if __name__ == "__main__":
    raise SystemExit(main())
