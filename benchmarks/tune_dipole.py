"""Tuning DIPOLE on validation only: its options (issue 13, point 7) against today's defaults, synthetic_test untouched.

Each variant is DIPOLE with one option changed (the advantage normalisation, the weight of the logged trajectory in
each group, the rollouts' omega, the rollouts' sampler temperature, the learning rate, beta, the sampler temperature
its omega is swept at), trained from the same imitation start with the same budget as the comparison it reuses
(``--from``: its worlds, metric caches, frozen-backbone features, imitation starts and its default DIPOLE runs). Every
variant chooses its RL checkpoint and omega on ``synthetic_val`` exactly as ``vla-drive compare`` does, but never
evaluates ``synthetic_test``: the variant that validation prefers is then run once on test by the comparison itself
(``vla-drive compare ... <its override>``).

Printed per variant: the validation PDMS v1.1 at its chosen checkpoint and omega (mean over seeds), the paired
difference to the defaults over the validation scenes with a 95% interval (bootstrap over val logs, seeds paired),
the chosen omegas and iterations. Every variant picks its checkpoint and omega on these same scenes, so each score
is optimistic by the same selection (equal grids); the differences are what to read. A variant beats the defaults
only when its interval lies above zero.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tune_dipole.py --from runs/compare-full-cpu --seeds 0 1 2
        [--preset full-cpu] [--variants centred raw ...] [--out runs/tune-dipole]

Processes started with the same arguments share the work (each run is claimed, as in ``vla-drive compare``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from vla_drive.eval.compare import load_plan, run_comparison
from vla_drive.eval.compare.evaluation import load_plans, scene_rows
from vla_drive.eval.compare.plan import ComparePlan, check_plan, with_overrides
from vla_drive.eval.compare.report import diff_cell, paired_to
from vla_drive.eval.compare.runner import RESULT_FILE, run_folder, seed_world
from vla_drive.eval.stats import mean_std

DEFAULTS = "defaults"
VARIANTS: dict[str, tuple[str, ...]] = {
    DEFAULTS: (),
    "centred": ("algorithm.advantage=centred",),
    "raw": ("algorithm.advantage=raw",),
    "logged-0.5": ("algorithm.logged_weight=0.5",),
    "logged-0": ("algorithm.include_logged=false",),
    "logged-2": ("algorithm.logged_weight=2.0",),
    "logged-4": ("algorithm.logged_weight=4.0",),
    "rollout-omega-0.5": ("algorithm.rollout_omega=0.5",),
    "rollout-omega-1": ("algorithm.rollout_omega=1.0",),
    "rollout-T0.5": ("algorithm.rollout_temperature=0.5",),
    "rollout-T1.5": ("algorithm.rollout_temperature=1.5",),
    "rollout-T2": ("algorithm.rollout_temperature=2.0",),
    "lr-3e-5": ("train.learning_rate=3.0e-5",),
    "beta-1": ("algorithm.beta=1.0",),
    "beta-10": ("algorithm.beta=10.0",),
    "omega-at-T1": ("knobs.omega_temperature=1",),  # the default until val preferred 0 (docs/training.md)
    "omega-at-T0.5": ("knobs.omega_temperature=0.5",),
}
SHARED = ("worlds", "caches", "features", "runs/imitation")  # what every variant reuses from the comparison


def variant_plan(base: ComparePlan, name: str, out: Path) -> ComparePlan:
    """The comparison's DIPOLE plan with the variant's options: ``knobs.*`` change how its omega is swept and its
    checkpoint validated, the others its training options (the defaults are the comparison's own runs)."""
    if name == DEFAULTS:
        return base
    folder = out / name
    for shared in SHARED:
        link, target = folder / shared, base.out / shared
        if target.exists() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve(), target_is_directory=True)
    knobs = [option for option in VARIANTS[name] if option.startswith("knobs.")]
    training = tuple(option for option in VARIANTS[name] if not option.startswith("knobs."))
    plan = replace(with_overrides(base, knobs), out=folder, rl_overrides=(*base.rl_overrides, *training))
    check_plan(plan)
    return plan


def val_rows(plan: ComparePlan, name: str, seed: int) -> list[dict[str, object]]:
    """One row per validation scene of the seed's DIPOLE run at its chosen checkpoint and omega (``scene_rows``:
    token, log, ``v1_score``, ...), labelled ``algorithm`` = the variant and ``seed`` as the report's scene rows are;
    empty while the run is unfinished."""
    from navsim_eval.data.loader import SceneLoader
    from vla_drive.eval.scoring import SceneScorer

    folder = _dipole_folder(plan, seed)
    if not (folder / RESULT_FILE).is_file():
        return []
    world = seed_world(plan, seed)
    loader = SceneLoader.from_split_file(world.split("val"), world.root, plan.budget.val_scenes)
    plans = load_plans(folder / "val_plans.npz")
    table = SceneScorer.from_scenes(loader, world.maps, world.caches / "val", "v1").score_plans(plans)
    return [{**row, "algorithm": name, "seed": seed} for row in scene_rows(loader, plans, {"v1": table}, {})]


def _dipole_folder(plan: ComparePlan, seed: int) -> Path:
    return run_folder(plan, next(r for r in plan.runs() if r.algorithm.label == "dipole" and r.seed == seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", required=True, help="the comparison folder whose runs to reuse")
    parser.add_argument("--preset", default="full-cpu", help="that comparison's preset")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=[n for n in VARIANTS if n != DEFAULTS], choices=VARIANTS)
    parser.add_argument("--out", default="runs/tune-dipole")
    args = parser.parse_args()
    base = load_plan(args.preset, args.source, algorithms=["dipole"], seeds=args.seeds)
    out = Path(args.out)
    names = [DEFAULTS, *(n for n in args.variants if n != DEFAULTS)]
    plans = {name: variant_plan(base, name, out) for name in names}
    for name, plan in plans.items():
        failures = run_comparison(plan, test=False, say=lambda line, name=name: print(f"{name}: {line}"))
        for key, reason in failures.items():
            print(f"{name}: {key} failed: {reason}")
    rows = {name: {s: r for s in args.seeds if (r := val_rows(plan, name, s))} for name, plan in plans.items()}
    every_row = [row for seeds in rows.values() for found in seeds.values() for row in found]
    lines = [
        "| variant | options | seeds | val PDMS (mean ± std over seeds) | Δ val PDMS vs defaults [95% CI] | "
        "omega per seed | iteration per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, plan in plans.items():
        results = {s: json.loads((_dipole_folder(plan, s) / RESULT_FILE).read_text()) for s in rows[name]}
        means = [float(r["val"]["score"]) for r in results.values()]
        mean, std = mean_std(means) if means else (math.nan, math.nan)
        difference = "-" if name == DEFAULTS else diff_cell(paired_to(every_row, name, DEFAULTS))
        omegas = ", ".join(f"{r['chosen_knob']:g}" for r in results.values())
        iterations = ", ".join(f"{r['training'].get('selected_iteration', math.nan):g}" for r in results.values())
        lines.append(
            f"| {name} | {' '.join(VARIANTS[name]) or '(demo-dipole.yaml)'} | {len(means)} | {mean:.4f} ± {std:.4f} | "
            f"{difference} | {omegas} | {iterations} |"
        )
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning.md").write_text(table + "\n", encoding="utf-8")
    print(f"\n(synthetic_test untouched; * = the interval excludes 0) -> {out / 'tuning.md'}")


if __name__ == "__main__":
    main()
