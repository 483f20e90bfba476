"""Wall time of one DIPOLE iteration, split into sampling, scoring and update, for K = 8 and 16 samples per scene,
with the demo model (config demo-dipole: small-qwen2.5-vl backbone, frozen and cached; the demo head).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_rl.py [--scenes 8] [--workers 1]

Scoring runs in the persistent process pool of the RL stage (``--workers``; 1 = in the training process, which
on a 2-core machine avoids competing with the update for the cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import build_metric_cache_store
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.algorithms.dipole import Dipole
from vla_drive.config import get_preset
from vla_drive.data.dataset import SceneDataset
from vla_drive.data.feature_cache import CachedFeatureDataset, build_feature_cache, collate_cached
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rollout import PdmReward, collect_rollouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8, help="scenes per iteration (demo-dipole: 8)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = get_preset("demo-dipole")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = generate_world(root / "world", WorldConfig(num_logs=1, frames_per_log=14 + args.scenes - 1))
        split = load_split(world.splits_dir, "synthetic_all")
        loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
        scenes = [loader[t] for t in loader.tokens][: args.scenes]
        model = DrivingVLA.build(config.model)
        dataset = SceneDataset.for_model(scenes, model)
        model.fit_normalizer(np.stack([dataset[i].trajectory for i in range(len(dataset))]))
        cached = CachedFeatureDataset(build_feature_cache(model.backbone, dataset, root / "features"))
        batch = collate_cached([cached[i] for i in range(len(cached))])
        caches = [build_metric_cache_from_map(s, load_map(s.map_name, world.maps_root)) for s in scenes]
        store = build_metric_cache_store(root / "cache", caches)
        reward = PdmReward(store.root, "v1", workers=args.workers)
        model.head.freeze_base()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        print(
            f"demo model: head {sum(p.numel() for p in model.head.parameters()) / 1e6:.2f} M params, "
            f"{args.scenes} scenes per iteration, {config.algorithm.rollout_steps} denoising steps, "
            f"{'stochastic' if config.algorithm.stochastic else 'deterministic'} rollouts + the logged trajectory "
            f"(include_logged={config.algorithm.include_logged}), "
            f"{torch.get_num_threads()} threads, scoring workers {args.workers}\n"
        )
        print("| K | sampling s | scoring s | update s | iteration s | scoring share |")
        print("|---|---|---|---|---|---|")
        for k in (8, 16):
            algorithm = Dipole(replace(config.algorithm, samples_per_scene=k))
            timings = []
            for repeat in range(args.repeats + 1):
                generator = torch.Generator().manual_seed(repeat)
                rollouts, stats = collect_rollouts(
                    model,
                    batch.cond,
                    batch.tokens,
                    algorithm.rollout_spec(),
                    reward,
                    generator,
                    logged=batch.trajectory,
                )
                start = time.perf_counter()
                rollouts = algorithm.prepare(rollouts)
                loss, _ = algorithm.loss(model, rollouts, torch.arange(rollouts.num_samples))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                update = time.perf_counter() - start
                if repeat:  # the first iteration warms the scorer's scene contexts and the allocator
                    timings.append((stats.sample_seconds, stats.score_seconds, update))
            sample_s, score_s, update_s = np.median(np.array(timings), axis=0)
            total = sample_s + score_s + update_s
            print(f"| {k} | {sample_s:.3f} | {score_s:.3f} | {update_s:.3f} | {total:.3f} | {score_s / total:.0%} |")
        reward.close()


if __name__ == "__main__":
    main()
