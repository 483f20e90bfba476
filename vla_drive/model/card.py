"""The model card (``README.md``) of a saved DrivingVLA directory, and the evaluation record it shows.

The card is generated, never hand-edited: from ``vla_config.json`` (base model, cameras and inputs, head, the
training record, the chosen guidance omega), ``evaluations.json`` (the results that ``vla-drive eval`` and
``vla-drive sweep`` add) and the files the directory holds. ``save_pretrained`` writes it for every final model and
export (checkpoints are not model directories and get none); recording an evaluation or a sweep rewrites it. Its
YAML header is what the Hugging Face hub reads (``library_name``, ``base_model``, ``tags``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from navsim_eval.atomic import atomic_write_text

CARD_FILE = "README.md"
EVALUATIONS_FILE = "evaluations.json"
# What makes the model (what `vla-drive push` uploads); anything else in the directory (eval/, sweep/ outputs) is not.
MODEL_ENTRIES = ("vla_config.json", "backbone", "head.safetensors", "normalizer.json", CARD_FILE, EVALUATIONS_FILE)
SCORE_NAMES = {"v1": "PDMS (NAVSIM v1.1)", "v2": "EPDMS (NAVSIM v2, one stage)"}


class ModelCardError(ValueError):
    """A model directory whose card or evaluation record cannot be written or read."""


def model_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The files of the model itself, relative to ``directory`` (sorted; eval / sweep outputs left out)."""
    directory = Path(directory)
    files = []
    for entry in MODEL_ENTRIES:
        path = directory / entry
        if path.is_file():
            files.append(Path(entry))
        elif path.is_dir():
            files += [p.relative_to(directory) for p in sorted(path.rglob("*")) if p.is_file()]
    return files


