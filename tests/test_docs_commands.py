"""Every command of the README and docs/*.md runs as written (shrunk), in the order the docs chain them.

The commands are read from the shell blocks of the docs (``tests/doc_commands.py``) and run with bash, one after
the other, in one sandbox folder that stands for a fresh clone: ``configs/`` and ``launch/`` are the repository's,
``.venv/bin/vla-drive`` / ``navsim-eval`` (also on PATH) run this checkout, and ``../shared`` is the shared folder.
What the docs assume a user has is made there first (see :func:`sandbox`): NAVSIM data stands in as a one-log
synthetic world whose split files are named navtest / navtrain / navhard_two_stage (``$OPENSCENE_DATA_ROOT``,
``$NUPLAN_MAPS_ROOT``, ``$NAVSIM_DEVKIT_ROOT``, ``$SPLITS`` and ``.../`` point at it), trajectory files of its logged
futures (``predictions.json``, ``seed0.json`` ..., ``plans.json``), conformance scenes (``SCENES_DIR``, ``preds.json``),
a hostfile; the model placeholders ``M`` and ``runs/navsim-dipole/model`` are links to the demo's DIPOLE model, so
the evaluation docs run on what the README's chain trained.

Each command is shrunk by the rule of :data:`SHRINK` that matches its start (longest match): options appended (the
last occurrence of an option wins), optional ``[--option ...]`` groups of a synopsis line dropped. Commands that
cannot run here are in :data:`NOT_RUN`, each with the reason. A documented command that is in neither fails
:func:`test_every_documented_command_is_run_or_listed_not_run` naming its file and line; a NOT_RUN entry the docs
no longer show fails too, so both lists follow the docs. The commands chain (the demo's models feed the sweep,
the evaluation and the export), so run the module whole: one command's test alone lacks what the earlier ones made.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.doc_commands import DocCommand, documented_commands, unlabelled_command_lines

ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Shrink:
    """How a command is made small: ``append`` goes after its arguments (before a pipe), unless the command already
    gives the option ``unless``; ``why`` says what was shrunk."""

    append: tuple[str, ...] = ()
    why: str = "runs as written"
    unless: str | None = None


# Training: a 3-log world (train / val / test, a few scenes each), 2 optimizer steps, the tiny backbone.
TINY_TRAINING = (
    "data.synthetic_logs=3",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.log_every=1",
    "model.backbone=tiny-qwen2.5-vl",
    "data.max_val_scenes=2",
)
TINY = "a 3-log world, 2 steps, batch 2, 2 validation scenes, the tiny backbone"

# The shrink rules, keyed by how the command starts (after a `.venv/bin/` prefix and VAR=value prefixes).
SHRINK: dict[str, Shrink] = {
    "vla-drive demo": Shrink(
        ("--omegas", "0", "1", "--workers", "1", *TINY_TRAINING),
        f"each stage on {TINY} (the demo derives the warm-up); the sweep over omega 0 and 1",
    ),
    "vla-drive train": Shrink((*TINY_TRAINING, "train.warmup_steps=0"), TINY),
    "vla-drive train debug": Shrink(why="already seconds: runs as written"),
    "vla-drive train debug-rl": Shrink(why="already seconds: runs as written"),
    "vla-drive sweep": Shrink(("--omegas", "0", "1", "--max-scenes", "4"), "4 scenes, omega 0 and 1"),
    "vla-drive eval": Shrink(("--max-scenes", "4", "--workers", "1", "--worst", "1"), "4 scenes, 1 BEV plot"),
    "vla-drive submit": Shrink(why="the stand-in split (19 scenes)"),
    "vla-drive export": Shrink(),
    "vla-drive push": Shrink(why="--dry-run only (NOT_RUN has the upload)"),
    "navsim-eval synth": Shrink(("--logs", "1", "--frames", "32"), "one 32-frame log", unless="--logs"),
    "navsim-eval inspect": Shrink(),
    "navsim-eval cache": Shrink(),
    "navsim-eval score": Shrink(),
    "navsim-eval submit": Shrink(),
    "navsim-eval two-stage": Shrink(),
    "navsim-eval conformance": Shrink(),
    "launch/single_node.sh": Shrink(why="LAUNCH_DRY_RUN=1: prints the accelerate command"),
    "launch/multi_node.sh": Shrink(why="LAUNCH_DRY_RUN=1: prints the deepspeed command"),
}

# Documented commands that are not run here (exact text, as the docs show it without its comment), and why.
NOT_RUN: dict[str, str] = {
    "vla-drive compare --preset quick": (
        "5-16 min on 2 cores; tests/vla_drive/eval/test_compare.py runs the tiny preset end to end (shards, merge)"
    ),
    "vla-drive compare --algos dipole,awr,diffgrpo,dppo,fpo,fpo+dipod,genpo"
    " --seeds 0 1 2 3 4 --out runs/compare-full": (
        "the full comparison (hours); test_compare.py runs the tiny preset end to end"
    ),
    "vla-drive compare --preset quick --world runs/demo/world budget.iterations=20 train.learning_rate=5e-5": (
        "needs a demo world and minutes of training; test_compare.py checks the key=value overrides of a plan"
    ),
    "sbatch --array=0-39 --wrap"
    " 'vla-drive compare --preset full --out runs/compare-full --shard $SLURM_ARRAY_TASK_ID/40'": (
        "needs a SLURM cluster; test_compare.py runs --shard jobs and their --merge"
    ),
    "vla-drive compare --preset full --out runs/compare-full --merge": "after the full comparison's SLURM array",
    "vla-drive compare --preset full --out runs/compare-full": "the full comparison (hours)",
    "OMP_NUM_THREADS=1 vla-drive compare --preset full-cpu --out runs/compare-full-cpu &": (
        "the committed full comparison (about 2 h on 2 cores); test_compare.py checks that processes sharing a "
        "plan leave a claimed run to its holder"
    ),
    "OMP_NUM_THREADS=1 vla-drive compare --preset full-cpu --out runs/compare-full-cpu": (
        "the committed full comparison, its second process"
    ),
    "wait; vla-drive compare --preset full-cpu --out runs/compare-full-cpu --merge": (
        "after the full comparison; test_compare.py runs --merge"
    ),
    "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dipole_vs_imitation.py --preset full --out runs/proof": (
        "the 5-seed proof (hours); test_compare.py covers the compare runs it is made of"
    ),
    "bash scripts/setup.sh": "creates .venv and installs torch from the package index; CI runs it (.ci/run)",
    ".venv/bin/python -m pytest": "the test suite itself (.ci/run runs it)",
    "sbatch --nodes=8 launch/slurm.sbatch configs/navsim-imitation.yaml": "needs a SLURM cluster",
    "torchrun --nproc_per_node 8 -m vla_drive.cli eval --model M --split .../navtest.yaml": (
        "8 GPU ranks; tests/vla_drive/eval/test_sharded_eval.py launches the same command on 2 CPU ranks"
    ),
    "SPLITS=path/to/navsim/navsim/planning/script/config/common/train_test_split": (
        "a setting: the sandbox sets $SPLITS to the stand-in split folder"
    ),
    "vla-drive eval --model M --split navtest.yaml --out $OUT --shard $SLURM_ARRAY_TASK_ID/8": (
        "a SLURM array task; test_sharded_eval.py runs --shard jobs and their --merge"
    ),
    "vla-drive eval --merge $OUT --split navtest.yaml --workers 0": (
        "after a SLURM array; test_sharded_eval.py runs --shard jobs and their --merge"
    ),
    "vla-drive train configs/navsim-imitation.yaml train.max_steps=20000 model.lora.r=32": (
        "real NAVSIM data and Qwen2.5-VL-3B from the hub; tests/vla_drive/test_config.py validates the config"
    ),
    "vla-drive train demo-genpo": (
        "first trains its coupled-flow imitation model from the demo-imitation preset (800 steps: the run's train "
        "overrides do not reach it, its model, data and distributed sections do); "
        "tests/vla_drive/train/test_rl_algorithms.py and tests/vla_drive/test_config.py cover train.init_preset"
    ),
    "navsim-eval import-cache $NAVSIM_EXP_ROOT/metric_cache --out cache/navtest_v2": (
        "needs an official metric cache (NAVSIM's run_metric_caching.py); tests/navsim_eval convert the official "
        "caches of ../shared"
    ),
    "navsim-eval conformance --pipeline ../shared/official_pipeline": (
        "half a minute; tests/navsim_eval/test_pipeline_conformance.py runs the same pipeline"
    ),
    'vla-drive push --model exported/ --repo-id you/vla-drive-navtest [--private] [--commit-message "..."]': (
        "uploads to the Hugging Face hub (the --dry-run form runs)"
    ),
    "python -m venv navsim-env": "the official navsim install (a separate environment)",
    ". navsim-env/bin/activate": "the official navsim install (a separate environment)",
    "pip install torch==2.13.0 numpy==1.26.4 hydra-core==1.3.2 pytorch-lightning==2.6.6 ray": (
        "the official navsim install (a separate environment)"
    ),
    "pip install -e /path/to/nuplan-devkit --no-deps": "the official navsim install (a separate environment)",
    "pip install -e /path/to/navsim --no-deps": "the official navsim install (a separate environment)",
    "pip install -e /path/to/vla-drive": "the official navsim install (a separate environment)",
    "python $NAVSIM_DEVKIT_ROOT/navsim/planning/script/run_pdm_score.py agent=vla_drive train_test_split=navtest "
    "experiment_name=vla_drive metric_cache_path=$NAVSIM_EXP_ROOT/metric_cache": (
        "the official NAVSIM devkit (nuplan-devkit, hydra); tests/vla_drive/test_navsim_agent.py covers the agent"
    ),
}

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
OPTIONAL_GROUP = re.compile(r"\s\[-[^\]]*\]")


def program_of(text: str) -> str:
    """The command without VAR=value prefixes and a ``.venv/bin/`` prefix: what :data:`SHRINK` keys match."""
    words = text.split()
    while words and ASSIGNMENT.match(words[0]) and len(words) > 1:
        words = words[1:]
    return " ".join(words).removeprefix(".venv/bin/")


def shrink_rule(text: str) -> Shrink | None:
    """The rule of the longest :data:`SHRINK` key the command starts with (on a word boundary), if any."""
    program = program_of(text)
    keys = [k for k in SHRINK if program == k or program.startswith(k + " ")]
    return SHRINK[max(keys, key=len)] if keys else None


def shrunk(text: str) -> str:
    """The command line the test runs for a documented one."""
    rule = shrink_rule(text)
    assert rule is not None, text
    text = OPTIONAL_GROUP.sub("", text).replace(" .../", " $SPLITS/")
    if not rule.append or (rule.unless and rule.unless in text.split()):
        return text
    head, pipe, tail = text.partition(" | ")
    return f"{head} {shlex.join(rule.append)}{pipe}{tail}"


@dataclass
class Run:
    """One command line to run, and every documented place it stands for."""

    text: str
    places: list[DocCommand]

    @property
    def where(self) -> str:
        return ", ".join(p.where for p in self.places)


def commands_to_run() -> list[Run]:
    """The shrunk commands in document order, each once (the same line in several places runs once)."""
    runs: dict[str, Run] = {}
    for command in documented_commands(ROOT):
        if command.text in NOT_RUN or shrink_rule(command.text) is None:
            continue
        text = shrunk(command.text)
        key = text.removeprefix(".venv/bin/")
        runs.setdefault(key, Run(text, [])).places.append(command)
    return list(runs.values())


RUNS = commands_to_run()


def test_every_documented_command_is_run_or_listed_not_run():
    unknown = [
        f"{c.where}: `{c.text}`"
        for c in documented_commands(ROOT)
        if c.text not in NOT_RUN and shrink_rule(c.text) is None
    ]
    assert not unknown, (
        "documented commands that tests/test_docs_commands.py does not know how to shrink: give each a SHRINK rule "
        "or a NOT_RUN entry with the reason:\n  " + "\n  ".join(unknown)
    )


def test_every_not_run_entry_is_still_documented():
    documented = {c.text for c in documented_commands(ROOT)}
    stale = [text for text in NOT_RUN if text not in documented]
    assert not stale, "NOT_RUN entries no docs show any more (remove them):\n  " + "\n  ".join(stale)


def test_commands_stand_in_shell_blocks():
    found = unlabelled_command_lines(ROOT)
    assert not found, (
        "command lines in blocks that are not ```bash (label a runnable block bash, a usage synopsis text):\n  "
        + "\n  ".join(found)
    )


# what the synopsis placeholders of optional groups stand for when a command line is parsed
PLACEHOLDERS = {"W": "1.5", "N": "2", "S": "0", "DIR": "dir"}


def _parsed_argv(text: str) -> list[str]:
    """The arguments of a documented CLI command (before a pipe) with its optional groups taken (``[--a x|y]`` ->
    ``--a x``)."""
    text = re.sub(r"\[(-[^\]]*)\]", lambda m: m.group(1).split("|")[0], text)
    command = program_of(text).partition(" | ")[0]
    return [PLACEHOLDERS.get(word, word) for word in shlex.split(command)][1:]


def test_every_documented_cli_line_parses_with_its_optional_options():
    """What does not run here (NOT_RUN, the optional ``[--option ...]`` groups the run drops) still names only
    commands and options the parsers have, with values of the right type."""
    from navsim_eval.cli import build_parser as navsim_eval_parser
    from vla_drive.cli import build_parser as vla_drive_parser

    parsers = {"vla-drive": vla_drive_parser(), "navsim-eval": navsim_eval_parser()}
    wrong = []
    for command in documented_commands(ROOT):
        program = program_of(command.text).split()[0]
        if program not in parsers:
            continue
        try:
            parsers[program].parse_args(_parsed_argv(command.text))
        except SystemExit:
            wrong.append(f"{command.where}: `{command.text}`")
    assert not wrong, "documented command lines the parsers refuse (argparse says why above):\n  " + "\n  ".join(wrong)


def test_the_chain_is_long_enough_to_mean_something():
    """The docs are read: the README's chain and the evaluation guide are among the commands run."""
    run = {c.where.split(":")[0] for r in RUNS for c in r.places}
    assert {"README.md", "docs/data.md", "docs/evaluation.md", "docs/training.md"} <= run, run
    assert any(program_of(r.text).startswith("vla-drive demo") for r in RUNS)


