"""Does DIPOLE beat imitation? Held-out PDMS on the synthetic world, over several seeds, per guidance omega.

For every seed: train the imitation stage (config demo-imitation), evaluate it on the held-out test split (logs the
training never saw), fine-tune it with DIPOLE (config demo-dipole) and evaluate DIPOLE at every omega with the same
sampling seed (a paired comparison). Prints mean and spread (std over seeds) per policy and states whether DIPOLE
at its best omega beats imitation by more than the seed spread. For context it also scores the logged human
trajectories and the mean training trajectory (a model-free baseline) on the same scenes. Results are kept per seed
in ``<out>/results.json``; running again skips finished seeds (and only reports when all are done).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dipole_vs_imitation.py --seeds 0 1 2 [--out runs/proof]
        [--imitation-steps 800] [--dipole-steps 300] [--omegas 0 0.5 1 1.5 2 3 5] [key.sub=value ...]

Extra ``key.sub=value`` arguments override both stage configs (e.g. ``algorithm.beta=2``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from navsim_eval.data.loader import SceneLoader
from vla_drive.config import data_paths, load_config
from vla_drive.data.dataset import SceneDataset
from vla_drive.eval.scoring import SceneScorer, summarize
from vla_drive.eval.sweep import DEFAULT_OMEGAS, sweep_guidance
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rl import train_rl
from vla_drive.train.stages import train_imitation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="runs/proof")
    parser.add_argument("--imitation-steps", type=int, default=800)
    parser.add_argument("--dipole-steps", type=int, default=300)
    parser.add_argument("--omegas", nargs="+", type=float, default=list(DEFAULT_OMEGAS))
    parser.add_argument("--eval-steps", type=int, default=10)
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    results_file = out / "results.json"  # per seed; a re-run skips the seeds already there (and just reports)
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for seed in args.seeds:
        run = out / f"seed{seed}"
        common = [f"train.seed={seed}", "train.eval_every=1000000", *overrides]
        imitation = load_config(
            "demo-imitation", [*common, f"train.output_dir={run}/imitation", f"train.max_steps={args.imitation_steps}"]
        )
        paths = data_paths(imitation)
        model_dir = run / "imitation" / "model"
        if str(seed) in results:
            continue
        model_dir = train_imitation(imitation)
        dipole = load_config(
            "demo-dipole",
            [
                *common,
                f"train.output_dir={run}/dipole",
                f"train.max_steps={args.dipole_steps}",
                f"train.init_from={model_dir}",
            ],
        )
        dipole_dir = train_rl(dipole)
        scenes, loader, scorer = _test_scenes(paths, out)
        rows = {}
        for name, directory, omegas in (("imitation", model_dir, [0.0]), ("dipole", dipole_dir, args.omegas)):
            model = DrivingVLA.from_pretrained(directory)
            dataset = SceneDataset.for_model(loader, model)
            rows[name] = sweep_guidance(model, dataset, scorer, omegas, steps=args.eval_steps, seed=1000)
        results[str(seed)] = rows
        results_file.write_text(json.dumps(results, indent=1))
    results = {int(seed): rows for seed, rows in results.items()}
    scenes, _, scorer = _test_scenes(paths, out)

    # context: the logged human trajectories and the mean training trajectory (no model at all) on the same scenes
    tokens = [scene.token for scene in scenes]
    mean_trajectory = DrivingVLA.from_pretrained(model_dir).normalizer.denormalize(np.zeros((1, 8, 3)))[0]
    baselines = {
        "human (logged)": np.stack([scene.future_trajectory().poses for scene in scenes]),
        "mean training trajectory": np.repeat(mean_trajectory[None], len(scenes), axis=0),
    }
    baseline_scores = {
        name: summarize(scorer.score(tokens, trajectories))["score"] for name, trajectories in baselines.items()
    }

    imitation = np.array([results[s]["imitation"][0]["score"] for s in args.seeds])
    print(
        f"\nheld-out PDMS (v1) on {len(scenes)} test scenes, {len(args.seeds)} seeds {args.seeds}; "
        f"imitation {args.imitation_steps} steps, DIPOLE {args.dipole_steps} steps\n"
    )
    print("| policy | omega | mean PDMS | std over seeds | per seed |")
    print("|---|---|---|---|---|")
    for name, score in baseline_scores.items():
        print(f"| {name} | - | {score:.4f} | - | - |")
    print(
        f"| imitation | - | {imitation.mean():.4f} | {imitation.std():.4f} | "
        f"{', '.join(f'{v:.4f}' for v in imitation)} |"
    )
    best = None
    for index, omega in enumerate(args.omegas):
        scores = np.array([results[s]["dipole"][index]["score"] for s in args.seeds])
        print(
            f"| DIPOLE | {omega:g} | {scores.mean():.4f} | {scores.std():.4f} | "
            f"{', '.join(f'{v:.4f}' for v in scores)} |"
        )
        if best is None or scores.mean() > best[1].mean():
            best = (omega, scores)
    margin = best[1].mean() - imitation.mean()
    spread = max(best[1].std(), imitation.std())
    verdict = "beats" if margin > spread else "does NOT beat"
    print(
        f"\nDIPOLE at its best omega ({best[0]:g}) {verdict} imitation by more than the seed spread: "
        f"margin {margin:+.4f}, spread {spread:.4f}"
    )


def _test_scenes(paths, out: Path):
    """The held-out test scenes, their loader and a scorer (metric caches shared by every seed)."""
    loader = SceneLoader.from_split_file(paths.val_split, paths.data_root)
    scenes = [loader[t] for t in loader.tokens]
    return scenes, loader, SceneScorer.from_scenes(loader, paths.maps_root, out / "metric_cache_test")


if __name__ == "__main__":
    main()
