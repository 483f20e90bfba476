"""The ``vla-drive`` command: train, sweep, eval, compare, submit, export, push and the demo."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import sys
from pathlib import Path

from vla_drive.model.vla import ATTN_IMPLEMENTATIONS, BACKBONE_DTYPES


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
    from vla_drive.eval.outputs import default_metric_cache, default_output
    from vla_drive.eval.progress import StageProgress
    from vla_drive.eval.scoring import SceneScorer
    from vla_drive.eval.sweep import DEFAULT_OMEGAS, best_omega, store_sweep, sweep_guidance, write_sweep

    split_file = Path(args.split)
    loader = SceneLoader.from_split_file(split_file, openscene_data_root(args.data_root), args.max_scenes)
    model = _load_model(args)
    dataset = SceneDataset.for_model(loader, model)
    out = Path(args.out or default_output(args.model, "sweep"))
    progress = StageProgress()
    caches = args.metric_cache or default_metric_cache(out, split_file)
    maps_root = nuplan_maps_root(args.maps_root)
    scorer = SceneScorer.from_scenes(loader, maps_root, caches, args.version, progress=progress)
    omegas = args.omegas or DEFAULT_OMEGAS
    if "test" in split_file.stem.lower():
        print(
            f"warning: {split_file.name} looks like a test split; choose omega on a validation split and report "
            "the test split once with it (a sweep on the split it reports overstates the score)"
        )
    rows = sweep_guidance(
        model,
        dataset,
        scorer,
        omegas,
        steps=args.steps,
        seed=args.seed,
        widen=args.widen,
        temperature=args.temperature,
        progress=progress,
    )
    files = write_sweep(rows, out, title=f"{Path(args.model).name} on {split_file.stem} ({args.version})")
    print(files["markdown"].read_text())
    if not args.no_store:
        chosen = store_sweep(args.model, rows, split_file.stem, args.version, temperature=args.temperature)
        print(
            f"stored guidance_omega={chosen:g} in {args.model} (and the sweep on its model card; evaluate it at "
            f"--temperature {args.temperature:g}, the temperature it was chosen at)"
        )
    with _result_logger(args, out, "sweep") as log:
        for index, row in enumerate(rows):
            log.log(index, row, prefix="sweep/")
        log.log_images(0, {"sweep/plot": files["plot"]})
    print(f"wrote {files['csv']}, {files['markdown']}, {files['plot']} (best omega {best_omega(rows):g})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from navsim_eval.data.paths import nuplan_maps_root, openscene_data_root
    from vla_drive.eval.leaderboard import PREDICTIONS_DIR, EvalSettings, evaluate_split, merge_shards, predict_shard
    from vla_drive.eval.outputs import default_metric_cache, default_output
    from vla_drive.eval.progress import StageProgress

    settings = EvalSettings(
        version=args.version,
        omega=args.omega,
        steps=args.steps,
        seed=args.seed,
        temperature=args.temperature,
        batch_size=args.batch_size,
        workers=args.workers,
        worst=args.worst,
        max_scenes=args.max_scenes,
    )
    progress = StageProgress()
    if args.merge:
        out = Path(args.merge)
        caches = args.metric_cache or (default_metric_cache(out, args.split) if args.split else None)
        data_root = openscene_data_root(args.data_root) if args.data_root else None
        result = merge_shards(
            out,
            nuplan_maps_root(args.maps_root),
            settings,
            data_root=data_root,
            metric_cache=caches,
            progress=progress,
            model_dir=args.model,
        )
        return _report_eval(args, result)
    _require(args, "eval", ("model", "split"))
    shard, launched = _shard(args)
    model = _load_model(args, local_rank=launched[2] if launched else 0)
    out = Path(args.out or default_output(args.model, "eval", args.split))
    data_root = openscene_data_root(args.data_root)
    caches = args.metric_cache or default_metric_cache(out, args.split)
    from vla_drive.eval.two_stage import evaluate_two_stage, is_two_stage

    if is_two_stage(args.split):
        if args.version != "v2" or shard is not None:
            raise _UsageError(f"eval --split {args.split}: a two-stage split is scored in v2 (--version v2), unsharded")
        metrics = evaluate_two_stage(
            model,
            args.split,
            data_root,
            nuplan_maps_root(args.maps_root),
            out,
            omega=args.omega,
            steps=args.steps,
            seed=args.seed,
            batch_size=args.batch_size,
            workers=args.workers,
            metric_cache=caches,
            synthetic_dir=args.synthetic_scenes,
            model_name=str(args.model),
        )
        print(Path(metrics["summary"]).read_text())
        print(f"wrote {metrics['csv']} and {metrics['summary']}")
        return 0
    if shard is None:
        result = evaluate_split(
            model,
            args.split,
            data_root,
            nuplan_maps_root(args.maps_root),
            out,
            settings,
            metric_cache=caches,
            model_name=str(args.model),
            progress=progress,
            model_dir=args.model,
        )
        return _report_eval(args, result)
    folder = predict_shard(
        model, args.split, data_root, out / PREDICTIONS_DIR, settings, shard, str(args.model), progress
    )
    if launched is None:
        print(
            f"shard {shard[0]}/{shard[1]} predicted into {folder}; once every shard is done: "
            f"vla-drive eval --merge {out} --model {args.model} --split {args.split}"
        )
        return 0
    if not _wait_for_every_rank():
        return 0  # not rank 0: the merge is rank 0's
    result = merge_shards(
        out, nuplan_maps_root(args.maps_root), settings, metric_cache=caches, progress=progress, model_dir=args.model
    )
    return _report_eval(args, result)


def _report_eval(args: argparse.Namespace, result) -> int:
    print(result.summary.read_text())
    with _result_logger(args, result.out_dir, "eval") as log:
        log.log(0, {**result.metrics, "scored": result.scored}, prefix="eval/")
        log.log_images(0, {f"eval/worst/{plot.stem}": plot for plot in result.plots})
    print(f"wrote {result.csv}, {result.summary} and {len(result.plots)} plots in {result.out_dir / 'worst'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vla_drive.eval.compare import CompareError, load_plan, run_comparison
    from vla_drive.eval.compare.report import write_report

    try:
        algorithms = [name for text in args.algos or [] for name in text.split(",") if name]
        plan = load_plan(
            args.preset,
            args.out or f"runs/compare-{Path(args.preset).stem}",
            algorithms=algorithms,
            seeds=args.seeds,
            world=args.world,
            overrides=args.overrides,
        )
        shard = _shard(args)[0] if args.shard else None
        failures = {}
        if not args.merge:
            failures = run_comparison(plan, shard, say=lambda line: print(f"vla-drive {line}", file=sys.stderr))
        if shard is not None:
            print(
                f"shard {shard[0]}/{shard[1]} done under {plan.out}; once every shard is: vla-drive compare --merge "
                "with the same options"
            )
            return 1 if failures else 0
        files = write_report(plan, plots=not args.no_plots)
    except CompareError as error:
        print(f"vla-drive compare: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(path) for path in files.values())}")
    if failures:
        print(f"vla-drive compare: {len(failures)} run(s) failed (listed in compare.md)", file=sys.stderr)
    return 1 if failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    import shutil

    from vla_drive.model.card import EVALUATIONS_FILE, write_model_card
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
    out = model.merge_lora().save_pretrained(out)
    if (Path(args.model) / EVALUATIONS_FILE).is_file():  # the same model: its results travel with it
        shutil.copyfile(Path(args.model) / EVALUATIONS_FILE, out / EVALUATIONS_FILE)
        write_model_card(out)
    print(
        f"wrote {out} ({'backbone LoRA merged' if merged else 'no backbone LoRA to merge'}; "
        f"guidance omega {model.config.guidance_omega:g}; model card {out / 'README.md'}); load it with "
        "DrivingVLA.from_pretrained"
    )
    return 0


class ExportError(ValueError):
    """An export target that would lose files."""


def cmd_push(args: argparse.Namespace) -> int:
    from vla_drive.eval.publish import plan_push, push_model

    if args.dry_run:
        plan = plan_push(args.model, args.repo_id)
        print(plan.describe())
        print("\n--- README.md (model card) ---\n" + plan.card)
        print("dry run: nothing was uploaded")
        return 0
    url = push_model(args.model, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"pushed {args.model} to {args.repo_id}: {url}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from navsim_eval.data.paths import openscene_data_root
    from vla_drive.eval.leaderboard import EvalSettings, predict_shard, predict_split, read_shards
    from vla_drive.eval.outputs import default_output
    from vla_drive.eval.progress import StageProgress
    from vla_drive.eval.submission import TeamInfo, write_submission

    _require(args, "submit", ("split",) if args.merge else ("model", "split"))
    if args.merge and not (args.out or args.model):
        raise _UsageError("submit --merge: pass --out (the folder the shards were predicted into) or --model")
    shard, launched = _shard(args)
    model = None if args.merge else _load_model(args, local_rank=launched[2] if launched else 0)
    out = Path(args.out or default_output(args.model or ".", "submission"))
    data_root = openscene_data_root(args.data_root)
    stages = [("first", args.split)] + ([("second", args.second_stage_split)] if args.second_stage_split else [])
    progress = StageProgress()
    jobs = [
        (stage, split, seed, out / "predictions" / f"{stage}_stage" / f"seed{seed}")
        for stage, split in stages
        for seed in args.seeds
    ]

    def settings(seed: int) -> EvalSettings:
        return EvalSettings(omega=args.omega, steps=args.steps, seed=seed, batch_size=args.batch_size)

    from vla_drive.eval.two_stage import is_two_stage, predict_two_stage

    if is_two_stage(args.split):  # one split file with its reactive_all_mapping: both stages from it
        if args.second_stage_split or shard is not None or args.merge:
            raise _UsageError(
                f"submit --split {args.split}: a two-stage split names both stages itself; "
                "no --second-stage-split, unsharded"
            )
        first, second = [], []
        for seed in args.seeds:
            both = predict_two_stage(
                model,
                args.split,
                data_root,
                out / "predictions" / f"seed{seed}",
                omega=args.omega,
                steps=args.steps,
                seed=seed,
                batch_size=args.batch_size,
                synthetic_dir=args.synthetic_scenes,
                model_name=str(args.model),
            )
            one, two = both.stage_tokens()
            first.append({t: both.predictions[t] for t in one if t in both.predictions})
            second.append({t: both.predictions[t] for t in two if t in both.predictions})
        team = TeamInfo(args.team_name, args.authors, args.email, args.institution, args.country)
        path = write_submission(
            out / "submission.pkl", team, first, second, required_tokens=one, required_second_stage_tokens=two
        )
        print(
            f"wrote {path} (v2 two-stage, {len(args.seeds)} seed(s), {len(one)} first-stage + {len(two)} "
            "second-stage tokens)"
        )
        return 0

    if shard is not None:  # this process predicts its shard of every stage and seed
        for _, split, seed, folder in jobs:
            predict_shard(model, split, data_root, folder, settings(seed), shard, str(args.model), progress)
        if launched is None:
            print(
                f"shard {shard[0]}/{shard[1]} predicted under {out}; once every shard is done, run this command "
                "with --merge instead of --shard"
            )
            return 0
        if not _wait_for_every_rank():
            return 0  # not rank 0: rank 0 writes the submission
    predictions: dict[str, list] = {stage: [] for stage, _ in stages}
    required: dict[str, list[str]] = {}
    for stage, split, seed, folder in jobs:
        if args.merge or shard is not None:
            result, _ = read_shards(folder, data_root if args.data_root else None)
        else:
            result = predict_split(model, split, data_root, folder, settings(seed), str(args.model), progress)
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

    result = run_demo(
        args.out, args.overrides, omegas=args.omegas, temperatures=args.temperatures, eval_workers=args.workers
    )
    minutes = sum(result.seconds.values()) / 60
    print(
        f"\nimitation PDMS {result.imitation_score:.4f} at temperature {result.imitation_temperature:g}, "
        f"DIPOLE PDMS {result.dipole_score:.4f} at omega {result.chosen_omega:g} (temperature "
        f"{result.dipole_temperature:g}); total {minutes:.1f} min. Report: {result.report}"
    )
    return 0


def _require(args: argparse.Namespace, command: str, names: tuple[str, ...]) -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names if not getattr(args, name)]
    if missing:
        raise _UsageError(f"{' and '.join(missing)} required")


class _UsageError(ValueError):
    """A command line that cannot run as given (reported in one line, exit 2)."""


def _shard(args: argparse.Namespace) -> tuple[tuple[int, int] | None, tuple[int, int, int] | None]:
    """This process's shard of the prediction work: ``--shard i/n`` (a SLURM array, separate jobs), or the rank of
    a launcher (torchrun / accelerate launch set RANK and WORLD_SIZE); and (rank, ranks, local rank) when launched."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    launched = None
    if world > 1:
        launched = (int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if getattr(args, "shard", None):
        if launched is not None:
            raise _UsageError("--shard with a launcher: the ranks are the shards already (drop --shard)")
        text = args.shard
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise _UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4 ($SLURM_ARRAY_TASK_ID/4)") from None
        if not 0 <= index < count:
            raise _UsageError(f"--shard {text!r}: expected 0 <= i < n")
        return (index, count), None
    return (launched[:2] if launched else None), launched


def _wait_for_every_rank() -> bool:
    """Barrier of the launched ranks (gloo, from the launcher's environment); True on rank 0, which goes on."""
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=6))
    dist.barrier()
    main = dist.get_rank() == 0
    dist.destroy_process_group()
    return main


