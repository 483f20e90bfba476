"""Calibration of the synthetic proving ground: what simple planners score on its held-out test split.

For each world seed, the default world (``navsim-eval synth --out DIR``) is generated (or reused from
``--worlds DIR/seed<k>``) and its test split scored, before and after the navtest-style filter, with PDMS v1.1 and
EPDMS v2 (two-frame extended comfort included), every sub-metric, overall and per scenario, for:

* ``constant_velocity``: straight on at the current speed (NAVSIM's ConstantVelocityAgent);
* ``stop``: standing still;
* ``mean_train``: the mean human trajectory of the training split, whatever the scene;
* ``human``: the logged future; ``human_x1.1``: the same stretched by 1.1 (a speed hack must not pay);
* ``pdm_closed``: the PDM-Closed reference of the metric cache;
* with ``--learned``, two models trained by imitation on the world's ``synthetic_train`` split (``demo-ego-status``:
  ``ego_status``, the ego-status-only model, NAVSIM's EgoStatusMLP analogue; ``demo-imitation``: ``vla_imitation``,
  the demo's VLA), each for ``--learned-steps`` steps (default: the preset's budget) or reused from
  ``--models NAME=DIR``; for them the paired difference VLA minus ego-status (PDMS and EPDMS, per scene, 95%
  bootstrap interval over scenes clustered by log), and, for the VLA's K = 8 samples per scene, the share of
  groups in which a sub-metric other than EP varies (does RL get a safety signal inside a group?);
* any other rows given with ``--trajectories NAME=FILE`` (``{token: [[x, y, heading] x 8]}`` JSON or ``.npz``;
  ``{seed}`` in FILE is replaced by the world seed), or by passing ``extra_rows`` to :func:`calibrate`.

It then checks the targets of the proving ground (issue 13) on the filtered test split of every seed::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_world.py [--seeds 0 1 2] [--worlds DIR] [--json OUT]
        [--learned [--learned-steps N] [--models ego_status=DIR vla_imitation=DIR] [--runs DIR]
        [--group-temperature T] [--learned-temperature T]]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import clustered_bootstrap_ci

from navsim_eval.data.filtering import constant_velocity_trajectory
from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.geometry import absolute_to_relative_poses
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.metric_cache import MetricCache
from navsim_eval.pdm.results import METRIC_COLUMNS, ScoreTable
from navsim_eval.pdm.scorer import score
from navsim_eval.pdm.two_frame import apply_two_frame_comfort
from navsim_eval.scene import Scene
from navsim_eval.synthetic.labels import load_scenario_labels
from navsim_eval.synthetic.world import UNFILTERED, WorldConfig, generate_world

TrajectoryFn = Callable[[Scene, MetricCache], np.ndarray]  # one [8, 3] ego-frame plan per scene
SAFETY = ("no_at_fault_collisions", "drivable_area_compliance", "time_to_collision_within_bound")
SHORT = {
    "no_at_fault_collisions": "NC",
    "drivable_area_compliance": "DAC",
    "driving_direction_compliance": "DDC",
    "traffic_light_compliance": "TLC",
    "ego_progress": "EP",
    "time_to_collision_within_bound": "TTC",
    "comfort": "C",
    "lane_keeping": "LK",
    "history_comfort": "HC",
    "two_frame_extended_comfort": "EC",
    "score": "score",
}


# ------------------------------------------------------------------------------------------------ rows


def pdm_closed_plan(cache: MetricCache) -> np.ndarray:
    """The cached PDM-Closed reference as an 8-pose plan in the ego frame (poses every 0.5 s)."""
    return absolute_to_relative_poses(cache.ego.pose, cache.reference("v1")[5::5])


def stretched(plan: np.ndarray, factor: float) -> np.ndarray:
    out = np.array(plan, dtype=np.float64, copy=True)
    out[:, :2] *= factor
    return out


def baseline_rows(mean_train: np.ndarray) -> dict[str, TrajectoryFn]:
    return {
        "constant_velocity": lambda scene, cache: constant_velocity_trajectory(cache.ego),
        "stop": lambda scene, cache: np.zeros((8, 3)),
        "mean_train": lambda scene, cache: mean_train,
        "human": lambda scene, cache: cache.human_trajectory,
        "human_x1.1": lambda scene, cache: stretched(cache.human_trajectory, 1.1),
        "pdm_closed": lambda scene, cache: pdm_closed_plan(cache),
    }


def file_row(pattern: str, seed: int) -> TrajectoryFn:
    """A row read from a trajectory file (JSON or .npz keyed by token); scenes it lacks are scored 0 (NAVSIM)."""
    from navsim_eval.cli import load_trajectories

    trajectories = load_trajectories(Path(pattern.format(seed=seed)))
    return lambda scene, cache: trajectories.get(scene.token)


# ------------------------------------------------------------------------------------------------ learned rows

LEARNED_PRESETS = {"ego_status": "demo-ego-status", "vla_imitation": "demo-imitation"}
GROUP_ROW = "vla_imitation"  # the imitation policy whose K samples per scene are examined
GROUP_SAMPLES = 8


@dataclass
class LearnedRows:
    """How the learned rows are made: trained for ``steps`` (None: the preset's budget) into ``runs/seed<k>/<name>``,
    or read from ``models`` (name -> model directory, ``{seed}`` replaced by the world seed)."""

    steps: int | None = None
    models: dict[str, str] = field(default_factory=dict)
    runs: Path | None = None
    group_temperature: float = 1.0  # the sampler temperature of the K samples per scene (1: as trained)
    row_temperature: float = 1.0  # the sampler temperature of the rows' plans (1: a sample; 0: the noise-free plan)


def train_learned(name: str, world: Path, out: Path, steps: int | None) -> Path:
    """Imitation of the preset ``LEARNED_PRESETS[name]`` on ``world``'s training split (no periodic validation:
    the benchmark scores the test split itself); returns the model directory (reused when already trained)."""
    from vla_drive.config import load_config, with_synthetic_world
    from vla_drive.train.run import train

    if (out / "model" / "vla_config.json").is_file():
        return out / "model"
    config = with_synthetic_world(load_config(LEARNED_PRESETS[name]), world)
    config.train.output_dir = str(out)
    if config.train.feature_cache:
        config.train.feature_cache = str(out / "features")
    config.train.eval_every, config.train.checkpoint_every, config.train.loggers = 0, 0, ("jsonl",)
    if steps:
        config.train.max_steps = steps
        config.train.warmup_steps = min(config.train.warmup_steps, steps // 10)
    return train(config)


def learned_plans(
    model_dir: Path, world: Path, split_name: str, samples: int = 1, temperature: float = 1.0
) -> dict[str, np.ndarray]:
    """token -> the model's plans [samples, 8, 3] (seed 0, the model's omega and steps, the sampler at
    ``temperature``) on a split."""
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.eval.predictions import predict_scenes
    from vla_drive.model.vla import DrivingVLA

    model = DrivingVLA.from_pretrained(model_dir)
    split = load_split(world / "splits", split_name)
    dataset = SceneDataset.for_model(SceneLoader(world, split.data_split, split.scene_filter), model)
    return predict_scenes(model, dataset, num_samples=samples, seed=0, temperature=temperature).trajectories


def plan_row(plans: Mapping[str, np.ndarray]) -> TrajectoryFn:
    return lambda scene, cache: None if scene.token not in plans else plans[scene.token][0]


# ------------------------------------------------------------------------------------------------ scoring


@dataclass
class SplitScores:
    """Per row, the v1 table and the v2 table (one candidate each) of every scene, in scene order."""

    tokens: list[str]
    scenarios: dict[str, str]
    v1: dict[str, list[ScoreTable | None]] = field(default_factory=dict)
    v2: dict[str, list[ScoreTable | None]] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)  # the log of every scene (bootstrap clusters)
    group_varies: list[list[str] | None] = field(default_factory=list)  # per scene: the non-EP metrics that vary


def _single(table: ScoreTable, k: int) -> ScoreTable:
    """Candidate ``k`` of a K-candidate table as its own table (for two-frame comfort, which pairs candidate 0)."""
    cut = slice(k, k + 1)
    return ScoreTable(
        table.token,
        table.version,
        {name: values[cut].copy() for name, values in table.columns.items()},
        table.valid[cut].copy(),
        [table.reasons[k]],
        {name: values[cut].copy() for name, values in table.diagnostics.items()},
        None if table.simulated_states is None else table.simulated_states[cut].copy(),
        table.log_name,
        table.t0_us,
        None if table.aggregation_columns is None else {n: v[cut].copy() for n, v in table.aggregation_columns.items()},
    )


def score_split(
    world: Path,
    split_name: str,
    rows: Mapping[str, TrajectoryFn],
    groups: Mapping[str, np.ndarray] | None = None,
) -> SplitScores:
    """Build the metric cache of every scene of a split once and score every row on it in both versions; with
    ``groups`` (token -> K plans [K, 8, 3]) also which PDMS v1.1 sub-metrics other than EP vary inside each group."""
    split = load_split(world / "splits", split_name)
    labels = load_scenario_labels(world / "splits" / f"{split_name}.yaml")
    loader = SceneLoader(world, split.data_split, split.scene_filter)
    result = SplitScores(list(loader.tokens), labels.scenes)
    for name in rows:
        result.v1[name], result.v2[name] = [], []
    for token in loader.tokens:
        scene = loader[token]
        result.logs.append(scene.log_name)
        cache = build_metric_cache_from_map(scene, load_map(scene.map_name, world / "maps"))
        group = None if groups is None else groups.get(token)
        result.group_varies.append(None if group is None else varying_metrics(score(cache, group, "v1")))
        plans = {name: row(scene, cache) for name, row in rows.items()}
        present = [name for name, plan in plans.items() if plan is not None]
        stack = np.stack([np.asarray(plans[name], dtype=np.float64) for name in present])
        for version, store in (("v1", result.v1), ("v2", result.v2)):
            table = score(cache, stack, version)
            singles = {name: _single(table, k) for k, name in enumerate(present)}
            for name in rows:
                store[name].append(singles.get(name))
    return result


def varying_metrics(table: ScoreTable) -> list[str]:
    """The sub-metrics other than EP (and the score) that take more than one value over a group's valid plans."""
    valid = np.asarray(table.valid, dtype=bool)
    names = [c for c in table.columns if c not in ("ego_progress", "score")]
    return [c for c in names if valid.sum() > 1 and np.ptp(np.asarray(table.columns[c])[valid]) > 1e-9]


