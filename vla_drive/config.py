"""Typed experiment configuration: one dataclass per concern, composed into :class:`ExperimentConfig`.

Configs come from YAML files (``configs/*.yaml``) or named presets (:data:`PRESETS`), with command-line overrides
``key.sub=value``; every value is validated before any model is built, and errors name the file, the field and what
was expected. The resolved config and the package versions are saved in every run directory.

Paths inside a config (data, splits, checkpoints, DeepSpeed JSON) are relative to the working directory of the run
and may use environment variables (``${NAVSIM_DEVKIT_ROOT}/...``); only ``base:`` is relative to the YAML file that
names it. YAML is read with YAML 1.2 scalars: ``no`` / ``off`` stay strings and ``3e-4`` is a number.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from navsim_eval.atomic import atomic_write_text
from navsim_eval.data.openscene import CAMERA_NAMES
from vla_drive.model.backbone import TRAINABLE_MODES, LoraSettings
from vla_drive.model.head import HeadConfig
from vla_drive.model.types import EGO_STATUS_DIM, POSE_DIM, TRAJECTORY_POSES


@dataclass
class DataConfig:
    """Which scenes to train and validate on (real NAVSIM data or the synthetic world)."""

    data_root: str = ""  # OpenScene root (navsim_logs/, sensor_blobs/); "" = $OPENSCENE_DATA_ROOT
    maps_root: str = ""  # nuPlan maps root; "" = $NUPLAN_MAPS_ROOT
    train_split: str = ""  # a NAVSIM split file (<name>.yaml next to scene_filter/)
    val_split: str = ""  # split file for periodic PDMS evaluation ("" = none)
    cameras: tuple[str, ...] = ("CAM_F0",)
    include_history: bool = False
    max_train_scenes: int | None = None
    max_val_scenes: int | None = 64
    num_workers: int = 0  # DataLoader workers
    synthetic_world: str = ""  # generate the synthetic world here when the splits do not exist yet ("" = never)
    synthetic_logs: int = 4
    synthetic_seed: int = 0
    metric_cache: str = ""  # metric-cache store for PDM rewards and evaluation ("" = the trainer builds its own)


@dataclass
class ModelConfig:
    """The backbone and how it trains; the head has its own section."""

    backbone: str = "tiny-qwen2.5-vl"  # preset, hub id or directory
    trainable: str = "frozen"  # frozen | lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)
    hidden_layers: tuple[int, ...] = (-1,)
    gradient_checkpointing: bool = False
    init_from: str = ""  # a DrivingVLA directory to start from (e.g. the imitation model before RL)


@dataclass
class AlgorithmConfig:
    """The training objective: ``bc`` (imitation) or an RL algorithm (``dipole``, ...)."""

    name: str = "bc"
    # RL rollouts
    samples_per_scene: int = 8
    rollout_steps: int = 10
    rollout_omega: float = 0.0
    stochastic: bool = False
    update_epochs: int = 1
    beta: float = 1.0  # DIPOLE temperature of sigmoid(beta * G)
    score_version: str = "v1"  # v1 (PDMS) or v2 (EPDMS)
    progress_weight: float = 5.0  # PDM score weight of ego progress (5 = official)
    replay_iterations: int = 0  # reuse rollouts of this many past iterations (0 = none)
    include_logged: bool = False  # the logged human trajectory joins each scene's group (anchors RL to the data)


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints and logging."""

    output_dir: str = "runs/experiment"
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8  # per rank, per micro-step
    grad_accumulation: int = 1
    learning_rate: float = 3e-4
    backbone_learning_rate: float | None = None  # None = learning_rate
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 50
    lr_schedule: str = "cosine"  # constant | linear | cosine
    mixed_precision: str = "no"  # no | bf16
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 200
    log_every: int = 10
    loggers: tuple[str, ...] = ("jsonl", "tensorboard")  # + "wandb"
    wandb_project: str = "vla-drive"
    resume: str = "auto"  # auto (latest checkpoint in output_dir) | never | <checkpoint dir>
    feature_cache: str = ""  # frozen backbone: cache condition tokens here ("" = off)


@dataclass
class DistributedConfig:
    """How to shard: no DeepSpeed (one process or DDP) or DeepSpeed ZeRO stage 2 / 3."""

    backend: str = "none"  # none | deepspeed
    zero_stage: int = 2
    deepspeed_config: str = ""  # a DeepSpeed JSON (configs/deepspeed/zero2.json, ...); "" = generated from this
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass
class EvalConfig:
    """Evaluation and guidance sweeps."""

    score_version: str = "v1"
    sample_steps: int = 10
    omega: float | None = None  # None = the model's chosen omega
    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
    seed: int = 0
    workers: int = 0  # scoring processes (0 = automatic)


@dataclass
class ExperimentConfig:
    """One experiment: every section, plus a name."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=lambda: HeadConfig(hidden_size=128, depth=4, num_heads=4, cond_dim=64))
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ------------------------------------------------------------------------------------------------ vocabularies

ALGORITHMS: tuple[str, ...] = ("bc", "dipole", "diffgrpo", "dppo", "fpo", "genpo", "awr")
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")
MIXED_PRECISIONS: tuple[str, ...] = ("no", "bf16")
BACKENDS: tuple[str, ...] = ("none", "deepspeed")
ZERO_STAGES: tuple[int, ...] = (0, 1, 2, 3)
SCORE_VERSIONS: tuple[str, ...] = ("v1", "v2")
LOGGERS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb")
RESUME_MODES: tuple[str, ...] = ("auto", "never")  # or a checkpoint directory
DATA_ROOT_ENV, MAPS_ROOT_ENV = "OPENSCENE_DATA_ROOT", "NUPLAN_MAPS_ROOT"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the YAML twins of the presets (source checkouts)
CONFIG_FILE, VERSIONS_FILE = "config.yaml", "versions.json"  # written into every run directory


class ConfigError(ValueError):
    """A config that cannot be used: every problem names where it came from, the field and what was expected."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class UnknownPresetError(ConfigError, KeyError):
    """A preset name that is not in :data:`PRESETS`."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


# ------------------------------------------------------------------------------------------------ YAML


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans and floats (``no`` is a string, ``3e-4`` a float)."""