def _load_model(args: argparse.Namespace, local_rank: int = 0):
    """The model of ``--model`` on ``--device`` (default: this rank's GPU when there is one, else the CPU), with
    ``--dtype`` / ``--attn-implementation`` overriding its saved backbone settings."""
    import torch

    from vla_drive.model.vla import DrivingVLA

    model = DrivingVLA.from_pretrained(
        args.model, dtype=getattr(args, "dtype", None), attn_implementation=getattr(args, "attn_implementation", None)
    )
    device = getattr(args, "device", None) or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return model.to(device)


def _result_logger(args: argparse.Namespace, out: Path, name: str):
    """A RunLogger for a command's results (scalars and plots) in ``out``: TensorBoard and W&B per ``--loggers``."""
    from vla_drive.train.logging import RunLogger

    loggers = tuple(getattr(args, "loggers", None) or ())
    return RunLogger(
        out, loggers=loggers, total_steps=0, progress=False, run_name=f"{name}-{out.name}", enabled=bool(loggers)
    )


def _temperature(text: str) -> float:
    """A sampler temperature: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_temperature(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=1.0,
        help="scale of the sampler's initial and stochastic-step noise (default 1: as trained; 0: noise-free)",
    )


def _add_model_and_split(
    parser: argparse.ArgumentParser, split_help: str, scoring: bool, mergeable: bool = False
) -> None:
    """The options every command that predicts a split shares (and, with ``scoring``, those of commands that also
    score it; with ``mergeable``, the sharding options, and --model / --split are then optional with --merge)."""
    parser.add_argument("--model", required=not mergeable, help="a DrivingVLA directory")
    parser.add_argument("--split", required=not mergeable, help=split_help)
    parser.add_argument("--data-root", help="OpenScene data root (default $OPENSCENE_DATA_ROOT)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--device", help="where the model runs (default: this rank's GPU if there is one, else cpu)")
    parser.add_argument("--dtype", choices=BACKBONE_DTYPES, help="backbone dtype (default: the model's)")
    parser.add_argument(
        "--attn-implementation", choices=ATTN_IMPLEMENTATIONS, help="backbone attention (default: the model's)"
    )
    if scoring:
        parser.add_argument("--maps-root", help="nuPlan maps root (default $NUPLAN_MAPS_ROOT)")
        parser.add_argument("--version", choices=("v1", "v2"), default="v1", help="PDMS (v1, default) or EPDMS (v2)")
        parser.add_argument("--seed", type=int, default=0, help="sampling seed (with each scene's token)")
        parser.add_argument("--max-scenes", type=int, help="only the first N scenes of the split")
        parser.add_argument(
            "--metric-cache",
            help="metric-cache folder to read and extend (default $NAVSIM_EXP_ROOT/vla_drive/metric_cache/<split>, "
            "else <out>/metric_cache)",
        )
        parser.add_argument(
            "--loggers",
            nargs="*",
            choices=("tensorboard", "wandb"),
            default=["tensorboard"],
            help="also log the results and plots to TensorBoard (<out>/tensorboard) and / or W&B (default "
            "tensorboard; none: --loggers with no value)",
        )
    if mergeable:
        parser.add_argument(
            "--synthetic-scenes",
            help="two-stage splits: the synthetic scene pickles (default <data root>/navhard_two_stage/"
            "synthetic_scene_pickles; their images in the sensor_blobs folder beside it)",
        )
        parser.add_argument(
            "--shard",
            metavar="I/N",
            help="predict only shard I of N (e.g. $SLURM_ARRAY_TASK_ID/N); under torchrun / accelerate launch the "
            "ranks are the shards without it",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``vla-drive`` argument parser (every command and option; docs/cli.md lists them all)."""
    from vla_drive.eval.sweep import DEFAULT_WIDEN

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
    _add_model_and_split(
        sweep, "a NAVSIM split file (e.g. .../synthetic_val.yaml: knobs are chosen on validation)", scoring=True
    )
    sweep.add_argument(
        "--omegas", nargs="+", type=float, help="default 0 0.5 1 1.5 2 3 5 8, widened past the best (see --widen)"
    )
    sweep.add_argument(
        "--widen",
        type=int,
        default=DEFAULT_WIDEN,
        metavar="N",
        help=f"while the best omega is the largest tried, add up to N larger ones (default {DEFAULT_WIDEN}; 0: off)",
    )
    _add_temperature(sweep)
    sweep.add_argument(
        "--out", help="output folder (default $NAVSIM_EXP_ROOT/vla_drive/<model>/sweep, else <model>/sweep)"
    )
    sweep.add_argument("--no-store", action="store_true", help="do not write the chosen omega into the model")
    sweep.set_defaults(handler=cmd_sweep)
    evaluate = sub.add_parser(
        "eval",
        help="predict a split and score it like the leaderboard (official CSV, summary, BEV plots)",
        description="Predict one trajectory per scene (the model's chosen omega unless --omega), score it with "
        "navsim_eval (PDMS v1.1 or EPDMS v2) in a process pool, and write <version>_scores.csv in the official "
        "layout with the average row, summary.md and BEV plots of the worst scenes, and record the result on the "
        "model card. Predictions are saved batch by batch: run the same command again to resume an interrupted "
        "evaluation. Under torchrun / accelerate launch every rank predicts its shard and rank 0 scores; with "
        "--shard I/N separate jobs (a SLURM array) predict, and --merge OUT scores them.",
    )
    _add_model_and_split(evaluate, "a NAVSIM split file (e.g. navtest.yaml)", scoring=True, mergeable=True)
    evaluate.add_argument("--merge", metavar="OUT", help="score the shards predicted into OUT (its predictions/)")
    evaluate.add_argument("--omega", type=float, help="guidance omega (default: the model's chosen one)")
    _add_temperature(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=16, help="scenes per forward pass")
    evaluate.add_argument("--workers", type=int, default=0, help="metric-cache and scoring processes (0 = every CPU)")
    evaluate.add_argument("--worst", type=int, default=6, help="BEV plots of this many lowest-scoring scenes")
    evaluate.add_argument(
        "--out",
        help="output folder (default $NAVSIM_EXP_ROOT/vla_drive/<model>/eval/<split>, else <model>/eval/<split>)",
    )
    evaluate.set_defaults(handler=cmd_eval)
    compare = sub.add_parser(
        "compare",
        help="compare RL algorithms from one imitation start per seed with equal budgets (docs/compare.md)",
        description="Train one imitation start per seed, then every algorithm with equal budgets (rollouts, "
        "sampler steps, knob grid); choose each policy's knob on synthetic_val, evaluate synthetic_test once, and "
        "write compare.md, compare.csv, scenes.csv, curves.csv, budgets.csv and plots/ (paired differences with 95 "
        "percent intervals clustered by log, collapse counts, learning curves, costs). Each (algorithm, seed) run is a "
        "folder: the same command continues an interrupted comparison; --shard I/N runs every N-th run (a SLURM "
        "array) and --merge writes the report. Exit 1 when some run failed (each said in one line; the others "
        "continue).",
    )
    compare.add_argument("--preset", default="full", help="configs/compare/<name>.yaml or a YAML file (default full)")
    compare.add_argument("--algos", nargs="+", help="e.g. dipole,awr,fpo+dipod (default: the preset's)")
    compare.add_argument("--seeds", nargs="+", type=int, help="run seeds (default: the preset's)")
    compare.add_argument("--out", help="output folder (default runs/compare-<preset>)")
    compare.add_argument("--world", help="one world for every seed (default: a world per seed, world seed = seed)")
    compare.add_argument("--shard", help="run only shard I of N of the runs (e.g. $SLURM_ARRAY_TASK_ID/N)")
    compare.add_argument("--merge", action="store_true", help="write the report from the finished runs only")
    compare.add_argument("--no-plots", action="store_true", help="write the report without plots")
    compare.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="budget.<field>=N and knobs.<field>=a,b change the plan; anything else both stages' configs",
    )
    compare.set_defaults(handler=cmd_compare)
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
    push = sub.add_parser(
        "push",
        help="upload a model directory to the Hugging Face hub",
        description="Check a DrivingVLA directory (its weight checksums), regenerate its model card and upload the "
        "model (config, backbone, head, normaliser, card, evaluation record; not eval / sweep outputs) in one "
        "commit through the huggingface_hub API, with your own token (HF_TOKEN or `hf auth login`).",
    )
    push.add_argument("--model", required=True, help="a DrivingVLA directory (e.g. an export)")
    push.add_argument("--repo-id", required=True, help="<user or organisation>/<name> on the hub")
    push.add_argument("--dry-run", action="store_true", help="list the files and print the card; upload nothing")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--commit-message", help="default 'Upload <name> with vla-drive'")
    push.set_defaults(handler=cmd_push)
    submit = sub.add_parser(
        "submit",
        help="write submission.pkl for the NAVSIM leaderboard (no navsim install needed)",
        description="Predict every scene of the test split (one trajectory per scene and seed, resumable) and "
        "write submission.pkl exactly as the leaderboard expects: team metadata and per-token "
        "navsim.common.dataclasses.Trajectory objects; with --second-stage-split the v2 two-stage layout. Every "
        "token of the split must be predicted, or nothing is written. Sharded like eval: ranks of a launcher, or "
        "--shard I/N jobs followed by the same command with --merge.",
    )
    _add_model_and_split(submit, "the split file (navtest.yaml; the first stage for v2)", scoring=False, mergeable=True)
    submit.add_argument("--merge", action="store_true", help="write the submission from the shards predicted in --out")
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
    submit.add_argument(
        "--out", help="output folder (default $NAVSIM_EXP_ROOT/vla_drive/<model>/submission, else ./submission)"
    )
    submit.set_defaults(handler=cmd_submit)
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on the embedded synthetic world (minutes on a laptop CPU)",
        description="Generate the synthetic world, train imitation, fine-tune with DIPOLE, choose DIPOLE's omega and "
        "imitation's sampler temperature on the validation split, evaluate "
        "both models like the leaderboard and write report.md into the output folder. A world and trained models "
        "found there are reused (those stages are skipped), so an interrupted demo continues. Overrides "
        "key.sub=value apply to both training configs (e.g. train.max_steps=50 for a quick look).",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument(
        "--omegas",
        nargs="+",
        type=float,
        help="sweep grid on the validation split (default 0 0.5 1 1.5 2 3 5 8, widened past the best)",
    )
    demo.add_argument(
        "--temperatures",
        nargs="+",
        type=float,
        help="imitation's sampler temperatures tried on the validation split (default 0 0.25 0.5 0.75 1)",
    )
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
    from vla_drive.eval.publish import PushError
    from vla_drive.eval.submission import SubmissionError
    from vla_drive.model.card import ModelCardError
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
        PushError,
        ModelCardError,
        _UsageError,
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
