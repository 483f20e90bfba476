"""Reading, validating and writing experiment configs.

Configs come from YAML files (``configs/*.yaml``; a preset is such a file named without its extension) with
command-line overrides ``key.sub=value``; every value is validated before any model is built, and every problem
names the file or override that set the field, the field and what was expected. ``base:`` inherits another file or
preset (relative to the YAML file that names it). YAML is read with YAML 1.2 scalars: ``no`` / ``off`` stay
strings and ``3e-4`` is a number.

The ``algorithm`` section is polymorphic: ``algorithm.name`` picks the config class from the algorithm registry,
and only that class's fields are accepted there (a field of another algorithm is refused, naming the algorithm).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from navsim_eval.atomic import atomic_write_text
from vla_drive.algorithms.base import AlgorithmConfig
from vla_drive.algorithms.registry import ALGORITHMS
from vla_drive.config.schema import PLACEHOLDER_FIELDS, ExperimentConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # the preset YAML files (source checkouts)
PRESETS: tuple[str, ...] = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.yaml")))


class ConfigError(ValueError):
    """A config that cannot be used: every problem names where it came from, the field and what was expected."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class UnknownPresetError(ConfigError, KeyError):
    """A preset name that is not one of :data:`PRESETS`."""

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


def show(value: Any) -> str:
    """A value as the user wrote it: YAML spelling for null and booleans, quotes for strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidates, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class Problems:
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
        self.add(path, f"expected {expected}, got {show(value)}{hint}")

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise ConfigError(self.items[0], self.items)
        if self.items:
            raise ConfigError(f"{len(self.items)} problems:\n  " + "\n  ".join(self.items), self.items)


# ------------------------------------------------------------------------------------------------ schema


def _is_polymorphic(hint: Any) -> bool:
    """A section whose class depends on its ``name`` field (the algorithm section)."""
    return isinstance(hint, type) and issubclass(hint, AlgorithmConfig)


def _field_specs(cls: type) -> Iterator[tuple[str, Any, Mapping[str, Any]]]:
    """(name, type, metadata) of every field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    for spec in fields(cls):
        yield spec.name, hints[spec.name], spec.metadata


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Mapping[str, Any]]]:
    """(dotted path, type, metadata) of every field under ``cls``, through nested sections (not polymorphic ones)."""
    for name, hint, metadata in _field_specs(cls):
        if is_dataclass(hint) and not _is_polymorphic(hint):
            yield from _leaves(hint, f"{prefix}{name}.")
        elif not _is_polymorphic(hint):
            yield f"{prefix}{name}", hint, metadata


def _sections(cls: type = ExperimentConfig, prefix: str = "") -> Iterator[str]:
    for name, hint, _ in _field_specs(cls):
        if is_dataclass(hint):
            yield f"{prefix}{name}"
            if not _is_polymorphic(hint):
                yield from _sections(hint, f"{prefix}{name}.")


_LEAF_TYPES: dict[str, Any] = {path: hint for path, hint, _ in _leaves(ExperimentConfig)}
_SECTION_PATHS: tuple[str, ...] = tuple(_sections())
_ALGORITHM_FIELDS: dict[str, dict[str, tuple[Any, Mapping[str, Any]]]] = {
    name: {field: (hint, metadata) for field, hint, metadata in _field_specs(cls.config_class)}
    for name, cls in ALGORITHMS.items()
}


def _leaf_type(path: str) -> Any:
    """The type of a field path; for ``algorithm.x``, the type any registered algorithm gives ``x``."""
    if path in _LEAF_TYPES:
        return _LEAF_TYPES[path]
    section, _, name = path.partition(".")
    if section == "algorithm":
        for known in _ALGORITHM_FIELDS.values():
            if name in known:
                return known[name][0]
    return None