def _with_extended_comfort(tables: list[ScoreTable | None], keep: set[str]) -> list[ScoreTable | None]:
    """Copies of the v2 tables of the scenes in ``keep`` with two-frame comfort between consecutive kept scenes."""
    chosen = [copy.deepcopy(t) if t is not None and t.token in keep else None for t in tables]
    apply_two_frame_comfort([t for t in chosen if t is not None])
    return chosen


def summarise(scores: SplitScores, keep: set[str]) -> dict:
    """Means over the kept scenes (a missing or invalid plan scores 0): per row and version every column, and the
    score per scenario; plus the scene counts."""
    index = [k for k, token in enumerate(scores.tokens) if token in keep]
    scenarios = sorted({scores.scenarios[scores.tokens[k]] for k in index})
    summary: dict = {"scenes": len(index), "scenario_counts": {}, "rows": {}}
    for scenario in scenarios:
        summary["scenario_counts"][scenario] = sum(scores.scenarios[scores.tokens[k]] == scenario for k in index)
    for name in scores.v1:
        entry = {}
        v2_tables = _with_extended_comfort(scores.v2[name], keep)
        for version, tables in (("v1", scores.v1[name]), ("v2", v2_tables)):
            columns = {}
            for column in METRIC_COLUMNS[version]:
                values = [_value(tables[k], column) for k in index]
                values = [v for v in values if not np.isnan(v)]
                columns[column] = float(np.mean(values)) if values else float("nan")
            per_scenario = {
                scenario: float(
                    np.mean(
                        [_value(tables[k], "score") for k in index if scores.scenarios[scores.tokens[k]] == scenario]
                    )
                )
                for scenario in scenarios
            }
            entry[version] = {"columns": columns, "per_scenario": per_scenario}
        if name == "constant_velocity":
            entry["safety_failure_share"] = {
                scenario: float(
                    np.mean(
                        [
                            _safety_failed(scores.v1[name][k], v2_tables[k])
                            for k in index
                            if scores.scenarios[scores.tokens[k]] == scenario
                        ]
                    )
                )
                for scenario in scenarios
            }
        summary["rows"][name] = entry
    groups = [scores.group_varies[k] for k in index if scores.group_varies and scores.group_varies[k] is not None]
    if groups:
        metrics = sorted({m for g in groups for m in g})
        summary["groups"] = {
            "count": len(groups),
            "share_varying": float(np.mean([bool(g) for g in groups])),
            "share_by_metric": {m: float(np.mean([m in g for g in groups])) for m in metrics},
        }
    return summary


