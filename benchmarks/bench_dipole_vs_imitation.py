"""Does DIPOLE beat imitation? ``vla-drive compare`` with imitation and DIPOLE only, over >= 5 seeds, each seed on
a world of its own (world seed = run seed), printed as tables.

Per seed: the imitation start and DIPOLE from it with the preset's budget; omega (DIPOLE) and the sampler
temperature (imitation) are chosen on ``synthetic_val`` over grids of the same size, and ``synthetic_test`` is
evaluated once, at the chosen knob. Printed: PDMS v1.1 and EPDMS v2 per policy (mean ± std over seeds), the paired
difference DIPOLE - imitation per seed and overall with a 95% interval (bootstrap over test logs, seeds paired), the
distance each drives relative to the logged human (a speed hack shows here), collapses, and the verdict: DIPOLE
beats imitation only when the interval lies above zero. Runs are kept under ``--out``: a second call continues where
one stopped; the proof's report goes to ``<out>/proof/`` (so ``--out`` may be a whole comparison's folder, e.g.
``runs/compare-full-cpu``, whose imitation and DIPOLE runs are then reused).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dipole_vs_imitation.py [--preset full] [--seeds 0 1 2 3 4]
        [--out runs/proof] [budget.iterations=100 knobs.omegas=0,1,3,5,8 algorithm.beta=2 ...]

``budget.*`` / ``knobs.*`` overrides change the plan, any other ``key.sub=value`` both stages' configs (as for
``vla-drive compare``). ``--preset quick`` gives a small, fast version (say little: few scenes, short training).
"""

from __future__ import annotations

import argparse
import math

from vla_drive.eval.compare import load_plan, run_comparison
from vla_drive.eval.compare.report import paired_to, read_results, report_tables, write_report
from vla_drive.eval.stats import mean_std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full", help="a compare preset (configs/compare/) or YAML file")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="runs/proof")
    args, overrides = parser.parse_known_args()
    if len(args.seeds) < 5:
        print(f"note: {len(args.seeds)} seeds; the proof asks for at least 5")
    plan = load_plan(args.preset, args.out, algorithms=["dipole"], seeds=args.seeds, overrides=overrides)
    failures = run_comparison(plan)
    report = plan.out / "proof"  # beside the report of a whole comparison that may share this folder
    write_report(plan, into=report)
    rows, scenes, budgets = read_results(report)
    print(report_tables(rows, scenes, budgets, ["imitation", "dipole"]))
    test = [r for r in rows if r["split"] == "synthetic_test"]
    diff = paired_to(scenes, "dipole", "imitation")
    epdms = paired_to(scenes, "dipole", "imitation", "v2_score")
    if diff is None or not math.isfinite(diff.mean):
        print(f"no seed has both policies on test yet ({len(failures)} failed runs: {sorted(failures)})")
        return
    distance = {
        name: mean_std([float(r["distance_ratio"]) for r in test if r["algorithm"] == name])[0]
        for name in ("imitation", "dipole")
    }
    print("| seed | Δ PDMS (DIPOLE - imitation) | Δ EPDMS |")
    print("|---|---|---|")
    for seed in sorted(diff.per_seed):
        print(f"| {seed} | {diff.per_seed[seed]:+.4f} | {epdms.per_seed.get(seed, float('nan')):+.4f} |")
    print(
        f"\n{len(diff.per_seed)} seeds, {diff.scenes} test scenes in {diff.logs} logs: Δ PDMS {diff.mean:+.4f} "
        f"[{diff.low:+.4f}, {diff.high:+.4f}], Δ EPDMS {epdms.mean:+.4f} [{epdms.low:+.4f}, {epdms.high:+.4f}]; "
        f"distance / human: imitation {distance['imitation']:.3f}, DIPOLE {distance['dipole']:.3f}"
    )
    if not diff.has_interval:
        print("one test log per seed: no interval, no verdict (use worlds with several test logs)")
        return
    verdict = "beats" if diff.low > 0 else ("is beaten by" if diff.high < 0 else "does NOT clearly beat")
    print(f"DIPOLE {verdict} imitation on synthetic_test (95% interval of the paired PDMS difference)")


if __name__ == "__main__":
    main()
