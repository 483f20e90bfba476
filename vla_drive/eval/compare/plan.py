"""What a comparison runs: the algorithms (and variants such as ``fpo+dipod``), the seeds, the world, the equal
budget every algorithm gets and the equal-sized knob grids; read from a compare preset (``configs/compare/*.yaml``)
and the command line, and split into (algorithm, seed) runs that shards share out.

A preset is plain YAML::

    algorithms: [dipole, awr, fpo]      # RL algorithms; imitation is always run (the start and the baseline)
    seeds: [0, 1]
    world_logs: null                    # N: a small world of N logs per seed (split by log only)
    world_split_logs: [10, 4, 6]        # the proving ground with these train / val / test logs (null: its default)
    imitation_config: demo-imitation    # the experiment preset of every imitation start
    rl_config: demo-{algorithm}         # the experiment preset of every RL run
    overrides: [key.sub=value, ...]     # both stages
    imitation_overrides: [...]
    rl_overrides: [...]
    budget: {imitation_steps: 300, iterations: 12, scenes_per_iteration: 4, samples_per_scene: 4,
             rollout_steps: 5, eval_every_iterations: 4, sample_steps: 5, val_scenes: 32, test_scenes: null}
    knobs: {omegas: [0, 1, 3], temperatures: [0, 0.5, 1]}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from vla_drive.algorithms.registry import ALGORITHMS

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs" / "compare"
IMITATION = "imitation"
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fpo+dipod": ("fpo", ("algorithm.dipod_lambda=0.05",)),
    "diffgrpo+dipod": ("diffgrpo", ("algorithm.dipod_lambda=0.05",)),
}


class CompareError(ValueError):
    """A comparison that cannot run as asked (a preset, a name, a budget): one line naming what and why."""


@dataclass(frozen=True)
class Budget:
    """What every algorithm gets alike: rollouts (scenes x K x iterations), sampler steps, the imitation start, the
    validation cadence and the evaluation's denoising steps and scenes."""

    imitation_steps: int = 300
    iterations: int = 12
    scenes_per_iteration: int = 4
    samples_per_scene: int = 4
    rollout_steps: int = 5
    eval_every_iterations: int = 4
    sample_steps: int = 5  # denoising steps of every evaluation (the knob grids run at these)
    val_scenes: int | None = 32  # the first N scenes of synthetic_val (None = all)
    test_scenes: int | None = None  # None = every scene of synthetic_test

    @property
    def rollouts(self) -> int:
        return self.iterations * self.scenes_per_iteration * self.samples_per_scene


@dataclass(frozen=True)
class Knobs:
    """The inference knob grids: omega for DIPOLE, the sampler temperature for every other policy (equal sizes); the
    one sampler temperature DIPOLE's omegas are tried at (0: the noise-free guided plan, chosen on validation over
    1, a sample as trained; docs/training.md); and how many values past its top a grid may grow by while its best
    value is its largest (the same rule for every policy, so a chosen knob is never just the edge of what was tried)."""

    omegas: tuple[float, ...] = (0.0, 1.0, 3.0)
    temperatures: tuple[float, ...] = (0.0, 0.5, 1.0)
    omega_temperature: float = 0.0
    widen: int = 2


@dataclass(frozen=True)
class Algorithm:
    """One compared policy: its label (``fpo+dipod``), registry name and the overrides that make the variant."""

    label: str
    name: str
    overrides: tuple[str, ...] = ()

    @property
    def head_kind(self) -> str:
        return ALGORITHMS[self.name].config_class.head_kind


@dataclass(frozen=True)
class Run:
    """One (algorithm, seed) run: a folder of its own."""

    algorithm: Algorithm
    seed: int

    @property
    def key(self) -> str:
        return f"{self.algorithm.label}/seed{self.seed}"