def paired_difference(scores: SplitScores, keep: set[str], first: str, second: str) -> dict:
    """Per version, the mean per-scene difference ``first`` minus ``second`` (a missing or invalid plan scores 0;
    v2 with two-frame comfort over the kept scenes) and its 95% bootstrap interval over scenes clustered by log."""
    index = [k for k, token in enumerate(scores.tokens) if token in keep]
    logs = [scores.logs[k] for k in index]
    out = {}
    for version in ("v1", "v2"):
        tables = {
            name: scores.v1[name] if version == "v1" else _with_extended_comfort(scores.v2[name], keep)
            for name in (first, second)
        }
        diffs = np.array([_value(tables[first][k], "score") - _value(tables[second][k], "score") for k in index])
        mean, low, high = clustered_bootstrap_ci(diffs, logs)
        out[version] = {"mean": mean, "low": low, "high": high, "scenes": len(index), "logs": len(set(logs))}
    return out


def _value(table: ScoreTable | None, column: str) -> float:
    if table is None or not bool(table.valid[0]):
        return 0.0 if column == "score" else float("nan")
    return float(table.columns[column][0])


def _safety_failed(v1: ScoreTable | None, v2: ScoreTable | None) -> bool:
    """Some safety metric fails: NC, DAC or TTC (v1), or the traffic lights (v2)."""
    failed = any(_value(v1, c) < 1.0 for c in SAFETY)
    return failed or _value(v2, "traffic_light_compliance") < 1.0


