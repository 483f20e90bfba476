"""Scenario labels written beside the synthetic world's splits, so every evaluation can be broken down by scenario.

For a split ``<splits>/<name>.yaml`` the labels live in ``<splits>/<name>_scenarios.json`` (never inside the
``scene_filter`` file, which the official devkit instantiates)::

    {
      "split": "synthetic_test",
      "data_split": "synthetic",
      "holdout": "town",                  # "town": test logs drive in a town no training log drives in;
                                          # "log": a small world, split by log only
      "note": "...",
      "towns": {"one-north-mixed": "sg-one-north"},
      "filter": {...} or null,            # the navtest-style filter's counts, when it made this split
      "scenes": {"<token>": "<scenario>", ...},
      "logs": {"<log>": {"town": ..., "location": ..., "scenario": ..., "params": {...}}, ...}
    }
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navsim_eval.atomic import atomic_write_text
from navsim_eval.errors import NavsimEvalError

LABELS_SUFFIX = "_scenarios.json"


class ScenarioLabelsError(NavsimEvalError):
    """A scenario labels file is missing or malformed."""


@dataclass
class ScenarioLabels:
    """The scenario of every scene of a split, and what the split is."""

    split: str
    data_split: str
    holdout: str
    note: str
    scenes: dict[str, str]
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    towns: dict[str, str] = field(default_factory=dict)
    filter: dict[str, Any] | None = None

    def counts(self) -> dict[str, int]:
        """Scenes per scenario."""
        return dict(sorted(Counter(self.scenes.values()).items()))

    def breakdown(self, scores: Mapping[str, float]) -> dict[str, tuple[float, int]]:
        """Mean score and scene count per scenario over the labelled tokens of ``scores`` with a finite value
        (a token without a label, or a NaN score, counts nowhere)."""
        groups: dict[str, list[float]] = {}
        for token, value in scores.items():
            scenario = self.scenes.get(token)
            if scenario is not None and math.isfinite(value):
                groups.setdefault(scenario, []).append(float(value))
        return {name: (sum(values) / len(values), len(values)) for name, values in sorted(groups.items())}

    def restricted(self, split: str, tokens: list[str], filter: dict[str, Any] | None = None) -> ScenarioLabels:
        """The labels of a split made of some of these scenes (``tokens``, e.g. those ``navsim-eval filter`` kept),
        under the new split's name, with the filter's counts when a filter made it. The logs stay those of this
        split, as the new split file keeps its ``log_names``."""
        return ScenarioLabels(
            split=split,
            data_split=self.data_split,
            holdout=self.holdout,
            note=self.note,
            scenes={token: self.scenes[token] for token in tokens if token in self.scenes},
            logs=self.logs,
            towns=self.towns,
            filter=filter if filter is not None else self.filter,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "data_split": self.data_split,
            "holdout": self.holdout,
            "note": self.note,
            "towns": self.towns,
            "filter": self.filter,
            "scenario_counts": self.counts(),
            "scenes": self.scenes,
            "logs": self.logs,
        }


def labels_path(split_file: str | Path) -> Path:
    """``<dir>/<name>_scenarios.json`` for the split file ``<dir>/<name>.yaml``."""
    split_file = Path(split_file)
    return split_file.with_name(split_file.stem + LABELS_SUFFIX)


def write_scenario_labels(splits_dir: str | Path, labels: ScenarioLabels) -> Path:
    """Write the labels of ``labels.split`` beside its split file."""
    path = labels_path(Path(splits_dir) / f"{labels.split}.yaml")
    return atomic_write_text(path, json.dumps(labels.to_json(), indent=1, sort_keys=False) + "\n")


def load_scenario_labels(split_file: str | Path) -> ScenarioLabels:
    """The labels written beside a split file (``.../synthetic_test.yaml`` -> ``.../synthetic_test_scenarios.json``)."""
    path = labels_path(split_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioLabelsError(f"{path}: cannot read scenario labels ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ScenarioLabelsError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), dict):
        raise ScenarioLabelsError(f"{path}: expected an object with a 'scenes' object {{token: scenario}}")
    return ScenarioLabels(
        split=str(data.get("split", Path(split_file).stem)),
        data_split=str(data.get("data_split", "")),
        holdout=str(data.get("holdout", "")),
        note=str(data.get("note", "")),
        scenes={str(k): str(v) for k, v in data["scenes"].items()},
        logs=dict(data.get("logs") or {}),
        towns=dict(data.get("towns") or {}),
        filter=data.get("filter"),
    )
