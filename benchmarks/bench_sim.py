"""Simulator speed: ms per call of interpolation + simulation of K agent plans (K = 2, 16, 64), and per plan.

Run on one core for figures comparable with the scorer budget:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sim.py

Each call samples K plans to 41 reference states (``agent_reference_states``) and simulates them (``simulate``),
the work the scorer does per batch of candidates. "K = 2" matches one official ``pdm_score`` call (PDM-Closed +
agent); it is timed here as two agent plans. Plans are the conformance agent plans plus noise, so the stopping
controller and sharp turns occur as they do in the cases. Figures are medians over cases of the median of repeats.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import median_ms, perturbed_candidates

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.sim.interpolation import agent_reference_states
from navsim_eval.sim.simulator import initial_state_array, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cases", type=int, default=0, help="only the first N cases (0 = all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 16, 64])
    args = parser.parse_args()
    cases = [load_case(p) for p in case_paths(default_conformance_dir())[: args.cases or None]]
    if not cases:
        raise SystemExit(f"no conformance cases in {default_conformance_dir()}")
    rng = np.random.default_rng(0)

    print(f"{len(cases)} conformance cases, median over cases of the median of {args.repeats} repeats\n")
    print("| K | ms / call (interpolate + simulate) | ms / plan |")
    print("|---|---|---|")
    for k in args.sizes:
        per_call = []
        for case in cases:
            ego, plans = case.cache.ego, perturbed_candidates(case.agent_trajectory, k, rng)
            initial = initial_state_array(ego)
            per_call.append(
                median_ms(lambda e=ego, p=plans, s=initial: simulate(s, agent_reference_states(e, p)), args.repeats)
            )
        ms = float(np.median(per_call))
        print(f"| {k} | {ms:.3f} | {ms / k:.4f} |")


if __name__ == "__main__":
    main()