# ------------------------------------------------------------------------------------------------ targets


def check_targets(after: dict, before: dict, num_test_logs: int) -> list[tuple[str, str, bool]]:
    """Issue 13's targets on one seed's test split: (target, measured, met)."""
    rows = after["rows"]
    cv = rows["constant_velocity"]["v1"]["columns"]
    checks = [
        ("constant velocity PDMS <= 0.35", f"{cv['score']:.3f}", cv["score"] <= 0.35),
        *[(f"constant velocity {SHORT[c]} <= 0.85", f"{cv[c]:.3f}", cv[c] <= 0.85) for c in SAFETY],
        (
            "human PDMS >= 0.90",
            f"{rows['human']['v1']['columns']['score']:.3f}",
            rows["human"]["v1"]["columns"]["score"] >= 0.90,
        ),
        (
            "PDM-Closed PDMS >= 0.90",
            f"{rows['pdm_closed']['v1']['columns']['score']:.3f}",
            rows["pdm_closed"]["v1"]["columns"]["score"] >= 0.90,
        ),
    ]
    human_v2, stretched_v2 = rows["human"]["v2"]["columns"]["score"], rows["human_x1.1"]["v2"]["columns"]["score"]
    checks.append(("human x1.1 EPDMS < human EPDMS", f"{stretched_v2:.3f} vs {human_v2:.3f}", stretched_v2 < human_v2))
    counts = after["scenario_counts"]
    share = {k: v / max(after["scenes"], 1) for k, v in counts.items()}
    big = sorted(k for k, v in share.items() if v >= 0.05)
    checks.append(
        (">= 6 scenario types each >= 5% of the test scenes", f"{len(big)} ({', '.join(big)})", len(big) >= 6)
    )
    checks.append((">= 100 test scenes after filtering", str(after["scenes"]), after["scenes"] >= 100))
    checks.append((">= 8 test logs", str(num_test_logs), num_test_logs >= 8))
    kept = after["scenes"] / max(before["scenes"], 1)
    checks.append(("the filter keeps >= half of the test scenes", f"{kept:.2f}", kept >= 0.5))
    if "groups" in after:
        share = after["groups"]["share_varying"]
        checks.append(
            (
                f"a sub-metric other than EP varies inside most K = {GROUP_SAMPLES} groups of the imitation policy",
                f"{share:.2f} of {after['groups']['count']}",
                share > 0.5,
            )
        )
    weak = {k: v for k, v in before["rows"]["constant_velocity"]["safety_failure_share"].items() if v < 0.5}
    checks.append(
        (
            "every scenario: constant velocity fails a safety metric in >= half its scenes (before the filter)",
            "all" if not weak else ", ".join(f"{k} {v:.2f}" for k, v in weak.items()),
            not weak,
        )
    )
    return checks


