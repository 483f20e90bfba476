"""What a synthetic test split measures, in markdown: its scenes, logs, held-out town, scenario mix and filter, the
reference plans (constant velocity, the logged human) scored on it, and a per-scenario table of the models.

A score means little without its scale: on NAVSIM's navtest constant velocity scores about 0.21 PDMS and the human
0.95, and a model is read between the two. The demo's report puts the same two rows beside its models, computed on
the very scenes it scored, so a reader can tell whether the world rewards safe driving or only driving further.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping

from navsim_eval.csv_io import read_score_csv
from navsim_eval.data.filtering import filter_caches
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.synthetic.labels import ScenarioLabels, ScenarioLabelsError, labels_path, load_scenario_labels

CONSTANT_VELOCITY = "constant velocity"
HUMAN = "logged human"


def reference_scores(metric_cache: str | os.PathLike[str], tokens: list[str]) -> dict[str, dict[str, float]]:
    """PDMS v1.1 per token of the constant-velocity plan and the logged human, from the split's metric caches (the
    navtest-style filter's two plans); a token without a cache scores NaN."""
    store = MetricCacheStore(metric_cache)
    decisions = filter_caches(store[token] if token in store else (token, "no metric cache") for token in tokens)
    return {
        CONSTANT_VELOCITY: {d.token: d.constant_velocity_score for d in decisions.decisions},
        HUMAN: {d.token: d.human_score for d in decisions.decisions},
    }


def world_section(
    split_file: str | os.PathLike[str],
    metric_cache: str | os.PathLike[str],
    model_csvs: Mapping[str, str | os.PathLike[str]],
) -> list[str]:
    """Markdown lines: the split, the reference rows and one row per model (``name -> v1 score CSV``), overall and
    per scenario (when the split has scenario labels beside it)."""
    scores = {name: _csv_scores(path) for name, path in model_csvs.items()}
    tokens = sorted(next(iter(scores.values()))) if scores else []
    rows = {**scores, **reference_scores(metric_cache, tokens)}
    labels = _labels(split_file)
    lines = ["## What this world measures", ""]
    if labels is not None:
        lines += [_describe(labels, len(tokens)), ""]
    lines += [
        "PDMS v1.1 on the scored test scenes, the reference plans beside the models (on NAVSIM's navtest: constant "
        "velocity about 0.21, the human 0.95). A model near constant velocity has learnt little; one near the "
        "human drives about as safely as the log.",
        "",
    ]
    scenarios = sorted(labels.counts()) if labels is not None else []
    header = ["plan", "all", *scenarios]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per_token in rows.items():
        finite = [v for v in per_token.values() if math.isfinite(v)]
        cells = [name, f"{sum(finite) / len(finite):.3f}" if finite else "-"]
        if labels is not None:
            groups = labels.breakdown(per_token)
            cells += [f"{groups[s][0]:.3f}" if s in groups else "-" for s in scenarios]
        lines.append("| " + " | ".join(cells) + " |")
    if labels is not None:
        counted = Counter(labels.scenes[token] for token in tokens if token in labels.scenes)
        lines.append("| scenes | " + " | ".join(str(n) for n in (len(tokens), *(counted[s] for s in scenarios))) + " |")
    return [*lines, ""]


def _csv_scores(path: str | os.PathLike[str]) -> dict[str, float]:
    """token -> score of a score CSV (an invalid row scores NaN here: it counts in no mean)."""
    table = read_score_csv(path)
    return {row["token"]: float(row["score"]) if row.get("valid", True) else math.nan for row in table.rows}


def _labels(split_file: str | os.PathLike[str]) -> ScenarioLabels | None:
    """The split's scenario labels, or None for a split without (readable) labels: the table is then overall."""
    if not labels_path(split_file).is_file():
        return None
    try:
        return load_scenario_labels(split_file)
    except ScenarioLabelsError:
        return None


def _describe(labels: ScenarioLabels, scored: int) -> str:
    """One paragraph: the split's scenes and logs, how it is held out, the filter's counts."""
    towns = sorted({str(log.get("town")) for log in labels.logs.values() if log.get("town")})
    held_out = (
        f"drives in {', '.join(towns)}, a town no training log drives in"
        if labels.holdout == "town"
        else "is held out by log only (a small world)"
    )
    text = f"Test split `{labels.split}`: {scored} scenes scored from {len(labels.logs)} logs; it {held_out}."
    if labels.filter:
        f = labels.filter
        text += (
            f" The navtest-style filter kept {f.get('kept')} of {f.get('scenes')} generated scenes (constant "
            f"velocity solved {f.get('removed_constant_velocity')}, the human failed {f.get('removed_human')})."
        )
    return text + f" Scenario mix: {', '.join(f'{k} {v}' for k, v in labels.counts().items())}."