@dataclass(frozen=True)
class ComparePlan:
    """A whole comparison (see the module doc)."""

    out: Path
    algorithms: tuple[str, ...] = ("dipole",)
    seeds: tuple[int, ...] = (0,)
    world: Path | None = None  # one world for every seed; None = <out>/worlds/seed<k>, world seed = k
    world_logs: int | None = None  # a small world of N logs per seed (split by log only); None: the proving ground
    world_split_logs: tuple[int, int, int] | None = None  # the proving ground's train / val / test logs (None: default)
    imitation_config: str = "demo-imitation"
    rl_config: str = "demo-{algorithm}"
    overrides: tuple[str, ...] = ()
    imitation_overrides: tuple[str, ...] = ()
    rl_overrides: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    knobs: Knobs = field(default_factory=Knobs)
    eval_seed: int = 1000  # the sampling seed of every evaluation (one for all: paired)
    eval_batch_size: int = 16
    workers: int = 1  # metric-cache processes

    def resolved(self) -> tuple[list[Algorithm], list[str]]:
        """The compared policies, imitation first, and one line per name that is no algorithm."""
        found, problems = [Algorithm(IMITATION, "bc")], []
        for label in dict.fromkeys(self.algorithms):
            algorithm = algorithm_of(label)
            if algorithm is None:
                known = ", ".join([*(n for n, c in ALGORITHMS.items() if c.uses_rollouts), *VARIANTS])
                problems.append(f"unknown algorithm {label!r}; expected one of {known}")
            elif label != IMITATION:
                found.append(algorithm)
        return found, problems

    def runs(self) -> list[Run]:
        """Every (algorithm, seed) run, seed by seed."""
        algorithms, _ = self.resolved()
        return [Run(algorithm, seed) for seed in self.seeds for algorithm in algorithms]

    def world_of(self, seed: int) -> Path:
        return self.world if self.world is not None else self.out / "worlds" / f"seed{seed}"

    def world_seed(self, seed: int) -> int | None:
        """The seed the world of run seed ``seed`` was generated with (None: a given world)."""
        return None if self.world is not None else seed


def algorithm_of(label: str) -> Algorithm | None:
    """The policy a label names (a registry name, ``imitation``, or a variant); None for an unknown one."""
    if label == IMITATION:
        return Algorithm(IMITATION, "bc")
    if label in VARIANTS:
        name, overrides = VARIANTS[label]
        return Algorithm(label, name, overrides)
    cls = ALGORITHMS.get(label)
    if cls is None or not cls.uses_rollouts:
        return None
    return Algorithm(label, label)