# ------------------------------------------------------------------------------------------------ running


def world_for(seed: int, root: Path) -> tuple[Path, float]:
    """The default world of ``seed`` under ``root`` (generated unless its test split exists); seconds spent."""
    world = root / f"seed{seed}"
    if (world / "splits" / "synthetic_test.yaml").is_file():
        return world, 0.0
    started = time.perf_counter()
    generate_world(world, WorldConfig(seed=seed))
    return world, time.perf_counter() - started


def mean_train_trajectory(world: Path) -> np.ndarray:
    split = load_split(world / "splits", "synthetic_train")
    loader = SceneLoader(world, split.data_split, split.scene_filter)
    return np.mean([loader[t].future_trajectory().poses for t in loader.tokens], axis=0)


def calibrate(
    seeds: Sequence[int],
    worlds: Path,
    extra_rows: Mapping[str, Callable[[int], TrajectoryFn]] | None = None,
    split: str = "synthetic_test",
    learned: LearnedRows | None = None,
) -> dict:
    """Score every row on ``split`` of each seed's default world, before and after the filter, and check the
    targets. ``extra_rows`` maps a row name to ``seed -> TrajectoryFn`` (e.g. a learned model's predictions);
    ``learned`` adds the models of :data:`LEARNED_PRESETS` (trained here or given)."""
    report: dict = {"seeds": {}}
    for seed in seeds:
        world, generate_s = world_for(seed, worlds)
        rows = baseline_rows(mean_train_trajectory(world))
        for name, make in (extra_rows or {}).items():
            rows[name] = make(seed)
        groups, learned_info = None, {}
        for name in LEARNED_PRESETS if learned is not None else ():
            started = time.perf_counter()
            given = learned.models.get(name)
            runs = learned.runs or worlds / "runs"
            model_dir = (
                Path(given.format(seed=seed))
                if given
                else train_learned(name, world, runs / f"seed{seed}" / name, learned.steps)
            )
            trained_s = time.perf_counter() - started
            split_name = split + UNFILTERED
            if name == GROUP_ROW:  # K samples per scene; the row is their first when both temperatures agree
                groups = learned_plans(model_dir, world, split_name, GROUP_SAMPLES, learned.group_temperature)
            same = name == GROUP_ROW and learned.row_temperature == learned.group_temperature
            plans = groups if same else learned_plans(model_dir, world, split_name, 1, learned.row_temperature)
            rows[name] = plan_row(plans)
            learned_info[name] = {
                "model": str(model_dir),
                "train_s": 0.0 if given else trained_s,
                "predict_s": time.perf_counter() - started - trained_s,
                "row_temperature": learned.row_temperature,
                **({"group_temperature": learned.group_temperature} if name == GROUP_ROW else {}),
            }
        started = time.perf_counter()
        scores = score_split(world, split + UNFILTERED, rows, groups)
        filtered = set(load_split(world / "splits", split).scene_filter.tokens or ())
        before = summarise(scores, set(scores.tokens))
        after = summarise(scores, filtered)
        labels = load_scenario_labels(world / "splits" / f"{split}.yaml")
        checks = check_targets(after, before, len(labels.logs))
        report["seeds"][seed] = {
            "world": str(world),
            "generate_s": generate_s,
            "score_s": time.perf_counter() - started,
            "test_logs": len(labels.logs),
            "towns": labels.towns,
            "before": before,
            "after": after,
            "targets": checks,
        }
        if learned_info:
            report["seeds"][seed]["learned"] = learned_info
            report["seeds"][seed]["paired"] = {
                stage: paired_difference(scores, keep, "vla_imitation", "ego_status")
                for stage, keep in (("before", set(scores.tokens)), ("after", filtered))
            }
    return report