def _wrapper(path: Path, module: str) -> None:
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
    path.chmod(0o755)


def _logged_futures(world: Path, split: str) -> dict[str, list]:
    from navsim_eval.data.loader import SceneLoader

    loader = SceneLoader.from_split_file(world / "splits" / f"{split}.yaml", world)
    return {token: loader[token].future_trajectory().poses.tolist() for token in loader.tokens}


def _rename_split(splits: Path, source: str, name: str) -> None:
    """Copy split ``source`` (and its scene filter) as ``name``: a NAVSIM-named split of the stand-in world."""
    for folder in (splits, splits / "scene_filter"):
        text = (folder / f"{source}.yaml").read_text().replace(source, name)
        (folder / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh-clone-like folder and the environment the commands run in (see the module docstring)."""
    from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
    from navsim_eval.synthetic.two_stage import TwoStageConfig, write_two_stage_split
    from navsim_eval.synthetic.world import WorldConfig, generate_world

    top = tmp_path_factory.mktemp("docs")
    clone = top / "clone"
    clone.mkdir()
    (top / "shared").symlink_to(ROOT.parent / "shared")
    for name in ("configs", "launch", "scripts"):
        (clone / name).symlink_to(ROOT / name)
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    _wrapper(bin_dir / "vla-drive", "vla_drive.cli")
    _wrapper(bin_dir / "navsim-eval", "navsim_eval")

    # NAVSIM data stands in as a one-log world with NAVSIM-named splits
    navsim = top / "navsim_data"
    generate_world(navsim, WorldConfig(num_logs=1, frames_per_log=32))
    splits = navsim / "splits"
    _rename_split(splits, "synthetic_test", "navtest")
    _rename_split(splits, "synthetic_train", "navtrain")
    write_two_stage_split(navsim, TwoStageConfig(name="navhard_two_stage"))
    devkit_splits = top / "navsim_devkit" / "navsim" / "planning" / "script" / "config" / "common"
    devkit_splits.mkdir(parents=True)
    (devkit_splits / "train_test_split").symlink_to(splits)
    futures = _logged_futures(navsim, "navtest")
    for name in ("predictions.json", "seed0.json", "seed1.json", "seed2.json"):
        (clone / name).write_text(json.dumps(futures))
    shutil.copy(navsim / "navhard_two_stage_human.json", clone / "plans.json")

    # conformance scenes as scene JSON files, and their agent trajectories
    scenes = clone / "SCENES_DIR"
    scenes.mkdir()
    preds = {}
    for path in case_paths(default_conformance_dir())[:3]:
        shutil.copy(path, scenes / path.name)
        preds[path.stem] = load_case(path).agent_trajectory.tolist()
    (clone / "preds.json").write_text(json.dumps(preds))

    (clone / "hosts").write_text("localhost slots=1\n")
    (clone / "runs" / "navsim-dipole").mkdir(parents=True)
    (clone / "runs" / "navsim-dipole" / "model").symlink_to(clone / "runs" / "demo" / "dipole" / "model")
    (clone / "M").symlink_to(clone / "runs" / "demo" / "dipole" / "model")

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENSCENE", "NUPLAN", "NAVSIM", "PYTEST", "SLURM", "LOCAL_RANK", "RANK", "WORLD_SIZE"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        OPENSCENE_DATA_ROOT=str(navsim),
        NUPLAN_MAPS_ROOT=str(navsim / "maps"),
        NAVSIM_DEVKIT_ROOT=str(top / "navsim_devkit"),
        NAVSIM_EXP_ROOT=str(top / "exp"),
        SPLITS=str(splits),
        LAUNCH_DRY_RUN="1",
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
    )
    return clone, env


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS, ids=[r.places[0].where for r in RUNS])
def test_documented_command_runs(run: Run, sandbox):
    clone, env = sandbox
    rule = shrink_rule(run.text)
    done = subprocess.run(
        ["bash", "-c", f"set -e\n{run.text}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    output = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0 and "Traceback" not in output, (
        f"{run.where}: the documented command failed (exit {done.returncode})\n"
        f"  documented: {run.places[0].text}\n  ran ({rule.why}): {run.text}\n--- output (tail) ---\n{output}"
    )