_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_Loader.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists: ``cameras: [CAM_F0, CAM_L0]``; quotes every string either YAML reads otherwise."""


_Dumper.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))  # so the string "3e-4" is quoted

_Dumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)
)


def _yaml_load(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None


# ------------------------------------------------------------------------------------------------ problems


def _show(value: Any) -> str:
    """A value as the user wrote it: YAML spelling for null and booleans, quotes for strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class _Problems:
    """Problems collected while reading a config, each attributed to the file or override that set the field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.origins: dict[str, str] = {}  # field path -> the file / override / preset that set it
        self.items: list[str] = []

    def set_origin(self, path: str, source: str) -> None:
        self.origins.pop(path, None)  # keep the dict in order of the latest setting
        self.origins[path] = source

    def origin(self, path: str) -> str:
        """Who set ``path`` (or its section); for a section, whoever set one of its fields last."""
        prefix = f"{path}."
        for key in reversed(self.origins):
            if key.startswith(prefix):
                return self.origins[key]
        while path:
            if path in self.origins:
                return self.origins[path]
            path = path.rpartition(".")[0]
        return self.source

    def add(self, path: str, message: str) -> None:
        where = self.origin(path.split("[")[0])
        self.items.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    def expected(self, path: str, expected: str, value: Any, hint: str = "") -> None:
        self.add(path, f"expected {expected}, got {_show(value)}{hint}")

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise ConfigError(self.items[0], self.items)
        if self.items:
            raise ConfigError(f"{len(self.items)} problems:\n  " + "\n  ".join(self.items), self.items)


# ------------------------------------------------------------------------------------------------ schema


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _schema(cls: type = ExperimentConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, type) of every section and field, depth first."""
    for name, hint in _hints(cls).items():
        yield f"{prefix}{name}", hint
        if is_dataclass(hint):
            yield from _schema(hint, f"{prefix}{name}.")


_LEAF_TYPES: dict[str, Any] = {path: hint for path, hint in _schema() if not is_dataclass(hint)}
_SECTION_PATHS: tuple[str, ...] = tuple(path for path, hint in _schema() if is_dataclass(hint))