def print_report(report: dict) -> None:
    for seed, entry in report["seeds"].items():
        print(
            f"\n## world seed {seed}: {entry['test_logs']} test logs in {', '.join(entry['towns'])}"
            + (f" (generated in {entry['generate_s']:.0f} s)" if entry["generate_s"] else "")
        )
        for stage in ("before", "after"):
            data = entry[stage]
            print(
                f"\n### test split {stage} the filter: {data['scenes']} scenes "
                f"({', '.join(f'{k} {v}' for k, v in data['scenario_counts'].items())})"
            )
            for version in ("v1", "v2"):
                columns = [c for c in METRIC_COLUMNS[version] if c != "score"] + ["score"]
                title = "PDMS v1.1" if version == "v1" else "EPDMS v2"
                print(f"\n| {title} | " + " | ".join(SHORT[c] for c in columns) + " |")
                print("|---" * (len(columns) + 1) + "|")
                for name, row in data["rows"].items():
                    values = row[version]["columns"]
                    print(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in columns) + " |")
            scenarios = list(data["scenario_counts"])
            print("\n| per scenario (PDMS v1.1 / EPDMS v2) | " + " | ".join(scenarios) + " |")
            print("|---" * (len(scenarios) + 1) + "|")
            for name, row in data["rows"].items():
                cells = [f"{row['v1']['per_scenario'][s]:.2f} / {row['v2']['per_scenario'][s]:.2f}" for s in scenarios]
                print(f"| {name} | " + " | ".join(cells) + " |")
            shares = data["rows"]["constant_velocity"]["safety_failure_share"]
            print(
                "| constant velocity fails a safety metric | "
                + " | ".join(f"{shares[s]:.2f}" for s in scenarios)
                + " |"
            )
            if "groups" in data:
                groups = data["groups"]
                by_metric = ", ".join(f"{SHORT.get(m, m)} {v:.2f}" for m, v in groups["share_by_metric"].items())
                temperature = entry.get("learned", {}).get(GROUP_ROW, {}).get("group_temperature", 1.0)
                print(
                    f"\nK = {GROUP_SAMPLES} samples of {GROUP_ROW} per scene at temperature {temperature:g} "
                    f"({groups['count']} groups): a sub-metric other than EP varies in {groups['share_varying']:.2f} "
                    f"of them ({by_metric or 'none'})"
                )
            if "paired" in entry:
                print(f"\n| {stage}: vla_imitation - ego_status, per scene | mean | 95% CI (log-clustered) |")
                print("|---|---|---|")
                for version, diff in entry["paired"][stage].items():
                    print(
                        f"| {'PDMS v1.1' if version == 'v1' else 'EPDMS v2'} ({diff['scenes']} scenes, "
                        f"{diff['logs']} logs) | {diff['mean']:+.3f} | [{diff['low']:+.3f}, {diff['high']:+.3f}] |"
                    )
        for name, info in entry.get("learned", {}).items():
            timing = f"trained in {info['train_s']:.0f} s, predicted in {info['predict_s']:.0f} s"
            heat = info.get("row_temperature", 1.0)
            print(f"\n{name}: {info['model']} ({timing}; its row's plans at sampler temperature {heat:g})")
        print("\n| target | measured | met |\n|---|---|---|")
        for target, value, ok in entry["targets"]:
            print(f"| {target} | {value} | {'yes' if ok else 'NO'} |")
    print("\n## targets over the seeds\n\n| target | " + " | ".join(f"seed {s}" for s in report["seeds"]) + " |")
    print("|---" * (len(report["seeds"]) + 1) + "|")
    first = next(iter(report["seeds"].values()))
    for k, (target, _, _) in enumerate(first["targets"]):
        cells = [f"{e['targets'][k][1]} {'✓' if e['targets'][k][2] else '✗'}" for e in report["seeds"].values()]
        print(f"| {target} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--worlds", metavar="DIR", help="keep (and reuse) the worlds in DIR/seed<k> (default: a temp dir)"
    )
    parser.add_argument(
        "--trajectories",
        nargs="+",
        default=[],
        metavar="NAME=FILE",
        help="more rows: a trajectory file per row, '{seed}' replaced by the world seed",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the whole report as JSON")
    parser.add_argument(
        "--learned", action="store_true", help="add the ego-status-only and the VLA imitation models (trained here)"
    )
    parser.add_argument(
        "--learned-steps", type=int, metavar="N", help="imitation steps of each (default: the preset's budget)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help=f"reuse trained models ({', '.join(LEARNED_PRESETS)}; '{{seed}}' replaced by the world seed)",
    )
    parser.add_argument("--runs", metavar="DIR", help="where the learned models are trained (default <worlds>/runs)")
    parser.add_argument(
        "--group-temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="sampler temperature of the K = 8 samples per scene of the group share (default 1, as trained)",
    )
    parser.add_argument(
        "--learned-temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="sampler temperature of the learned rows' plans (default 1, a sample as trained; 0: noise-free)",
    )
    args = parser.parse_args()
    models = {}
    for item in args.models:
        name, _, folder = item.partition("=")
        if name not in LEARNED_PRESETS or not folder:
            parser.error(f"--models {item!r}: expected NAME=DIR with NAME one of {', '.join(LEARNED_PRESETS)}")
        models[name] = folder
    runs = Path(args.runs) if args.runs else None
    learned = LearnedRows(args.learned_steps, models, runs, args.group_temperature, args.learned_temperature)
    extra = {}
    for item in args.trajectories:
        name, _, pattern = item.partition("=")
        if not pattern:
            parser.error(f"--trajectories {item!r}: expected NAME=FILE")
        extra[name] = lambda seed, pattern=pattern: file_row(pattern, seed)
    with tempfile.TemporaryDirectory() as tmp:
        learned_rows = learned if args.learned or models else None
        report = calibrate(args.seeds, Path(args.worlds) if args.worlds else Path(tmp), extra, learned=learned_rows)
        print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