def _unknown_hint(path: str, siblings: Sequence[str] | None = None) -> str:
    """Suggest the closest known field: a sibling first, then a field of the same name elsewhere, then any path."""
    parent, _, name = path.rpartition(".")
    if siblings is None:
        siblings = [p.rpartition(".")[2] for p in (*_LEAF_TYPES, *_SECTION_PATHS) if p.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(name, list(siblings), n=3, cutoff=0.6)
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


_MISSING = object()


def _coerce_leaf(path: str, value: Any, hint: Any, metadata: Mapping[str, Any], problems: Problems) -> Any:
    """Coerce one field and check its rule; records a problem and returns ``_MISSING`` when it does not fit."""
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
        hint_text = did_you_mean(value, choices) if isinstance(value, str) else ""
        if hint is float and isinstance(value, float):
            problems.expected(path, "a finite number", value)
        else:
            problems.expected(path, _describe(hint), value, hint_text)
        return _MISSING
    if not _check_rule(path, value, metadata, problems):
        return _MISSING
    return value


# ------------------------------------------------------------------------------------------------ field rules


def _check_rule(path: str, value: Any, rule: Mapping[str, Any], problems: Problems) -> bool:
    """Apply the rule a field declares in its ``metadata`` (see :mod:`vla_drive.config.schema`)."""
    if not rule or value is None:
        return True
    if "min" in rule:
        bound, strict = rule["min"], rule.get("strict", False)
        if not (value > bound if strict else value >= bound):
            kind = "an integer" if isinstance(value, int) else "a number"
            problems.expected(path, f"{kind} {'>' if strict else '>='} {bound}{_or_null(path)}", value)
            return False
    if "choices" in rule:
        options = rule["choices"]
        if value not in options or type(value) is not type(options[0]):
            hint = did_you_mean(value, [str(o) for o in options]) if isinstance(value, str) else ""
            problems.expected(path, "one of " + ", ".join(str(o) for o in options), value, hint)
            return False
    if "items" in rule:
        options = rule["items"]
        if not value and not rule.get("allow_empty", False):
            problems.expected(path, "a non-empty list of " + ", ".join(options), value)
            return False
        for index, item in enumerate(value):
            if item not in options:
                problems.expected(f"{path}[{index}]", "one of " + ", ".join(options), item, did_you_mean(item, options))
                return False
        if len(set(value)) != len(value):
            problems.expected(path, "no repeated entries", value)
            return False
    if "each_min" in rule:
        if not value:
            problems.expected(path, "a non-empty list", value)
            return False
        for index, item in enumerate(value):
            if item < rule["each_min"]:
                problems.expected(f"{path}[{index}]", f"a number >= {rule['each_min']}", item)
                return False
    if rule.get("nonempty") and not len(value):
        problems.expected(path, "a non-empty string" if isinstance(value, str) else "a non-empty list", value)
        return False
    if rule.get("fraction") and not 0.0 <= value < 1.0:
        problems.expected(path, "a number in [0, 1)", value)
        return False
    if "fixed" in rule and value != rule["fixed"][0]:
        problems.expected(path, f"{rule['fixed'][0]} ({rule['fixed'][1]})", value)
        return False
    return True


def _or_null(path: str) -> str:
    hint = _leaf_type(path)
    return " or null" if type(None) in typing.get_args(hint) else ""


def _cross_checks(config: ExperimentConfig, problems: Problems) -> None:
    """Rules between fields (each problem is attributed to the field it names first)."""
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
    if train.feature_cache and model.backbone == "none":
        problems.add(
            "train.feature_cache",
            "model.backbone 'none' has no backbone features to cache (its condition is the ego status); expected ''",
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
    for path, message in config.algorithm.conflicts(config):
        problems.add(path, message)


# ------------------------------------------------------------------------------------------------ dict in and out


def plain(value: Any) -> Any:
    """JSON/YAML-ready values: sections through their own ``to_dict`` where they have one, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        data = value.to_dict() if hasattr(value, "to_dict") else {f.name: getattr(value, f.name) for f in fields(value)}
        return {key: plain(item) for key, item in data.items()}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return value


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as nested plain values (what a run's ``config.yaml`` holds)."""
    return plain(config)


def _merge(tree: dict[str, Any], data: Any, prefix: str, source: str, problems: Problems, open_keys: bool = False):
    """Merge ``data`` into the config tree ``tree`` at ``prefix``, rejecting unknown keys (except in the algorithm
    section, whose fields are checked once its name is known); records who set what."""
    if not isinstance(data, Mapping):
        section = prefix.rstrip(".") or "the config"
        problems.add(prefix.rstrip("."), f"expected a mapping of {section} settings, got {show(data)}")
        return
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or (key not in tree and not open_keys):
            problems.set_origin(path, source)
            problems.add(path, "unknown field" + _unknown_hint(str(path)))
            continue
        if isinstance(tree.get(key), dict):
            _merge(tree[key], value, f"{path}.", source, problems, open_keys=path == "algorithm")
        else:
            tree[key] = value
            problems.set_origin(path, source)


def _build(cls: type, tree: Mapping[str, Any], prefix: str, problems: Problems) -> Any:
    """Build the dataclass ``cls`` from a complete tree; returns ``_MISSING`` after recording its problems."""
    values: dict[str, Any] = {}
    ok = True
    for name, hint, metadata in _field_specs(cls):
        path = f"{prefix}{name}"
        if _is_polymorphic(hint):
            value = _build_algorithm(tree[name], f"{path}.", problems)
        elif is_dataclass(hint):
            value = _build(hint, tree[name], f"{path}.", problems)
        else:
            value = _coerce_leaf(path, tree[name], hint, metadata, problems)
        ok = ok and value is not _MISSING
        values[name] = value
    if not ok:
        return _MISSING
    try:
        if hasattr(cls, "from_dict"):  # LoraSettings, HeadConfig, VLAConfig: their own reader and checks
            return cls.from_dict({k: plain(v) for k, v in values.items()})
        return cls(**values)
    except (TypeError, ValueError) as error:
        problems.add(prefix.rstrip("."), str(error))
        return _MISSING


def _build_algorithm(tree: Mapping[str, Any], prefix: str, problems: Problems) -> Any:
    """The algorithm section: ``name`` picks the config class; the other keys must be fields of that class."""
    name = tree.get("name", "bc")
    if name not in ALGORITHMS:
        hint = did_you_mean(name, list(ALGORITHMS)) if isinstance(name, str) else ""
        problems.expected(f"{prefix}name", "one of " + ", ".join(ALGORITHMS), name, hint)
        return _MISSING
    cls = ALGORITHMS[name].config_class
    known = _ALGORITHM_FIELDS[name]
    unknown = [key for key in tree if key not in known]
    for key in unknown:
        owners = [other for other, settings in _ALGORITHM_FIELDS.items() if key in settings]
        hint = (
            f" (algorithm {' or '.join(map(repr, owners))} has it)"
            if owners
            else _unknown_hint(f"{prefix}{key}", known)
        )
        problems.add(f"{prefix}{key}", f"not a setting of algorithm {name!r}{hint}")
    defaults = plain(cls())
    full = {key: tree.get(key, defaults[key]) for key in known}
    built = _build(cls, full, prefix, problems)
    return _MISSING if unknown else built


def _finish(tree: dict[str, Any], problems: Problems) -> ExperimentConfig:
    config = _build(ExperimentConfig, tree, "", problems)
    if config is not _MISSING:
        _fill_placeholders(config, problems)
        _cross_checks(config, problems)
    problems.raise_if_any()
    return config


_PLACEHOLDER = re.compile(r"(?<!\$)\{([a-z_]+(?:\.[a-z_]+)+)\}")


def _fill_placeholders(config: ExperimentConfig, problems: Problems) -> None:
    """``{section.field}`` in the fields of :data:`PLACEHOLDER_FIELDS` replaced by that config value (a string or
    number; ``{algorithm.head_kind}`` is the kind of head the algorithm trains)."""
    for path in PLACEHOLDER_FIELDS:
        section_name, name = path.split(".")
        section = getattr(config, section_name)
        value = getattr(section, name)

        def lookup(match: re.Match[str], path: str = path) -> str:
            target: Any = config
            for part in match.group(1).split("."):
                if part.startswith("_") or not hasattr(target, part):
                    problems.add(path, f"{match.group(0)} names no config value")
                    return match.group(0)
                target = getattr(target, part)
            if isinstance(target, bool) or not isinstance(target, str | int | float):
                problems.add(path, f"{match.group(0)} is not a string or number ({show(target)})")
                return match.group(0)
            return str(target)

        if isinstance(value, str) and "{" in value:
            setattr(section, name, _PLACEHOLDER.sub(lookup, value))


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """A validated config from nested plain values; missing fields keep their defaults, ``base`` inherits."""
    problems = Problems(source)
    tree = _layer(data, source, Path.cwd(), problems, ())
    return _finish(tree, problems)


def validate_config(config: ExperimentConfig, source: str = "<config>") -> None:
    """Check a config built in code (types, enumerations, ranges, rules between fields); raises :class:`ConfigError`."""
    problems = Problems(source)
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
    names = [*PRESETS, *(f"{name}.yaml" for name in PRESETS)]
    hint = did_you_mean(path.name, names)
    return hint or f"; presets: {', '.join(PRESETS)}"


def _looks_like_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name


def preset_path(name: str) -> Path:
    """The YAML file of the preset ``name``; an unknown name raises with the closest known names."""
    if name not in PRESETS:
        raise UnknownPresetError(
            f"unknown preset {name!r}{did_you_mean(name, list(PRESETS))}; presets: {', '.join(PRESETS)}"
        )
    return CONFIG_DIR / f"{name}.yaml"


def _layer(data: Any, source: str, base_dir: Path, problems: Problems, chain: tuple[str, ...]) -> dict[str, Any]:
    """The config tree of one YAML document: its ``base`` (a file or preset) with the document merged on top."""
    if isinstance(data, Mapping) and "base" in data:
        data = dict(data)
        base = data.pop("base")
        if not isinstance(base, str) or not base:
            problems.set_origin("base", source)
            problems.expected("base", "a YAML file or a preset name", base)
            tree = config_to_dict(ExperimentConfig())
        elif _looks_like_file(base) or (base not in PRESETS and (base_dir / base).exists()):
            tree = _file_tree((base_dir / os.path.expandvars(base)).expanduser(), problems, chain, source, base)
        elif base in PRESETS:
            tree = _file_tree(preset_path(base), problems, chain, source, base)
        else:
            problems.set_origin("base", source)
            problems.add("base", f"no preset or file named {base!r}{did_you_mean(base, list(PRESETS))}")
            tree = config_to_dict(ExperimentConfig())
    else:
        tree = config_to_dict(ExperimentConfig())
    if data is not None:
        _merge(tree, data, "", source, problems)
    return tree


def _file_tree(
    path: Path, problems: Problems, chain: tuple[str, ...], named_by: str = "", base: str = ""
) -> dict[str, Any]:
    key = str(path.resolve())
    if key in chain:
        raise ConfigError(f"{named_by}: base: {base!r} includes itself ({' -> '.join(chain)} -> {key})")
    return _layer(_read_yaml_file(path), str(path), path.parent, problems, (*chain, key))


# ------------------------------------------------------------------------------------------------ overrides


def _override_value(key: str, raw: str) -> Any:
    """The value of an override, read as YAML (null, numbers, lists, mappings); raises ``yaml.YAMLError``."""
    if _leaf_type(key) is not str:
        return yaml.load(raw, Loader=_Loader)
    # a string field takes the text as typed (name=123, resume=./ckpt: x); "" stays "", null is refused later
    try:
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return raw.strip()
    if isinstance(value, str) or (value is None and raw.strip()):
        return value
    return raw.strip()


def _apply_override(tree: dict[str, Any], text: str, problems: Problems) -> None:
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
    expected; nothing is built and no data path is touched (see :func:`vla_drive.config.paths.validate_paths`).
    """
    if isinstance(overrides, str):
        raise TypeError("load_config: overrides must be a sequence of 'key=value' strings, not one string")
    if path_or_preset is None:
        problems = Problems("<defaults>")
        tree = config_to_dict(ExperimentConfig())
    elif isinstance(path_or_preset, str) and path_or_preset in PRESETS and not Path(path_or_preset).is_file():
        path = preset_path(path_or_preset)
        problems = Problems(f"preset {path_or_preset!r} ({path})")
        tree = _file_tree(path, problems, ())
    elif isinstance(path_or_preset, Path) or _looks_like_file(path_or_preset) or Path(path_or_preset).exists():
        path = Path(path_or_preset)
        problems = Problems(str(path))
        tree = _file_tree(path, problems, ())
    else:
        raise UnknownPresetError(
            f"no preset or config file named {path_or_preset!r}{did_you_mean(path_or_preset, list(PRESETS))}; "
            f"presets: {', '.join(PRESETS)}"
        )
    for text in overrides:
        _apply_override(tree, text, problems)
    return _finish(tree, problems)


def get_preset(name: str) -> ExperimentConfig:
    """The config of the preset ``name`` (``configs/<name>.yaml``), freshly read."""
    return load_config(preset_path(name))


def config_to_yaml(config: ExperimentConfig) -> str:
    """The YAML text of a config (every field, in declaration order)."""
    return yaml.dump(config_to_dict(config), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the config as YAML (atomically); :func:`load_config` reads it back equal."""
    path = Path(path)
    atomic_write_text(path, "# vla-drive experiment config, resolved (every field)\n" + config_to_yaml(config))
    return path
