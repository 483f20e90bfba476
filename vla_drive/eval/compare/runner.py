"""Running a comparison: the world of every seed, one imitation start per seed (and head kind), every RL run with
the equal budget, each run's checkpoint and knob chosen on validation, and the test split evaluated once.

Layout under ``--out``::

    worlds/seed<k>/                 the world of seed k (world seed k), unless --world names one world for all
    caches/seed<k>/{train,val,test} metric caches of that world (built once, before any run reads them)
    features/seed<k>/               frozen-backbone features (content-keyed, shared by the runs of a seed)
    runs/<algorithm>/seed<k>/       one run: train/ (its training run, its final model, and selected_model/ when an
                                    earlier checkpoint scored best on val), result.json, test_scenes.csv,
                                    val_plans.npz, budget.json; failed.txt when it failed (why, one line)
    starts/coupled_flow/seed<k>/    GenPO's own imitation start (coupled-flow head, same data and budget)

A run is finished when its ``result.json`` exists: a second invocation skips it, and an interrupted training run
resumes from its last checkpoint. Work shared by several runs (a world, its caches, an imitation start) is done by
whichever run needs it first, under a file lock, so shards (``--shard i/n``) may run at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from navsim_eval.atomic import atomic_write_text
from navsim_eval.data.loader import SceneLoader
from navsim_eval.synthetic.labels import ScenarioLabelsError, labels_path, load_scenario_labels
from vla_drive.config import ConfigError, ExperimentConfig, load_config
from vla_drive.eval.compare.budgets import RunBudget
from vla_drive.eval.compare.checkpoints import metric_records, select_checkpoint, validation_scores
from vla_drive.eval.compare.evaluation import (
    load_plans,
    plan_drift,
    predict_plans,
    save_plans,
    scene_rows,
    sweep_knob,
)
from vla_drive.eval.compare.knobs import (
    PredictionSettings,
    default_knob,
    head_calls_per_plan,
    knob_beyond,
    knob_grid,
    knob_mismatch,
    knob_name,
    prediction_settings,
    validation_settings,
)
from vla_drive.eval.compare.plan import IMITATION, Algorithm, CompareError, ComparePlan, Run, shard_runs
from vla_drive.eval.scoring import SceneScorer, build_metric_caches, summarize

LOG = logging.getLogger(__name__)
RESULT_FILE = "result.json"
FAILED_FILE = "failed.txt"
SCENES_FILE = "test_scenes.csv"
SPLITS = ("train", "val", "test")


class RunFailed(RuntimeError):
    """One run could not finish; the message is its one-line reason."""


@dataclass(frozen=True)
class World:
    """The data of one seed: the world's roots, split files and metric caches."""

    root: Path
    caches: Path
    seed: int | None  # the world's seed (None: a given world)

    @property
    def maps(self) -> Path:
        return self.root / "maps"

    def split(self, name: str) -> Path:
        return self.root / "splits" / f"synthetic_{name}.yaml"


def run_folder(plan: ComparePlan, run: Run) -> Path:
    return plan.out / "runs" / run.algorithm.label / f"seed{run.seed}"


def start_folder(plan: ComparePlan, seed: int, head_kind: str) -> Path:
    """The imitation start of ``seed`` for a head kind: the imitation run itself for the diffusion head."""
    if head_kind == "diffusion":
        return run_folder(plan, Run(Algorithm(IMITATION, "bc"), seed))
    return plan.out / "starts" / head_kind / f"seed{seed}"