def shard_runs(runs: Sequence[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs of shard ``(i, n)``: run r goes to shard r mod n (the ``--shard i/n`` convention of eval)."""
    if shard is None:
        return list(runs)
    index, count = shard
    if not 0 <= index < count:
        raise CompareError(f"--shard {index}/{count}: expected 0 <= i < n")
    return list(runs)[index::count]


def preset_file(name: str) -> Path:
    """The YAML of a compare preset: a path, or a name in configs/compare/."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or os.sep in name:
        if not path.is_file():
            raise CompareError(f"compare preset {name}: no such file")
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise CompareError(f"unknown compare preset {name!r}; presets: {known}")
    return path


def load_plan(
    preset: str | None,
    out: str | os.PathLike[str],
    *,
    algorithms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    world: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
) -> ComparePlan:
    """The plan of a preset (or the defaults) with the command line on top. Overrides ``budget.<field>=N`` and
    ``knobs.<field>=a,b,c`` change the plan; every other ``key.sub=value`` goes to both stages' configs."""
    data: dict[str, Any] = {}
    source = "the defaults"
    if preset:
        path = preset_file(preset)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise CompareError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(data, Mapping):
            raise CompareError(f"{path}: expected a mapping of plan fields")
    plan = with_overrides(_plan_from(dict(data), Path(out), source), overrides)
    if algorithms:
        plan = replace(plan, algorithms=tuple(algorithms))
    if seeds:
        plan = replace(plan, seeds=tuple(int(s) for s in seeds))
    if world:
        plan = replace(plan, world=Path(world))
    check_plan(plan)
    return plan


def with_overrides(plan: ComparePlan, overrides: Sequence[str]) -> ComparePlan:
    """``plan`` with command-line overrides on top: ``budget.<field>=N`` and ``knobs.<field>=a,b,c`` change the plan,
    every other ``key.sub=value`` joins ``overrides`` (both stages' configs). Not checked: :func:`check_plan` is."""
    experiment = []
    budget, knobs = plan.budget, plan.knobs
    for text in overrides:
        key, _, value = text.partition("=")
        section, _, name = key.partition(".")
        if section == "budget":
            budget = _set(budget, name, value, f"override {text!r}")
        elif section == "knobs":
            knobs = _set(knobs, name, value, f"override {text!r}")
        else:
            experiment.append(text)
    return replace(plan, budget=budget, knobs=knobs, overrides=(*plan.overrides, *experiment))


def check_plan(plan: ComparePlan) -> None:
    """Equal-sized knob grids and a sane budget, or a CompareError naming the field."""
    if len(plan.knobs.omegas) != len(plan.knobs.temperatures):
        raise CompareError(
            f"knobs: every policy tunes an equal-sized grid; omegas has {len(plan.knobs.omegas)} values, "
            f"temperatures {len(plan.knobs.temperatures)}"
        )
    if any(not (t >= 0 and math.isfinite(t)) for t in plan.knobs.temperatures):
        raise CompareError(f"knobs.temperatures: expected finite numbers >= 0, got {list(plan.knobs.temperatures)}")
    if not (plan.knobs.omega_temperature >= 0 and math.isfinite(plan.knobs.omega_temperature)):
        raise CompareError(
            f"knobs.omega_temperature: expected a finite number >= 0, got {plan.knobs.omega_temperature}"
        )
    if plan.knobs.widen < 0:
        raise CompareError(f"knobs.widen: expected an integer >= 0, got {plan.knobs.widen}")
    for name in ("imitation_steps", "iterations", "scenes_per_iteration", "samples_per_scene", "rollout_steps"):
        if getattr(plan.budget, name) < 1:
            raise CompareError(f"budget.{name}: expected >= 1, got {getattr(plan.budget, name)}")
    if not plan.seeds:
        raise CompareError("seeds: expected at least one")


def _plan_from(data: dict[str, Any], out: Path, source: str) -> ComparePlan:
    known = {f.name for f in fields(ComparePlan)} - {"out"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CompareError(f"{source}: unknown plan field(s) {unknown}; expected some of {sorted(known)}")
    budget = _dataclass_from(Budget, data.pop("budget", None) or {}, f"{source}: budget")
    knobs = _dataclass_from(Knobs, data.pop("knobs", None) or {}, f"{source}: knobs")
    for name in ("algorithms", "seeds", "overrides", "imitation_overrides", "rl_overrides", "world_split_logs"):
        if name in data:
            value = data[name]
            if value is None and name == "world_split_logs":
                continue
            if not isinstance(value, list):
                raise CompareError(f"{source}: {name}: expected a list, got {value!r}")
            data[name] = tuple(value)
    if data.get("world"):
        data["world"] = Path(data["world"])
    return ComparePlan(out=out, budget=budget, knobs=knobs, **data)


def _dataclass_from(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise CompareError(f"{where}: expected a mapping, got {data!r}")
    value = cls()
    for name, item in data.items():
        value = _set(value, name, item, where)
    return value


def _set(value: Any, name: str, raw: Any, where: str) -> Any:
    """``value`` with field ``name`` set from ``raw`` (a YAML value or command-line text), type-checked."""
    types = {f.name: f.type for f in fields(value)}
    if name not in types:
        raise CompareError(f"{where}: unknown field {name!r}; expected one of {sorted(types)}")
    current = getattr(value, name)
    try:
        if isinstance(current, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            parsed: Any = tuple(float(item) for item in items)
        elif raw in (None, "null", "none", "None") and "None" in str(types[name]):
            parsed = None
        elif isinstance(current, float):
            parsed = float(raw)
        else:
            parsed = int(raw)
    except (TypeError, ValueError):
        expected = (
            "a list of numbers"
            if isinstance(current, tuple)
            else "a number"
            if isinstance(current, float)
            else "an integer"
        )
        raise CompareError(f"{where}: {name}: expected {expected}, got {raw!r}") from None
    return replace(value, **{name: parsed})