def read_evaluations(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The evaluation record of a model directory: ``{"evaluations": [...], "sweep": {...} | None}``."""
    path = Path(directory) / EVALUATIONS_FILE
    if not path.is_file():
        return {"evaluations": [], "sweep": None}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelCardError(f"{path}: unreadable evaluation record ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("evaluations", []), list):
        raise ModelCardError(f"{path}: expected {{'evaluations': [...], 'sweep': ...}}")
    return {"evaluations": data.get("evaluations", []), "sweep": data.get("sweep")}


def record_evaluation(
    directory: str | os.PathLike[str],
    *,
    split: str,
    version: str,
    metrics: Mapping[str, float],
    scenes: int,
    missing: int,
    omega: float,
    steps: int,
    seed: int,
) -> Path:
    """Add (or replace: same split and version) an evaluation in the model's record and rewrite its card."""
    record = read_evaluations(directory)
    entry = {
        "split": split,
        "version": version,
        "metrics": {name: float(value) for name, value in metrics.items()},
        "scenes": int(scenes),
        "missing": int(missing),
        "omega": float(omega),
        "steps": int(steps),
        "seed": int(seed),
        "date": time.strftime("%Y-%m-%d"),
    }
    kept = [e for e in record["evaluations"] if (e.get("split"), e.get("version")) != (split, version)]
    record["evaluations"] = [*kept, entry]
    return _write_record(directory, record)


def record_sweep(
    directory: str | os.PathLike[str],
    *,
    split: str,
    version: str,
    rows: Sequence[Mapping[str, float]],
    chosen: float,
    temperature: float = 1.0,
) -> Path:
    """Record a guidance sweep (score per omega, the omega chosen and the sampler temperature it was sampled at: the
    omega holds at that temperature) and rewrite the card."""
    record = read_evaluations(directory)
    record["sweep"] = {
        "split": split,
        "version": version,
        "chosen": float(chosen),
        "temperature": float(temperature),
        "rows": [{"omega": float(r["omega"]), "score": float(r["score"])} for r in rows],
        "date": time.strftime("%Y-%m-%d"),
    }
    return _write_record(directory, record)


def _write_record(directory: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    path = atomic_write_text(Path(directory) / EVALUATIONS_FILE, json.dumps(record, indent=1) + "\n")
    write_model_card(directory)
    return path


def write_model_card(directory: str | os.PathLike[str], name: str | None = None) -> Path:
    """(Re)generate ``README.md`` of a saved model directory from its files."""
    directory = Path(directory)
    return atomic_write_text(directory / CARD_FILE, render_model_card(directory, name))


def render_model_card(directory: str | os.PathLike[str], name: str | None = None) -> str:
    """The card's text (see the module doc)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "vla_config.json").read_text(encoding="utf-8"))
        config = meta["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelCardError(f"{directory}: no readable vla_config.json to describe ({error})") from None
    backbone = _backbone_facts(directory)
    base = backbone.get("base_model")
    title = name or (directory.parent.name if directory.name == "model" else directory.name)
    head = config.get("head", {})
    training = meta.get("training") or {}
    record = read_evaluations(directory)
    header = ["---", "library_name: vla-drive"]
    if base:
        header.append(f"base_model: {base}")
    header += ["tags:", *(f"- {tag}" for tag in ("autonomous-driving", "navsim", "vla", "diffusion-policy")), "---", ""]
    lines = [
        *header,
        f"# {title}",
        "",
        "A driving vision-language-action model made with vla-drive: a "
        f"{_condition_phrase(config)} condition a diffusion trajectory head that plans 8 poses (x, y, heading, "
        "every 0.5 s for 4 s) in the ego frame, scored with NAVSIM's PDM score.",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {_code(config.get('backbone', '?'))}{f' (hub id {_code(base)})' if base else ''} |",
        f"| backbone | {_backbone_line(config, backbone)} |",
        f"| cameras | {_cameras_line(config)} |",
        f"| other inputs | {_inputs_line(config)} |",
        f"| trajectory head | {_head_line(head)} |",
        f"| algorithm | {_training_line(training)} |",
        f"| guidance omega | {_omega_line(config, record.get('sweep'))} |",
        "",
    ]
    lines += _evaluation_section(record, config)
    lines += _files_section(directory)
    lines += [
        "## Use",
        "",
        "```python",
        "from vla_drive.model.vla import DrivingVLA",
        "",
        'model = DrivingVLA.from_pretrained("path/to/this/directory")  # checks every weight file\'s checksum',
        "trajectories = model.predict(samples, num_samples=1, seed=0)    # [B, 1, 8, 3] in each scene's ego frame",
        "```",
        "",
        "`vla-drive eval --model DIR --split navtest.yaml` scores it like the leaderboard; `vla-drive submit` writes "
        "the leaderboard pickle; the navsim agent `vla_drive.navsim_agent.VLADriveAgent` runs it in the official "
        "scripts.",
        "",
        f"_Generated by vla-drive {meta.get('versions', {}).get('vla_drive', '?')}; the directory format is "
        f"{meta.get('format_version')}._",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ parts


def _code(text: Any) -> str:
    return f"`{text}`"


def _backbone_facts(directory: Path) -> dict[str, Any]:
    """What the backbone folder says about itself: model type, trainable mode, the hub id of the base."""
    facts: dict[str, Any] = {}
    for filename in ("config.json", "base/config.json"):
        path = directory / "backbone" / filename
        if path.is_file():
            facts.setdefault("model_type", json.loads(path.read_text(encoding="utf-8")).get("model_type"))
    saved = directory / "backbone" / "vla_backbone.json"
    if saved.is_file():
        data = json.loads(saved.read_text(encoding="utf-8"))
        facts.update(trainable=data.get("trainable"), family=data.get("family"))
        source = data.get("base") or data.get("source")
        if isinstance(source, str) and _looks_like_hub_id(source):
            facts["base_model"] = source
    adapter = directory / "backbone" / "adapter_config.json"
    if adapter.is_file():
        source = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if isinstance(source, str) and _looks_like_hub_id(source):
            facts["base_model"] = source
    return facts


def _condition_phrase(config: Mapping[str, Any]) -> str:
    if config.get("backbone") == "none":
        return "no backbone (the ego-status-only baseline): the ego status and the driving command alone"
    return "VLM backbone whose hidden states"


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def _backbone_line(config: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    if config.get("backbone") == "none":
        return "none: the ego-status-only model (the head conditions on the ego status and the driving command)"
    family = facts.get("family") or facts.get("model_type") or "?"
    trainable = config.get("trainable", "?")
    if trainable == "lora":
        lora = config.get("lora", {})
        trainable = f"LoRA r={lora.get('r')} alpha={lora.get('alpha')} on the language model"
    layers = ", ".join(str(i) for i in config.get("hidden_layers", [-1]))
    extra = f"; attention {config['attn_implementation']}" if config.get("attn_implementation") else ""
    return f"{family}, {trainable}, hidden layer(s) {layers}, dtype {config.get('dtype', 'auto')}{extra}"


def _cameras_line(config: Mapping[str, Any]) -> str:
    if not config.get("cameras"):
        return "none (no images are read)"
    cameras = ", ".join(config.get("cameras", []))
    history = int(config.get("history_frames", 0))
    text = cameras + (f"; the current frame and {history} past frame(s) each" if history else "; the current frame")
    budget = config.get("max_pixels") or []
    if budget:
        text += f"; at most {', '.join(str(p) for p in budget)} pixels per image"
    if config.get("min_pixels"):
        text += f", at least {config['min_pixels']}"
    return text


def _inputs_line(config: Mapping[str, Any]) -> str:
    parts = ["driving command"]
    parts.append("ego velocity and acceleration" if config.get("ego_status", True) else "no ego status (ablated)")
    if config.get("include_history"):
        parts.append("past ego poses in the prompt")
    return ", ".join(parts)


def _head_line(head: Mapping[str, Any]) -> str:
    branches = head.get("branches") or []
    guided = f"; guidance branches {', '.join(branches)}" if branches else ""
    return (
        f"DiT {head.get('hidden_size')} x {head.get('depth')} blocks, {head.get('path')} path, {head.get('target')} "
        f"target, {head.get('sampler')} sampler with {head.get('sample_steps')} steps{guided}"
    )


def _training_line(training: Mapping[str, Any]) -> str:
    if not training:
        return "not recorded (saved outside `vla-drive train`)"
    text = f"{training.get('algorithm', '?')}, {training.get('steps', '?')} steps"
    if training.get("experiment"):
        text += f" (experiment `{training['experiment']}`)"
    if training.get("train_split"):
        text += f" on `{training['train_split']}`"
    if training.get("init_from"):
        text += f", from `{training['init_from']}`"
    return text


def _omega_line(config: Mapping[str, Any], sweep: Mapping[str, Any] | None) -> str:
    omega = float(config.get("guidance_omega", 0.0))
    if sweep and float(sweep.get("chosen", omega)) == omega:
        return (
            f"{omega:g} (chosen by a sweep on `{sweep.get('split')}`, {SCORE_NAMES.get(sweep.get('version'), '')}, "
            f"at sampler temperature {float(sweep.get('temperature', 1.0)):g})"
        )
    return f"{omega:g}"


def _evaluation_section(record: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    evaluations, sweep = record.get("evaluations") or [], record.get("sweep")
    if not evaluations and not sweep:
        return ["## Evaluation", "", "Not evaluated yet (`vla-drive eval` adds a table here).", ""]
    lines = ["## Evaluation", ""]
    for version in ("v1", "v2"):
        entries = [e for e in evaluations if e.get("version") == version]
        if not entries:
            continue
        names = [n for n in entries[0]["metrics"] if n not in ("score", "score_with_missing_as_zero")]
        lines += [
            f"{SCORE_NAMES[version]}, one trajectory per scene:",
            "",
            "| split | score | " + " | ".join(names) + " | scenes | unscored | omega | steps | seed |",
            "|---|---|" + "---|" * len(names) + "---|---|---|---|---|",
        ]
        for e in entries:
            metrics = e["metrics"]
            cells = [f"{metrics.get(n, float('nan')):.4f}" for n in names]
            lines.append(
                f"| {e['split']} | **{metrics.get('score', float('nan')):.4f}** | " + " | ".join(cells) + " | "
                f"{e['scenes']} | {e['missing']} | {e['omega']:g} | {e['steps']} | {e['seed']} |"
            )
        lines.append("")
    if sweep:
        lines += [
            f"Guidance sweep on `{sweep['split']}` ({SCORE_NAMES.get(sweep['version'], sweep['version'])}, sampler "
            f"temperature {float(sweep.get('temperature', 1.0)):g}: evaluate at the same temperature):",
            "",
            "| omega | " + " | ".join(f"{r['omega']:g}" for r in sweep["rows"]) + " |",
            "|---|" + "---|" * len(sweep["rows"]),
            "| score | " + " | ".join(f"{r['score']:.4f}" for r in sweep["rows"]) + " |",
            "",
            f"chosen omega: {sweep['chosen']:g}",
            "",
        ]
    return lines


def _files_section(directory: Path) -> list[str]:
    lines = ["## Files", "", "| file | size |", "|---|---|"]
    for relative in model_files(directory):
        if relative.name == CARD_FILE and len(relative.parts) == 1:
            continue
        lines.append(f"| `{relative.as_posix()}` | {_size((directory / relative).stat().st_size)} |")
    lines.append(f"| `{CARD_FILE}` | this card |")
    others = sorted(p.name for p in directory.iterdir() if p.name not in MODEL_ENTRIES and not p.name.startswith("."))
    lines.append("")
    if others:
        lines += [f"Also in the directory, not part of the model: {', '.join(f'`{o}`' for o in others)}.", ""]
    return lines


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
