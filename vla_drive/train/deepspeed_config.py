"""The DeepSpeed config of a run: generated from the experiment config, or a DeepSpeed JSON reconciled with it.

The fields the experiment config owns (micro batch, accumulation, clipping, bf16, ZeRO stage, offload) are filled
from it where the JSON says ``"auto"`` and must agree with it where the JSON gives a value. The trainer builds the
optimizer and the LR schedule itself, so a JSON with an ``optimizer`` or ``scheduler`` block is refused (that also
keeps DeepSpeed from JIT-building fused_adam). :func:`check_deepspeed_file` runs when a training run is checked,
before anything is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from vla_drive.config import ConfigError, ExperimentConfig
from vla_drive.config.loader import Problems, show
from vla_drive.config.paths import resolve_path

# Keys that accelerate fills from the model's hidden size; resolved by :func:`fill_model_dependent`.
HIDDEN_SIZE_KEYS = (
    "zero_optimization.reduce_bucket_size",
    "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
)


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
    problems = Problems(f"config {config.name!r}")
    path = resolve_path("distributed.deepspeed_config", name, problems)
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
    resolved = json.loads(json.dumps(data))
    errors: list[str] = [
        f"{label}: remove the {block!r} block; the trainer builds AdamW and the LR schedule from train.*"
        for block in ("optimizer", "scheduler")
        if block in data
    ]
    for key, field_name, expected in checks:
        if key == "bf16.enabled" and "bf16" not in data and "bfloat16" in data:
            key = "bfloat16.enabled"  # DeepSpeed's older spelling
        value = _get(data, key)
        if value is _NOTHING or value == "auto":
            _set(resolved, key, expected)
        elif not _same(value, expected):
            shown = show(train.mixed_precision) if field_name == "train.mixed_precision" else show(expected)
            errors.append(f"{label}: {key!r} is {show(value)} but {field_name} is {shown}")
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
                f"{label}: 'zero_optimization.{key}.device' is {show(device)} but {field_name} is {show(wanted_on)}"
            )
    if _get(data, "train_batch_size") == "auto" and world_size is None:
        del resolved["train_batch_size"]  # DeepSpeed derives it from the micro batch, accumulation and world size
    if errors:
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{len(errors)} problems:\n  " + "\n  ".join(errors), errors
        )
    return resolved


def resolve_deepspeed_config(config: ExperimentConfig, num_processes: int) -> dict[str, Any]:
    """The DeepSpeed config dict of a run: the JSON of ``distributed.deepspeed_config`` checked against the experiment
    config and completed from it (:func:`check_deepspeed_file`: ``"auto"`` and missing values are
    filled, contradictions raise), or the one the config generates (:func:`deepspeed_dict`).

    The trainer passes its own torch AdamW and sets the learning rates itself, so an ``optimizer`` or ``scheduler``
    block is refused (that also keeps DeepSpeed from JIT-building fused_adam). The hidden-size keys may stay
    ``"auto"`` until :func:`fill_model_dependent` sees the model.
    """
    ds = check_deepspeed_file(config, num_processes) or deepspeed_dict(config, num_processes)
    source = config.distributed.deepspeed_config or "the DeepSpeed config generated from distributed.*"
    leftover = [key for key in _auto_keys(ds) if key not in HIDDEN_SIZE_KEYS]
    if leftover:
        raise ConfigError(f"{source}: cannot fill 'auto' for {leftover}; give these values explicitly")
    ds.setdefault("steps_per_print", 10**12)  # DeepSpeed's own stdout logging: off
    return ds


def _auto_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _auto_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "auto" else []


def fill_model_dependent(ds_config: dict[str, Any], hidden_size: int | None) -> None:
    """Resolve the hidden-size ``"auto"`` keys in place, as accelerate would (bucket sizes from hidden^2); without a
    hidden size, drop them so that DeepSpeed's defaults apply."""
    zero = ds_config.get("zero_optimization", {})
    values = {}
    if hidden_size:
        values = {
            "reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size,
        }
    for dotted in HIDDEN_SIZE_KEYS:
        key = dotted.split(".")[-1]
        if zero.get(key) == "auto":
            if key in values:
                zero[key] = values[key]
            else:
                zero.pop(key)