def _unknown_hint(path: str) -> str:
    """Suggest the closest known field: a sibling first, then a field of the same name elsewhere, then any path."""
    parent, _, name = path.rpartition(".")
    siblings = [p.rpartition(".")[2] for p in (*_LEAF_TYPES, *_SECTION_PATHS) if p and p.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(name, siblings, n=3, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(repr(f'{parent}.{c}' if parent else c) for c in close)}?"
    same = [p for p in _LEAF_TYPES if p.rpartition(".")[2] == name]
    close = same or difflib.get_close_matches(path, list(_LEAF_TYPES), n=3, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    known = ", ".join(sorted(siblings))
    return f"; expected one of {known}" if known else ""


def _describe(hint: Any) -> str:
    """What a type expects, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        item = _describe(args[0])
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(item, item)
        return f"a list of {plural}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else ""
        )
    return str(hint)


class _Invalid(Exception):
    """A value that does not fit a type (internal: turned into a problem naming the field)."""


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (tuples from lists, ints as floats), or raise :class:`_Invalid`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except _Invalid:
                continue
        raise _Invalid
    if origin is typing.Literal:
        if isinstance(value, str) and value in args:
            return value
        raise _Invalid
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Invalid
        return tuple(_coerce(item, args[0]) for item in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Invalid
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Invalid
    raise TypeError(f"config field type {hint!r} is not supported")


def _coerce_leaf(path: str, value: Any, problems: _Problems) -> Any:
    """Coerce one field and check its rule; records a problem and returns ``_MISSING`` when it does not fit."""
    hint = _LEAF_TYPES[path]
    try:
        value = _coerce(value, hint)
    except _Invalid:
        if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
            for index, item in enumerate(value):  # name the first bad item
                try:
                    _coerce(item, typing.get_args(hint)[0])
                except _Invalid:
                    problems.expected(f"{path}[{index}]", _describe(typing.get_args(hint)[0]), item)
                    return _MISSING
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()
        hint_text = _did_you_mean(value, choices) if isinstance(value, str) else ""
        if hint is float and isinstance(value, float):
            problems.expected(path, "a finite number", value)
        else:
            problems.expected(path, _describe(hint), value, hint_text)
        return _MISSING
    rule = _RULES.get(path)
    if rule is not None and not rule(path, value, problems):
        return _MISSING
    return value


_MISSING = object()


# ------------------------------------------------------------------------------------------------ field rules

_Rule = Callable[[str, Any, _Problems], bool]


def _one_of(options: Sequence[Any]) -> _Rule:
    def rule(path: str, value: Any, problems: _Problems) -> bool:
        if value in options and type(value) is type(options[0]):
            return True
        hint = _did_you_mean(value, [str(o) for o in options]) if isinstance(value, str) else ""
        problems.expected(path, "one of " + ", ".join(str(o) for o in options), value, hint)
        return False

    return rule


def _at_least(bound: float, strict: bool = False, optional: bool = False) -> _Rule:
    def rule(path: str, value: Any, problems: _Problems) -> bool:
        if value is None or (value > bound if strict else value >= bound):
            return True
        kind = "an integer" if isinstance(value, int) else "a number"
        problems.expected(path, f"{kind} {'>' if strict else '>='} {bound}" + (" or null" if optional else ""), value)
        return False

    return rule


def _fraction(path: str, value: Any, problems: _Problems) -> bool:
    if 0.0 <= value < 1.0:
        return True
    problems.expected(path, "a number in [0, 1)", value)
    return False


def _nonempty(path: str, value: Any, problems: _Problems) -> bool:
    if len(value):
        return True
    problems.expected(path, "a non-empty string" if isinstance(value, str) else "a non-empty list", value)
    return False


def _items(options: Sequence[str], allow_empty: bool = False) -> _Rule:
    """A list whose items come from ``options``, without repeats."""

    def rule(path: str, value: tuple[str, ...], problems: _Problems) -> bool:
        if not value and not allow_empty:
            problems.expected(path, "a non-empty list of " + ", ".join(options), value)
            return False
        for index, item in enumerate(value):
            if item not in options:
                problems.expected(
                    f"{path}[{index}]", "one of " + ", ".join(options), item, _did_you_mean(item, options)
                )
                return False
        if len(set(value)) != len(value):
            problems.expected(path, "no repeated entries", value)
            return False
        return True

    return rule


def _each(rule: _Rule, nonempty: bool = True) -> _Rule:
    def check(path: str, value: tuple[Any, ...], problems: _Problems) -> bool:
        if nonempty and not _nonempty(path, value, problems):
            return False
        return all(rule(f"{path}[{i}]", item, problems) for i, item in enumerate(value))

    return check


def _fixed(expected: int, why: str) -> _Rule:
    def rule(path: str, value: Any, problems: _Problems) -> bool:
        if value == expected:
            return True
        problems.expected(path, f"{expected} ({why})", value)
        return False

    return rule


def _lora_targets(path: str, value: Any, problems: _Problems) -> bool:
    if isinstance(value, tuple) and not value:
        problems.expected(path, "a regex, a non-empty list of module names or null", value)
        return False
    return True


_RULES: dict[str, _Rule] = {
    "name": _nonempty,
    "data.cameras": _items(CAMERA_NAMES),
    "data.max_train_scenes": _at_least(1, optional=True),
    "data.max_val_scenes": _at_least(1, optional=True),
    "data.num_workers": _at_least(0),
    "data.synthetic_logs": _at_least(1),
    "data.synthetic_seed": _at_least(0),
    "model.backbone": _nonempty,
    "model.trainable": _one_of(TRAINABLE_MODES),
    "model.hidden_layers": _nonempty,
    "model.lora.r": _at_least(1),
    "model.lora.alpha": _at_least(0, strict=True),
    "model.lora.dropout": _fraction,
    "model.lora.target_modules": _lora_targets,
    "head.hidden_size": _at_least(1),
    "head.depth": _at_least(1),
    "head.num_heads": _at_least(1),
    "head.mlp_ratio": _at_least(0, strict=True),
    "head.cond_dim": _at_least(1),
    "head.ego_dim": _fixed(EGO_STATUS_DIM, "the dataset's ego-status vector"),
    "head.poses": _fixed(TRAJECTORY_POSES, "NAVSIM trajectories: 8 poses at 0.5 s"),
    "head.pose_dim": _fixed(POSE_DIM, "x, y, heading"),
    "head.time_freq_dim": _at_least(2),
    "head.sample_steps": _at_least(1),
    "head.lora_alpha": _at_least(0, strict=True),
    "head.ddim_eta": _at_least(0),
    "head.clip_x0": _at_least(0, strict=True, optional=True),
    "head.t_min": _fraction,
    "algorithm.name": _one_of(ALGORITHMS),
    "algorithm.samples_per_scene": _at_least(1),
    "algorithm.rollout_steps": _at_least(1),
    "algorithm.rollout_omega": _at_least(0),
    "algorithm.update_epochs": _at_least(1),
    "algorithm.beta": _at_least(0, strict=True),
    "algorithm.score_version": _one_of(SCORE_VERSIONS),
    "algorithm.progress_weight": _at_least(0),
    "algorithm.replay_iterations": _at_least(0),
    "train.output_dir": _nonempty,
    "train.seed": _at_least(0),
    "train.max_steps": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.grad_accumulation": _at_least(1),
    "train.learning_rate": _at_least(0, strict=True),
    "train.backbone_learning_rate": _at_least(0, strict=True, optional=True),
    "train.weight_decay": _at_least(0),
    "train.max_grad_norm": _at_least(0),  # 0 = no clipping
    "train.warmup_steps": _at_least(0),
    "train.lr_schedule": _one_of(LR_SCHEDULES),
    "train.mixed_precision": _one_of(MIXED_PRECISIONS),
    "train.checkpoint_every": _at_least(1),
    "train.keep_checkpoints": _at_least(1),
    "train.eval_every": _at_least(1),
    "train.log_every": _at_least(1),
    "train.loggers": _items(LOGGERS, allow_empty=True),
    "train.resume": _nonempty,
    "distributed.backend": _one_of(BACKENDS),
    "distributed.zero_stage": _one_of(ZERO_STAGES),
    "eval.score_version": _one_of(SCORE_VERSIONS),
    "eval.sample_steps": _at_least(1),
    "eval.omega": _at_least(0, optional=True),
    "eval.omegas": _each(_at_least(0)),
    "eval.seed": _at_least(0),
    "eval.workers": _at_least(0),
}


def _cross_checks(config: ExperimentConfig, problems: _Problems) -> None:
    """Rules between fields (each problem is attributed to the first field it names)."""
    train, dist, model = config.train, config.distributed, config.model
    if train.warmup_steps >= train.max_steps:
        problems.add(
            "train.warmup_steps",
            f"expected fewer than train.max_steps ({train.max_steps}), got {train.warmup_steps}",
        )
    if train.feature_cache and model.trainable != "frozen":
        problems.add(
            "train.feature_cache",
            f"needs model.trainable 'frozen' (a training backbone changes its features), got {model.trainable!r}",
        )
    if "wandb" in train.loggers and not train.wandb_project:
        problems.add("train.wandb_project", "expected a project name when train.loggers has wandb, got ''")
    if dist.backend != "deepspeed":
        for name in ("deepspeed_config", "offload_optimizer", "offload_params"):
            if getattr(dist, name):
                problems.add(f"distributed.{name}", f"needs distributed.backend 'deepspeed', got {dist.backend!r}")
    else:
        if dist.offload_params and dist.zero_stage != 3:
            problems.add("distributed.offload_params", f"needs distributed.zero_stage 3, got {dist.zero_stage}")
        if dist.offload_optimizer and dist.zero_stage == 0:
            problems.add("distributed.offload_optimizer", "needs distributed.zero_stage 1, 2 or 3, got 0")
    if config.algorithm.name == "dipole" and not {"pos", "neg"} <= set(config.head.branches):
        problems.add(
            "head.branches",
            f"algorithm 'dipole' trains the pos and neg branches; expected both, got {_show(config.head.branches)}",
        )


# ------------------------------------------------------------------------------------------------ dict in and out


def _plain(value: Any) -> Any:
    """JSON/YAML-ready values: sections through their own ``to_dict`` where they have one, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        data = value.to_dict() if hasattr(value, "to_dict") else {f.name: getattr(value, f.name) for f in fields(value)}
        return {key: _plain(item) for key, item in data.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as nested plain values (what ``config.yaml`` holds)."""
    return _plain(config)


def _merge(tree: dict[str, Any], data: Any, prefix: str, source: str, problems: _Problems) -> None:
    """Merge ``data`` into the config tree ``tree`` at ``prefix``, rejecting unknown keys; records who set what."""
    if not isinstance(data, Mapping):
        section = prefix.rstrip(".") or "the config"
        problems.add(prefix.rstrip("."), f"expected a mapping of {section} settings, got {_show(data)}")
        return
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or key not in tree:
            problems.set_origin(path, source)
            problems.add(path, "unknown field" + _unknown_hint(str(path)))
            continue
        if isinstance(tree[key], dict):
            _merge(tree[key], value, f"{path}.", source, problems)
        else:
            tree[key] = value
            problems.set_origin(path, source)


def _build(cls: type, tree: Mapping[str, Any], prefix: str, problems: _Problems) -> Any:
    """Build the dataclass ``cls`` from a complete tree; returns ``_MISSING`` after recording its problems."""
    values: dict[str, Any] = {}
    ok = True
    for name, hint in _hints(cls).items():
        path = f"{prefix}{name}"
        value = (
            _build(hint, tree[name], f"{path}.", problems)
            if is_dataclass(hint)
            else _coerce_leaf(path, tree[name], problems)
        )
        ok = ok and value is not _MISSING
        values[name] = value
    if not ok:
        return _MISSING
    try:
        if hasattr(cls, "from_dict"):  # LoraSettings, HeadConfig: their own reader and checks
            return cls.from_dict({k: _plain(v) for k, v in values.items()})
        return cls(**values)
    except (TypeError, ValueError) as error:
        problems.add(prefix.rstrip("."), str(error))
        return _MISSING


def _finish(tree: dict[str, Any], problems: _Problems) -> ExperimentConfig:
    config = _build(ExperimentConfig, tree, "", problems)
    if config is not _MISSING:
        _cross_checks(config, problems)
    problems.raise_if_any()
    return config


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """A validated config from nested plain values; missing fields keep their defaults, ``base`` inherits."""
    problems = _Problems(source)
    tree = _layer(data, source, Path.cwd(), problems, ())
    return _finish(tree, problems)


def validate_config(config: ExperimentConfig, source: str = "<config>") -> None:
    """Check a config built in code (types, enumerations, ranges, rules between fields); raises :class:`ConfigError`."""
    problems = _Problems(source)
    tree = config_to_dict(ExperimentConfig())
    _merge(tree, config_to_dict(config), "", source, problems)
    _finish(tree, problems)


# ------------------------------------------------------------------------------------------------ files and bases


def _read_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file{_file_hint(path)}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror or error})") from None
    return _yaml_load(text, str(path))


def _file_hint(path: Path) -> str:
    names = [*PRESETS, *(p.name for p in sorted(CONFIG_DIR.glob("*.yaml")))]
    hint = _did_you_mean(path.name, names)
    return hint or f"; presets: {', '.join(PRESETS)}"


def _looks_like_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name


def _layer(data: Any, source: str, base_dir: Path, problems: _Problems, chain: tuple[str, ...]) -> dict[str, Any]:
    """The config tree of one YAML document: its ``base`` (a file or preset) with the document merged on top."""
    if isinstance(data, Mapping) and "base" in data:
        data = dict(data)
        base = data.pop("base")
        if not isinstance(base, str) or not base:
            problems.set_origin("base", source)
            problems.expected("base", "a YAML file or a preset name", base)
            tree = config_to_dict(ExperimentConfig())
        elif _looks_like_file(base) or (base not in PRESETS and (base_dir / base).exists()):
            path = (base_dir / os.path.expandvars(base)).expanduser()
            key = str(path.resolve())
            if key in chain:
                raise ConfigError(f"{source}: base: {base!r} includes itself ({' -> '.join(chain)} -> {key})")
            tree = _file_tree(path, problems, (*chain, key))
        elif base in PRESETS:
            tree = config_to_dict(PRESETS[base]())
        else:
            problems.set_origin("base", source)
            problems.add("base", f"no preset or file named {base!r}{_did_you_mean(base, list(PRESETS))}")
            tree = config_to_dict(ExperimentConfig())
    else:
        tree = config_to_dict(ExperimentConfig())
    if data is not None:
        _merge(tree, data, "", source, problems)
    return tree


def _file_tree(path: Path, problems: _Problems, chain: tuple[str, ...]) -> dict[str, Any]:
    return _layer(_read_yaml_file(path), str(path), path.parent, problems, chain)


# ------------------------------------------------------------------------------------------------ overrides


def _override_value(key: str, raw: str) -> Any:
    """The value of an override, read as YAML (null, numbers, lists, mappings); raises ``yaml.YAMLError``."""
    if _LEAF_TYPES.get(key) is not str:
        return yaml.load(raw, Loader=_Loader)
    # a string field takes the text as typed (name=123, resume=./ckpt: x); "" stays "", null is refused later
    try:
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return raw.strip()
    if isinstance(value, str) or (value is None and raw.strip()):
        return value
    return raw.strip()


def _apply_override(tree: dict[str, Any], text: str, problems: _Problems) -> None:
    """Merge one ``key.sub=value`` into the tree; problems name the override."""
    source = f"override {text!r}"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        problems.items.append(f"{source}: expected key.sub=value, e.g. train.max_steps=20")
        return
    try:
        value = _override_value(key, raw)
    except yaml.YAMLError as error:
        problems.items.append(f"{source}: {key}: cannot read {raw!r} as YAML ({getattr(error, 'problem', error)})")
        return
    *parents, leaf = key.split(".")
    wrapped: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        wrapped = {parent: wrapped}
    _merge(tree, wrapped, "", source, problems)


# ------------------------------------------------------------------------------------------------ loading and saving


def load_config(path_or_preset: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The validated config of a YAML file or preset name (None: the defaults) with ``key.sub=value`` overrides.

    Raises :class:`ConfigError` listing every problem, each naming the file or override, the field and what was
    expected; nothing is built and no data path is touched (see :func:`validate_paths`).
    """
    if isinstance(overrides, str):
        raise TypeError("load_config: overrides must be a sequence of 'key=value' strings, not one string")
    if path_or_preset is None:
        problems = _Problems("<defaults>")
        tree = config_to_dict(ExperimentConfig())
    elif isinstance(path_or_preset, str) and path_or_preset in PRESETS and not Path(path_or_preset).is_file():
        problems = _Problems(f"preset {path_or_preset!r}")
        tree = config_to_dict(PRESETS[path_or_preset]())
    elif isinstance(path_or_preset, Path) or _looks_like_file(path_or_preset) or Path(path_or_preset).exists():
        path = Path(path_or_preset)
        problems = _Problems(str(path))
        tree = _file_tree(path, problems, (str(path.resolve()),))
    else:
        raise UnknownPresetError(
            f"no preset or config file named {path_or_preset!r}{_did_you_mean(path_or_preset, list(PRESETS))}; "
            f"presets: {', '.join(PRESETS)}"
        )
    for text in overrides:
        _apply_override(tree, text, problems)
    return _finish(tree, problems)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The YAML text of a config (every field, in declaration order)."""
    return yaml.dump(config_to_dict(config), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the config as YAML (atomically); :func:`load_config` reads it back equal."""
    path = Path(path)
    atomic_write_text(path, "# vla-drive experiment config, resolved (every field)\n" + config_to_yaml(config))
    return path


# ------------------------------------------------------------------------------------------------ paths


@dataclass(frozen=True)
class DataPaths:
    """The data locations of a config, resolved (environment variables and the root fallbacks applied)."""

    data_root: Path
    maps_root: Path
    train_split: Path
    val_split: Path | None


_UNSET_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


def _resolve(path: str, value: str, problems: _Problems, env: str = "") -> Path | None:
    """``value`` with ``$VARS`` and ``~`` expanded ("" falls back to ``$env``); None after recording a problem."""
    if not value:
        if env and os.environ.get(env):
            return Path(os.environ[env]).expanduser()
        problems.add(path, f"not set{f' and ${env} is not set' if env else ''}")
        return None
    expanded = os.path.expandvars(value)
    unset = _UNSET_VAR.search(expanded)
    if unset:
        problems.add(path, f"${unset.group(1).strip('{}')} is not set (in {value!r})")
        return None
    return Path(expanded).expanduser()


def _data_fields(config: ExperimentConfig, problems: _Problems) -> dict[str, Path | None]:
    """Each data path resolved on its own (None where unset or unresolvable, after recording why)."""
    data = config.data
    return {
        "data_root": _resolve("data.data_root", data.data_root, problems, DATA_ROOT_ENV),
        "maps_root": _resolve("data.maps_root", data.maps_root, problems, MAPS_ROOT_ENV),
        "train_split": _resolve("data.train_split", data.train_split, problems),
        "val_split": _resolve("data.val_split", data.val_split, problems) if data.val_split else None,
    }


def data_paths(config: ExperimentConfig) -> DataPaths:
    """Where the data of ``config`` is; raises :class:`ConfigError` for an unset root or environment variable."""
    problems = _Problems(f"config {config.name!r}")
    paths = _data_fields(config, problems)
    problems.raise_if_any()
    return DataPaths(**paths)  # type: ignore[arg-type]


def synthetic_data(world: str | Path, **fields_: Any) -> DataConfig:
    """A DataConfig that generates the synthetic world in ``world`` (if missing) and trains on its splits."""
    world = str(world).rstrip("/") or "."
    return DataConfig(
        data_root=world,
        maps_root=f"{world}/maps",
        train_split=f"{world}/splits/synthetic_train.yaml",
        val_split=f"{world}/splits/synthetic_test.yaml",
        synthetic_world=world,
        **fields_,
    )


def with_synthetic_world(config: ExperimentConfig, world: str | Path) -> ExperimentConfig:
    """The config with every data path moved into the synthetic world ``world`` (e.g. a test's tmp_path)."""
    keep = {name: getattr(config.data, name) for name in ("cameras", "include_history", "max_train_scenes")}
    keep |= {name: getattr(config.data, name) for name in ("max_val_scenes", "num_workers", "metric_cache")}
    keep |= {"synthetic_logs": config.data.synthetic_logs, "synthetic_seed": config.data.synthetic_seed}
    return replace(config, data=synthetic_data(world, **keep))


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def validate_paths(config: ExperimentConfig) -> None:
    """Check that what the config reads exists, before anything is built; raises :class:`ConfigError`.

    Checks the data and maps roots, the split files (and that each parses, names an existing scene filter and a
    ``navsim_logs/<data_split>`` folder), ``model.init_from``, a ``train.resume`` checkpoint, a local
    ``model.backbone`` directory and the DeepSpeed JSON (with :func:`check_deepspeed_file`). With
    ``data.synthetic_world`` set, data paths inside the world may be missing: the world will be generated there.
    """
    from navsim_eval.data.scene_filter import SceneFilterError
    from navsim_eval.data.splits import load_split

    problems = _Problems(f"config {config.name!r}")
    paths = _data_fields(config, problems)
    world = None
    if config.data.synthetic_world:
        world = _resolve("data.synthetic_world", config.data.synthetic_world, problems)

    def missing(path: str, location: Path, kind: str) -> bool:
        """Record a missing file or folder unless the synthetic world will create it."""
        if location.exists():
            return False
        if world is not None and _inside(location, world):
            return True  # generated with the world; nothing more to check
        where = f" (outside data.synthetic_world {str(world)!r}, so generating the world will not create it)"
        problems.add(path, f"{kind} {str(location)!r} does not exist" + (where if world is not None else ""))
        return True

    root = paths["data_root"]
    for name, kind in (("data_root", "folder"), ("maps_root", "folder")):
        if paths[name] is not None:
            missing(f"data.{name}", paths[name], kind)
    for name in ("train_split", "val_split"):
        split = paths[name]
        if split is None or missing(f"data.{name}", split, "split file"):
            continue
        try:
            loaded = load_split(split.parent, split.stem)
        except SceneFilterError as error:
            problems.add(f"data.{name}", str(error))
            continue
        logs = root / "navsim_logs" / loaded.data_split if root is not None else None
        if logs is not None and root.exists() and not logs.is_dir():
            message = f"its data_split {loaded.data_split!r} reads {str(logs)!r}, which does not exist"
            problems.add(f"data.{name}", message)
    checks = [("model.init_from", config.model.init_from, "model directory")]
    if config.train.resume not in RESUME_MODES:
        checks.append(("train.resume", config.train.resume, "checkpoint"))
    if config.model.backbone.startswith(("/", "./", "../", "~", "$")):
        checks.append(("model.backbone", config.model.backbone, "backbone directory"))
    for path, value, kind in checks:
        if value:
            location = _resolve(path, value, problems)
            if location is not None and not location.exists():
                problems.add(path, f"{kind} {str(location)!r} does not exist")
    if config.distributed.deepspeed_config:
        try:
            check_deepspeed_file(config)
        except ConfigError as error:
            problems.items.extend(error.problems)
    problems.raise_if_any()


# ------------------------------------------------------------------------------------------------ DeepSpeed


def deepspeed_dict(config: ExperimentConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config of an experiment (no optimizer block: the trainer passes its own torch optimizer)."""
    if world_size < 1:
        raise ValueError(f"deepspeed_dict: world_size must be >= 1, got {world_size}")
    train, dist = config.train, config.distributed
    zero: dict[str, Any] = {"stage": dist.zero_stage, "contiguous_gradients": True}
    if dist.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if dist.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_pretrained gets whole weights
    return {
        "train_batch_size": train.batch_size * train.grad_accumulation * world_size,
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accumulation,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": train.mixed_precision == "bf16"},
        "steps_per_print": 10**9,  # the trainer logs; keep DeepSpeed quiet
        "wall_clock_breakdown": False,
    }


_NOTHING = object()


def _get(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _NOTHING
        node = node[part]
    return node


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def check_deepspeed_file(config: ExperimentConfig, world_size: int | None = None) -> dict[str, Any] | None:
    """Read ``distributed.deepspeed_config`` and refuse contradictions with the config; None when no file is given.

    Returns the file's dict with ``"auto"`` and missing batch, accumulation, clipping, ZeRO stage, bf16 and
    offload settings filled in from the config (``train_batch_size`` too when ``world_size`` is given), ready for
    ``deepspeed.initialize``.
    """
    name = config.distributed.deepspeed_config
    if not name:
        return None
    problems = _Problems(f"config {config.name!r}")
    path = _resolve("distributed.deepspeed_config", name, problems)
    problems.raise_if_any()
    assert path is not None
    label = f"distributed.deepspeed_config {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file", [f"{label}: no such file"]) from None
    except OSError as error:
        raise ConfigError(f"{label}: cannot read ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{label}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a JSON object, got {type(data).__name__}")

    train, dist = config.train, config.distributed
    wanted = deepspeed_dict(config, world_size or 1)
    offload = {"offload_optimizer": dist.offload_optimizer, "offload_param": dist.offload_params}
    checks: list[tuple[str, str, Any]] = [
        ("train_micro_batch_size_per_gpu", "train.batch_size", train.batch_size),
        ("gradient_accumulation_steps", "train.grad_accumulation", train.grad_accumulation),
        ("gradient_clipping", "train.max_grad_norm", train.max_grad_norm),
        ("zero_optimization.stage", "distributed.zero_stage", dist.zero_stage),
        ("bf16.enabled", "train.mixed_precision", train.mixed_precision == "bf16"),
    ]
    if world_size is not None:
        field_names = "train.batch_size x train.grad_accumulation x world size"
        checks.append(("train_batch_size", field_names, wanted["train_batch_size"]))
    if "optimizer" in data:  # DeepSpeed builds its own optimizer from this block: it must agree too
        checks += [
            ("optimizer.params.lr", "train.learning_rate", train.learning_rate),
            ("optimizer.params.weight_decay", "train.weight_decay", train.weight_decay),
        ]
    resolved = json.loads(json.dumps(data))
    errors: list[str] = []
    for key, field_name, expected in checks:
        if key == "bf16.enabled" and "bf16" not in data and "bfloat16" in data:
            key = "bfloat16.enabled"  # DeepSpeed's older spelling
        value = _get(data, key)
        if value is _NOTHING or value == "auto":
            _set(resolved, key, expected)
        elif not _same(value, expected):
            shown = _show(train.mixed_precision) if field_name == "train.mixed_precision" else _show(expected)
            errors.append(f"{label}: {key!r} is {_show(value)} but {field_name} is {shown}")
    if _get(data, "fp16.enabled") is True:
        errors.append(f"{label}: 'fp16.enabled' is true but train.mixed_precision supports only no and bf16")
    for key, wanted_on in offload.items():
        device = _get(data, f"zero_optimization.{key}.device")
        if device is _NOTHING or device == "auto":
            if wanted_on:
                _set(resolved, f"zero_optimization.{key}", wanted["zero_optimization"][key])
            continue
        if (device not in (None, "none")) != wanted_on:
            field_name = "distributed.offload_optimizer" if key == "offload_optimizer" else "distributed.offload_params"
            errors.append(
                f"{label}: 'zero_optimization.{key}.device' is {_show(device)} but {field_name} is {_show(wanted_on)}"
            )
    if _get(data, "train_batch_size") == "auto" and world_size is None:
        del resolved["train_batch_size"]  # DeepSpeed derives it from the micro batch, accumulation and world size
    if errors:
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{len(errors)} problems:\n  " + "\n  ".join(errors), errors
        )
    return resolved


# ------------------------------------------------------------------------------------------------ presets


def _debug() -> ExperimentConfig:
    """A few steps of a tiny model on a small synthetic world: for tests and smoke runs (seconds on a CPU)."""
    return ExperimentConfig(
        name="debug",
        data=synthetic_data("runs/debug/world", max_train_scenes=16, max_val_scenes=4, synthetic_logs=2),
        model=ModelConfig(backbone="tiny-qwen2.5-vl", trainable="frozen"),
        head=HeadConfig(hidden_size=32, depth=1, num_heads=2, cond_dim=64, sample_steps=4, lora_rank=4, lora_alpha=4.0),
        algorithm=AlgorithmConfig(name="bc", samples_per_scene=4, rollout_steps=4),
        train=TrainConfig(
            output_dir="runs/debug",
            max_steps=4,
            batch_size=2,
            warmup_steps=1,
            checkpoint_every=2,
            eval_every=2,
            log_every=1,
            loggers=("jsonl",),
        ),
        eval=EvalConfig(sample_steps=4, omegas=(0.0, 1.0), workers=1),
    )


def _demo_imitation() -> ExperimentConfig:
    """Imitation on the synthetic world with a small frozen backbone and cached features: minutes on 2 CPU cores."""
    return ExperimentConfig(
        name="demo-imitation",
        data=synthetic_data("runs/demo/world", max_val_scenes=32),
        model=ModelConfig(backbone="small-qwen2.5-vl", trainable="frozen"),
        head=HeadConfig(hidden_size=128, depth=4, num_heads=4, cond_dim=256),
        train=TrainConfig(
            output_dir="runs/demo-imitation",
            max_steps=800,
            batch_size=32,
            learning_rate=3e-4,
            warmup_steps=50,
            checkpoint_every=200,
            eval_every=200,
            log_every=20,
            feature_cache="runs/demo/features",
        ),
        eval=EvalConfig(workers=2),
    )


# What both DIPOLE presets train with: K = 8 deterministic 5-step rollouts per scene from the pos branch
# (omega 0; omega-1 rollouts fed the branches their own extrapolations and ran away within ~100 iterations on the
# synthetic world), beta = 3, and the logged human trajectory in every group (without it the branches drift with
# the bias of few-step samples and PDMS fell from 0.96 to 0.25 in 300 steps).
def _dipole_algorithm() -> AlgorithmConfig:
    return AlgorithmConfig(
        name="dipole", samples_per_scene=8, rollout_steps=5, rollout_omega=0.0, beta=3.0, include_logged=True
    )


def _demo_dipole() -> ExperimentConfig:
    """DIPOLE RL from the demo imitation model: K = 8 rollouts per scene plus the logged one, PDMS rewards."""
    base = _demo_imitation()
    return replace(
        base,
        name="demo-dipole",
        model=replace(base.model, init_from="runs/demo-imitation/model"),
        algorithm=_dipole_algorithm(),
        train=replace(
            base.train,
            output_dir="runs/demo-dipole",
            max_steps=300,
            batch_size=8,
            learning_rate=1e-4,
            warmup_steps=20,
            checkpoint_every=100,
            eval_every=100,
            log_every=10,
        ),
    )


_NAVSIM_SPLITS = "${NAVSIM_DEVKIT_ROOT}/navsim/planning/script/config/common/train_test_split"


def _navsim_imitation() -> ExperimentConfig:
    """Imitation on NAVSIM navtrain (PDMS on navtest) with Qwen2.5-VL-3B + LoRA, bf16, DeepSpeed ZeRO-2."""
    return ExperimentConfig(
        name="navsim-imitation",
        data=DataConfig(
            train_split=f"{_NAVSIM_SPLITS}/navtrain.yaml",
            val_split=f"{_NAVSIM_SPLITS}/navtest.yaml",
            max_val_scenes=512,
            num_workers=8,
        ),
        model=ModelConfig(
            backbone="Qwen/Qwen2.5-VL-3B-Instruct",
            trainable="lora",
            lora=LoraSettings(r=16, alpha=32),
            gradient_checkpointing=True,
        ),
        head=HeadConfig(hidden_size=512, depth=6, num_heads=8, cond_dim=2048),
        train=TrainConfig(
            output_dir="runs/navsim-imitation",
            max_steps=20000,
            batch_size=8,
            learning_rate=3e-4,
            backbone_learning_rate=5e-5,
            weight_decay=0.01,
            warmup_steps=500,
            mixed_precision="bf16",
            checkpoint_every=1000,
            keep_checkpoints=3,
            eval_every=2000,
            log_every=20,
        ),
        distributed=DistributedConfig(backend="deepspeed", zero_stage=2),
    )


def _navsim_dipole() -> ExperimentConfig:
    """DIPOLE RL on navtrain from the imitation model: frozen backbone, the head's pos / neg branches train."""
    base = _navsim_imitation()
    return replace(
        base,
        name="navsim-dipole",
        model=replace(
            base.model, trainable="frozen", gradient_checkpointing=False, init_from="runs/navsim-imitation/model"
        ),
        algorithm=_dipole_algorithm(),
        train=replace(
            base.train,
            output_dir="runs/navsim-dipole",
            max_steps=3000,
            batch_size=4,
            learning_rate=1e-4,
            backbone_learning_rate=None,
            warmup_steps=100,
            checkpoint_every=250,
            eval_every=500,
        ),
    )


PRESETS: dict[str, Callable[[], ExperimentConfig]] = {
    "debug": _debug,
    "demo-imitation": _demo_imitation,
    "demo-dipole": _demo_dipole,
    "navsim-imitation": _navsim_imitation,
    "navsim-dipole": _navsim_dipole,
}


def get_preset(name: str) -> ExperimentConfig:
    """A fresh copy of the preset ``name``; an unknown name raises with the closest known names."""
    try:
        make = PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown preset {name!r}{_did_you_mean(name, list(PRESETS))}; presets: {', '.join(PRESETS)}"
        ) from None
    config = make()
    validate_config(config, f"preset {name!r}")
    return config


# ------------------------------------------------------------------------------------------------ run records

_PACKAGES = ("torch", "transformers", "peft", "accelerate", "deepspeed", "numpy", "vla-drive")


def run_metadata() -> dict[str, Any]:
    """Python and package versions (installed ones only), the CUDA build and the git commit, for the run record."""
    meta: dict[str, Any] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            meta[package.replace("-", "_")] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import torch

        meta["cuda"] = torch.version.cuda
    except ImportError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        meta["git_commit"] = commit or None
    except (OSError, subprocess.SubprocessError):
        pass
    return meta


def save_run_config(config: ExperimentConfig, run_dir: str | Path) -> Path:
    """Write ``config.yaml`` (resolved) and ``versions.json`` into ``run_dir`` atomically; returns ``run_dir``."""
    run_dir = Path(run_dir)
    save_config(config, run_dir / CONFIG_FILE)
    atomic_write_text(run_dir / VERSIONS_FILE, json.dumps(run_metadata(), indent=2, sort_keys=True) + "\n")
    return run_dir


__all__ = [
    "ALGORITHMS",
    "PRESETS",
    "AlgorithmConfig",
    "ConfigError",
    "DataConfig",
    "DataPaths",
    "DistributedConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "UnknownPresetError",
    "check_deepspeed_file",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "data_paths",
    "deepspeed_dict",
    "get_preset",
    "load_config",
    "run_metadata",
    "save_config",
    "save_run_config",
    "synthetic_data",
    "validate_config",
    "validate_paths",
    "with_synthetic_world",
]
