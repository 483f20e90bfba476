"""Scorer speed on the conformance cases: ms per case at K = 1, ms per candidate at K = 16 and 64.

Run on one core for figures comparable with the official ones:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scorer.py

The official NAVSIM code cannot run here (it needs nuplan-devkit), so its figures are the medians recorded when
the conformance cases were produced (index.json, 2-vCPU AMD EPYC, one process): about 19 ms (v1) and 31 ms (v2)
per case for simulate + score of two proposals. "K = 1" below is the same work: build the scene context (object
geometry, log replay, red lights), simulate and score the reference and one candidate, from a loaded cache.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import median_ms, perturbed_candidates

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.pdm.scorer import SceneContext, ScorerConfig, score


def _score_batch(case, batch: np.ndarray, version: str) -> None:
    context = SceneContext.build(case.cache, version)
    score(case.cache, batch, version, ScorerConfig(human_penalty_filter=False), context=context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", type=int, default=0, help="only the first N cases (0 = all)")
    args = parser.parse_args()
    directory = default_conformance_dir()
    paths = case_paths(directory)[: args.cases or None]
    cases = [load_case(p) for p in paths]
    official = json.loads((directory / "index.json").read_text())["timing_summary"]
    baseline = {
        "v1": official["v1_simulate_plus_score"]["median_ms"],
        "v2": official["v2_simulate_traffic_plus_score"]["median_ms"],
    }
    rng = np.random.default_rng(0)
    print(f"{len(cases)} conformance cases, median over cases of the median of {args.repeats} repeats\n")
    print("| version | official ms/case | ours ms/case K=1 | speed-up | ms/candidate K=16 | ms/candidate K=64 |")
    print("|---|---|---|---|---|---|")
    for version in ("v1", "v2"):
        config = ScorerConfig(human_penalty_filter=False)  # the official baseline timing excludes the filter
        per_case, per16, per64 = [], [], []
        for case in cases:
            per_case.append(
                median_ms(lambda c=case, v=version, g=config: score(c.cache, c.agent_trajectory, v, g), args.repeats)
            )
            for k, sink in ((16, per16), (64, per64)):
                batch = perturbed_candidates(case.agent_trajectory, k, rng)

                sink.append(median_ms(lambda c=case, b=batch, v=version: _score_batch(c, b, v), args.repeats) / k)
        ours = float(np.median(per_case))
        print(
            f"| {version} | {baseline[version]:.1f} | {ours:.2f} | {baseline[version] / ours:.1f}x "
            f"| {np.median(per16):.3f} | {np.median(per64):.3f} |"
        )
    print("\nK=16 / K=64 include building the scene context once per batch.")


if __name__ == "__main__":
    main()
