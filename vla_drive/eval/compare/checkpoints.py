"""Choosing a compared run's checkpoint on validation.

Every RL run validates (PDMS v1.1 on ``synthetic_val``, at the default knob) and checkpoints at the same steps
(``budget.eval_every_iterations``), and keeps all those checkpoints. The checkpoint evaluated afterwards is the one
with the best validation score (the earliest on ties): the test split never decides it. The imitation start itself
is not a candidate, so a run that only ever made its start worse is evaluated at its best RL checkpoint and shows
as worse (or collapsed) rather than silently becoming its start again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_drive.train.checkpoint import CHECKPOINTS_DIR, CheckpointError, checkpoint_name, consolidate

LOG = logging.getLogger(__name__)
SELECTED_DIR = "selected_model"  # beside the run's final model, when an earlier checkpoint wins


@dataclass(frozen=True)
class Selection:
    """The model directory to evaluate and why: the step chosen, the final step, the validation scores seen."""

    model_dir: Path
    step: int
    final_step: int
    val_scores: dict[int, float]  # step -> validation PDMS at the default knob
    note: str = ""  # why the final model was kept although another step scored higher (empty otherwise)


def metric_records(metrics_file: Path) -> Iterator[dict[str, Any]]:
    """The records of a run's metrics.jsonl, in order (none when it is missing; a torn last line is skipped)."""
    if not metrics_file.is_file():
        return
    for line in metrics_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def validation_scores(metrics_file: Path) -> dict[int, float]:
    """step -> ``eval/score`` of a run's metrics.jsonl (the last record of a step wins: a resumed run repeats)."""
    records = metric_records(metrics_file)
    return {int(r["step"]): float(r["eval/score"]) for r in records if "eval/score" in r and "step" in r}


def best_step(scores: dict[int, float], final_step: int) -> int:
    """The step with the highest finite score, the earliest on ties; ``final_step`` when none is finite."""
    finite = {step: score for step, score in scores.items() if math.isfinite(score)}
    if not finite:
        return final_step
    return max(sorted(finite), key=lambda step: finite[step])


def select_checkpoint(run_dir: Path, final_model: Path, final_step: int) -> Selection:
    """The best-on-validation checkpoint of the training run in ``run_dir`` as a model directory (consolidated into
    ``<run_dir>/selected_model`` when it is not the final model)."""
    scores = validation_scores(run_dir / "metrics.jsonl")
    step = best_step(scores, final_step)
    if step == final_step:
        return Selection(final_model, step, final_step, scores)
    checkpoint = run_dir / CHECKPOINTS_DIR / checkpoint_name(step)
    target = run_dir / SELECTED_DIR
    marker = target / "selected_step.txt"
    if marker.is_file() and marker.read_text().strip() == str(step):
        return Selection(target, step, final_step, scores)
    from vla_drive.model.vla import DrivingVLA

    def build() -> DrivingVLA:
        model = DrivingVLA.from_pretrained(final_model)  # the final model's architecture, adapters included
        model.training_record = {**(model.training_record or {}), "selected_step": step}
        return model

    try:
        consolidate(checkpoint, build, target)
    except (CheckpointError, OSError) as error:
        note = f"step {step} scored best on val but its checkpoint could not be used ({error}); the final model kept"
        LOG.warning("%s: %s", run_dir, note)
        return Selection(final_model, final_step, final_step, scores, note)
    marker.write_text(f"{step}\n")
    return Selection(target, step, final_step, scores)