@contextlib.contextmanager
def _file_lock(lock: Path, wait: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on ``lock``: waited for (``wait``), else tried once; yields whether it is held."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (processes of other shards wait for the holder)."""
    with _file_lock(path.with_name(path.name + ".lock"), wait=True):
        yield


def claimed(folder: Path) -> contextlib.AbstractContextManager[bool]:
    """Whether this process holds ``<folder>.running`` (an exclusive lock, not waited for): a run another process
    is working on is left to it, so several processes may work through the same plan at once. A file of its own,
    not ``<folder>.lock``: the imitation run's folder is also its start's, locked while the start trains."""
    return _file_lock(folder.with_name(folder.name + ".running"), wait=False)


def run_comparison(
    plan: ComparePlan,
    shard: tuple[int, int] | None = None,
    say: Callable[[str], None] = print,
    test: bool = True,
) -> dict[str, str]:
    """Run every unfinished run of the plan (or of ``shard``) that no other process is running; returns the
    failures (run key or name -> one-line reason), each also said as it happens. A failed run never stops the
    others. ``test=False`` is for tuning: the runs choose their knob and checkpoint on validation and never
    evaluate synthetic_test (their result.json has no test scores)."""
    _, problems = plan.resolved()
    failures = {}
    for problem in problems:
        say(f"compare: {problem}")
        failures[problem.split("'")[1]] = problem
    done_starts: dict[tuple[int, str], str | None] = {}  # (seed, head kind) -> failure reason or None
    for run in shard_runs(plan.runs(), shard):
        folder = run_folder(plan, run)
        if (folder / RESULT_FILE).is_file():
            stale = stale_result(plan, run)
            if stale:
                say(f"compare: {stale}")
                failures[run.key] = stale
            continue
        with claimed(folder) as mine:
            if not mine:
                say(f"compare: {run.key} is running in another process; left to it")
                continue
            if (folder / RESULT_FILE).is_file():  # finished by another process meanwhile
                continue
            try:
                execute_run(plan, run, done_starts, test)
                (folder / FAILED_FILE).unlink(missing_ok=True)
            except RunFailed as error:
                reason = str(error)
                say(f"compare: {reason}")
                failures[run.key] = reason
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(folder / FAILED_FILE, reason + "\n")
    return failures


def stale_result(plan: ComparePlan, run: Run) -> str:
    """Why the finished run in its folder cannot stand in this plan ('' when it can): made at other knob settings
    (e.g. a folder from before a default changed). It is left as it is, never overwritten."""
    folder = run_folder(plan, run)
    result = json.loads((folder / RESULT_FILE).read_text())
    mismatch = knob_mismatch(run.algorithm, result, plan.budget, plan.knobs)
    if not mismatch:
        return ""
    return (
        f"{run.key}: {folder / RESULT_FILE} was made with {mismatch}; pass the knobs it was made with (e.g. "
        f"knobs.omega_temperature=...) to read it, or move the folder away to run it again"
    )


def execute_run(plan: ComparePlan, run: Run, done_starts: dict[tuple[int, str], str | None], test: bool = True) -> None:
    """Finish one run (its world and start first; test evaluated unless ``test`` is off); raises
    :class:`RunFailed` with the reason."""
    try:
        world = ensure_world(plan, run.seed)
    except Exception as error:  # any failure of one run is its own: the comparison goes on
        raise RunFailed(f"{run.key}: the world of seed {run.seed} failed: {error}") from None
    start = ensure_start(plan, run.seed, run.algorithm.head_kind, world, done_starts)
    if run.algorithm.label == IMITATION:
        return
    config = rl_config(plan, run, world, start / "train" / "model")
    from vla_drive.train.rl import steps_per_iteration, train_rl

    folder = run_folder(plan, run)
    resumed = (folder / "train" / "checkpoints").is_dir()
    started = time.perf_counter()
    try:
        model_dir = train_rl(config)
    except Exception as error:  # any failure of one run is its own: the comparison goes on
        raise RunFailed(f"{run.key}: training failed: {type(error).__name__}: {error}") from None
    wall = time.perf_counter() - started
    per_iteration = steps_per_iteration(config)
    selection = select_checkpoint(folder / "train", model_dir, config.train.max_steps)
    training = {
        "wall_seconds": wall,
        "resumed": resumed,
        "steps_per_iteration": per_iteration,
        "selected_iteration": selection.step / per_iteration,
        "final_iteration": selection.final_step / per_iteration,
        "selection_note": selection.note,
    }
    evaluate_run(plan, run, world, selection.model_dir, config, training, start, test=test)


# --------------------------------------------------------------------------------------------------- the world


def seed_world(plan: ComparePlan, seed: int) -> World:
    """Where the world of ``seed`` and its metric caches are (made by :func:`ensure_world`)."""
    caches = plan.out / "caches" / (f"seed{seed}" if plan.world is None else "world")
    return World(plan.world_of(seed), caches, plan.world_seed(seed))


def ensure_world(plan: ComparePlan, seed: int) -> World:
    """The world of ``seed`` with metric caches of its splits, generated / built once (under a lock)."""
    world = seed_world(plan, seed)
    root, caches = world.root, world.caches
    with locked(caches):
        if not world.split("train").is_file():
            if plan.world is not None:
                raise CompareError(
                    f"--world {root}: no splits/synthetic_train.yaml (generate it with navsim-eval synth)"
                )
            from navsim_eval.synthetic.world import WorldConfig, generate_world

            LOG.info("generating the world of seed %d in %s", seed, root)
            shape = {"split_logs": tuple(plan.world_split_logs)} if plan.world_split_logs else {}
            generate_world(root, WorldConfig(num_logs=plan.world_logs, seed=seed, workers=plan.workers, **shape))
        done = caches / "done.json"
        if not done.is_file():
            for name in SPLITS:
                loader = SceneLoader.from_split_file(world.split(name), root, _max_scenes(plan, name))
                build_metric_caches(loader, world.maps, caches / name, workers=plan.workers)
            atomic_write_text(done, json.dumps({"splits": list(SPLITS)}))
    return world


def _max_scenes(plan: ComparePlan, split: str) -> int | None:
    return {"val": plan.budget.val_scenes, "test": plan.budget.test_scenes}.get(split)


def data_overrides(plan: ComparePlan, world: World, seed: int) -> list[str]:
    """Every data path of a stage's config moved into the seed's world and caches."""
    val_scenes = "null" if plan.budget.val_scenes is None else plan.budget.val_scenes
    return [
        f"data.synthetic_world={world.root}",
        f"data.data_root={world.root}",
        f"data.maps_root={world.maps}",
        f"data.train_split={world.split('train')}",
        f"data.val_split={world.split('val')}",
        f"data.max_val_scenes={val_scenes}",
        f"data.metric_cache={world.caches / 'train'}",
        f"data.val_metric_cache={world.caches / 'val'}",
        f"train.feature_cache={plan.out / 'features' / f'seed{seed}'}",
        f"eval.sample_steps={plan.budget.sample_steps}",
        f"eval.seed={plan.eval_seed}",
        "train.loggers=[jsonl]",
    ]


# --------------------------------------------------------------------------------------------------- starts


def ensure_start(
    plan: ComparePlan, seed: int, head_kind: str, world: World, done_starts: dict[tuple[int, str], str | None]
) -> Path:
    """The imitation start of ``seed`` for ``head_kind``, trained and evaluated once (under a lock); a start that
    failed fails every run that needs it, with its reason."""
    folder = start_folder(plan, seed, head_kind)
    key = (seed, head_kind)
    if done_starts.get(key):
        raise RunFailed(done_starts[key])
    with locked(folder):
        if not (folder / RESULT_FILE).is_file():
            try:
                _train_and_evaluate_start(plan, seed, head_kind, world, folder)
            except RunFailed as error:
                done_starts[key] = f"imitation of seed {seed} ({head_kind} head) failed: {error}"
                if head_kind == "diffusion":
                    folder.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(folder / FAILED_FILE, done_starts[key] + "\n")
                raise RunFailed(done_starts[key]) from None
    done_starts[key] = None
    return folder


def imitation_config(plan: ComparePlan, seed: int, head_kind: str, world: World, folder: Path) -> ExperimentConfig:
    overrides = [
        *plan.overrides,
        *plan.imitation_overrides,
        *data_overrides(plan, world, seed),
        f"train.output_dir={folder / 'train'}",
        f"train.seed={seed}",
        f"train.max_steps={plan.budget.imitation_steps}",
        f"model.head.kind={head_kind}",
        "train.eval_every=0",
    ]
    return load_config(plan.imitation_config, overrides)


def _train_and_evaluate_start(plan: ComparePlan, seed: int, head_kind: str, world: World, folder: Path) -> None:
    from vla_drive.train.stages import train_imitation

    try:
        config = imitation_config(plan, seed, head_kind, world, folder)
        started = time.perf_counter()
        model_dir = train_imitation(config)
    except Exception as error:  # any failure of one run is its own: the comparison goes on
        raise RunFailed(f"{type(error).__name__}: {error}") from None
    training = {"wall_seconds": time.perf_counter() - started, "resumed": False, "steps_per_iteration": 0}
    run = Run(Algorithm(IMITATION, "bc"), seed)
    evaluate_run(plan, run, world, model_dir, config, training, None, folder=folder, test=head_kind == "diffusion")


# --------------------------------------------------------------------------------------------------- RL runs


def rl_config(plan: ComparePlan, run: Run, world: World, start_model: Path) -> ExperimentConfig:
    """The RL config of a run with the equal budget; a budget the algorithm cannot meet fails the run."""
    from vla_drive.train.rl import steps_per_iteration

    budget = plan.budget
    folder = run_folder(plan, run)
    base = [
        *plan.overrides,
        *plan.rl_overrides,
        *run.algorithm.overrides,
        *data_overrides(plan, world, run.seed),
        f"train.output_dir={folder / 'train'}",
        f"train.init_from={start_model}",
        "train.init_preset=",
        f"train.seed={run.seed}",
        f"train.batch_size={budget.scenes_per_iteration}",
        f"algorithm.samples_per_scene={budget.samples_per_scene}",
        f"algorithm.rollout_steps={budget.rollout_steps}",
        f"eval.temperature={validation_settings(run.algorithm, budget, plan.knobs).temperature}",  # checkpoints too
    ]
    preset = plan.rl_config.format(algorithm=run.algorithm.name)
    try:
        config = load_config(preset, base)
        per_iteration = steps_per_iteration(config)
        every = per_iteration * max(1, min(budget.eval_every_iterations, budget.iterations))
        schedule = [
            f"train.max_steps={per_iteration * budget.iterations}",
            f"train.eval_every={every}",
            f"train.checkpoint_every={every}",
            f"train.keep_checkpoints={budget.iterations * per_iteration // every + 1}",  # every one is a candidate
            f"train.log_every={per_iteration}",
            f"train.warmup_steps={min(config.train.warmup_steps, per_iteration * budget.iterations // 4)}",
        ]
        return load_config(preset, [*base, *schedule])
    except ConfigError as error:
        first = str(error).splitlines()[0]
        raise RunFailed(f"{run.key}: the equal budget cannot be met: {first}") from None


# --------------------------------------------------------------------------------------------------- evaluation


def evaluate_run(
    plan: ComparePlan,
    run: Run,
    world: World,
    model_dir: Path,
    config: ExperimentConfig,
    training: dict[str, Any],
    start: Path | None,
    folder: Path | None = None,
    test: bool = True,
) -> None:
    """Choose the knob on validation, evaluate test once at it, and write the run's files (result.json last)."""
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.model.vla import DrivingVLA

    folder = folder or run_folder(plan, run)
    algorithm, budget = run.algorithm, plan.budget
    try:
        model = DrivingVLA.from_pretrained(model_dir)
        val = SceneLoader.from_split_file(world.split("val"), world.root, budget.val_scenes)
        val_scorer = SceneScorer.from_scenes(val, world.maps, world.caches / "val", "v1")
        dataset = SceneDataset.for_model(val, model)
        grid = sweep_knob(
            model,
            dataset,
            val_scorer,
            knob_grid(algorithm, plan.knobs),
            lambda knob: prediction_settings(algorithm, knob, budget, plan.knobs),
            plan.eval_seed,
            plan.eval_batch_size,
            widen=plan.knobs.widen,
            beyond=lambda tried: knob_beyond(algorithm, tried),
        )
        default = default_knob(algorithm, budget)
        known = {row["knob"]: row for row in grid.rows}
        if default in known:
            val_default = known[default]["score"]
        else:
            plans, _ = predict_plans(
                model,
                dataset,
                prediction_settings(algorithm, default, budget, plan.knobs),
                plan.eval_seed,
                plan.eval_batch_size,
            )
            val_default = summarize(val_scorer.score_plans(plans)).get("score", float("nan"))
        save_plans(folder / "val_plans.npz", grid.plans)
        chosen = prediction_settings(algorithm, grid.chosen, budget, plan.knobs)
        result: dict[str, Any] = {
            "algorithm": algorithm.label,
            "registry_name": algorithm.name,
            "seed": run.seed,
            "world": str(world.root),
            "world_seed": world.seed,
            "knob": knob_name(algorithm),
            "grid": grid.rows,
            "chosen_knob": grid.chosen,
            "chosen_settings": asdict(chosen),
            "val_temperature": config.eval.temperature,  # training-time validation's, which chose the checkpoint
            "val": next(row for row in grid.rows if row["knob"] == grid.chosen),
            "val_default": val_default,
            "head_calls_per_plan": head_calls_per_plan(algorithm, chosen),
            "training": training,
            "curve": learning_curve(folder / "train" / "metrics.jsonl", training["steps_per_iteration"]),
        }
        reference = start_folder(plan, run.seed, "diffusion") / "val_plans.npz"
        result["drift_from_imitation"] = plan_drift(grid.plans, load_plans(reference)) if reference.is_file() else 0.0
        if start is not None:
            start_result = json.loads((start / RESULT_FILE).read_text())
            result["start_val"] = start_result["val"]["score"]
            validation = validation_settings(algorithm, budget, plan.knobs)
            result["start_val_default"] = start_default(start_result, validation)
        else:
            result["start_val"] = result["val"]["score"]
            result["start_val_default"] = val_default
        if test:
            result.update(_test_once(plan, world, model, chosen, folder))
        else:  # a tuning run: chosen on validation, never tested
            result["test_evaluations"] = 0
        result["budget"] = asdict(_run_budget(plan, run, config, model, grid, result, start))
    except Exception as error:  # any failure of one run is its own: the comparison goes on
        raise RunFailed(f"{run.key}: evaluation failed: {type(error).__name__}: {error}") from None
    atomic_write_text(folder / RESULT_FILE, json.dumps(result, indent=1, default=float) + "\n")


def start_default(start_result: dict[str, Any], settings: PredictionSettings) -> float:
    """The imitation start's validation score at the sampler temperature of an RL run's validation (where its
    learning curve begins): the start's row of that temperature, else its own default (temperature 1) when that is
    the temperature asked, else NaN."""
    rows = {float(row["knob"]): row for row in start_result.get("grid", [])}
    if settings.temperature in rows:
        return float(rows[settings.temperature]["score"])
    return float(start_result["val_default"]) if settings.temperature == 1.0 else float("nan")


def _test_once(plan: ComparePlan, world: World, model, settings, folder: Path) -> dict[str, Any]:
    """The test split at the chosen knob, scored in v1 and v2 per scene (written to test_scenes.csv)."""
    import csv

    from vla_drive.data.dataset import SceneDataset

    test = SceneLoader.from_split_file(world.split("test"), world.root, plan.budget.test_scenes)
    dataset = SceneDataset.for_model(test, model)
    plans, seconds = predict_plans(model, dataset, settings, plan.eval_seed, plan.eval_batch_size)
    tables = {}
    summaries = {}
    for version in ("v1", "v2"):
        scorer = SceneScorer.from_scenes(test, world.maps, world.caches / "test", version)
        tables[version] = scorer.score_plans(plans)
        summaries[version] = summarize(tables[version])
    rows = scene_rows(test, plans, tables, scenario_labels(world.split("test")))
    if rows:
        with (folder / SCENES_FILE).open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    human = sum(float(r["human_distance"]) for r in rows)
    return {
        "test_v1": summaries["v1"],
        "test_v2": summaries["v2"],
        "test_scenes": len(rows),
        "test_evaluations": 1,
        "distance_ratio": sum(float(r["distance"]) for r in rows) / human if human > 0 else float("nan"),
        "predict_seconds_per_scene": seconds,
    }


def scenario_labels(split_file: Path) -> dict[str, str]:
    """token -> scenario of a split (empty where the split has no labels file, e.g. real data)."""
    if not labels_path(split_file).is_file():
        return {}
    try:
        return load_scenario_labels(split_file).scenes
    except ScenarioLabelsError:
        return {}


def learning_curve(metrics_file: Path, per_iteration: int) -> dict[str, list[float]]:
    """Validation score and mean rollout reward against the RL iteration, from a run's metrics.jsonl."""
    curve: dict[str, list[float]] = {"val_iteration": [], "val_score": [], "reward_iteration": [], "reward": []}
    if not per_iteration:
        return curve
    scores = validation_scores(metrics_file)
    curve["val_iteration"] = [step / per_iteration for step in sorted(scores)]
    curve["val_score"] = [scores[step] for step in sorted(scores)]
    for record in metric_records(metrics_file):
        if "train/rl/reward_mean" in record:
            curve["reward_iteration"].append(float(record.get("step", 0)) / per_iteration)
            curve["reward"].append(float(record["train/rl/reward_mean"]))
    return curve


def _run_budget(plan: ComparePlan, run: Run, config, model, grid, result, start: Path | None) -> RunBudget:
    """The budget the run actually used: read from its resolved config, its model's training record and its
    evaluation."""
    from vla_drive.algorithms.registry import make_algorithm
    from vla_drive.train.rl import prepare_policy, steps_per_iteration

    steps = int((model.training_record or {}).get("steps", 0))
    if run.algorithm.label == IMITATION:
        imitation_steps, iterations, scenes, samples, rollout_steps, per_iteration = steps, 0, 0, 0, 0, 0
        adapters = 0
    else:
        start_result = json.loads((start / RESULT_FILE).read_text())
        imitation_steps = int(start_result["budget"]["imitation_steps"])
        per_iteration = steps_per_iteration(config)
        iterations = steps // per_iteration
        scenes = config.train.batch_size
        samples = config.algorithm.samples_per_scene
        rollout_steps = config.algorithm.rollout_steps
        algorithm = make_algorithm(config.algorithm)
        prepare_policy(model, algorithm, config.train.seed)
        adapters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rollouts = iterations * scenes * samples
    return RunBudget(
        algorithm=run.algorithm.label,
        seed=run.seed,
        imitation_steps=imitation_steps,
        iterations=iterations,
        scenes_per_iteration=scenes,
        samples_per_scene=samples,
        rollouts=rollouts,
        rollout_steps=rollout_steps,
        knob_grid=len(knob_grid(run.algorithm, plan.knobs)),  # the grid every policy starts from (widening aside)
        val_scenes=int(result["val"].get("num_scenes", 0)),
        test_scenes=int(result.get("test_scenes", 0)),
        updates_per_iteration=per_iteration,
        updates_per_rollout=round(per_iteration / (scenes * samples), 6) if scenes * samples else 0.0,
        adapter_parameters=int(adapters),
    )
