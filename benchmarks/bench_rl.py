"""Wall time of one RL iteration of every algorithm, split into sampling, scoring and update, for K = 8 and 16
samples per scene, against DIPOLE measured in the same run, with the demo model (small-qwen2.5-vl backbone, frozen
and cached; the demo head, a coupled-flow one of the same size for GenPO) and each algorithm's demo preset
(configs/demo-<name>.yaml: its rollout steps, epochs x minibatches, Monte-Carlo pairs...).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_rl.py [--scenes 8] [--workers 1] [--algorithms dipole fpo]

The update is everything after scoring: ``prepare`` (advantages, old log-probabilities / losses / likelihoods,
reference chains) and every optimizer step of the iteration. Scoring runs in the persistent process pool of the
RL stage (``--workers``; 1 = in the training process, which on a 2-core machine avoids competing with the update
for the cores). Also printed: the trainable adapter parameters of each algorithm (DIPOLE trains two branches).
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
from vla_drive.algorithms.base import UpdateContext
from vla_drive.algorithms.registry import ALGORITHMS, make_algorithm
from vla_drive.config import get_preset
from vla_drive.data.dataset import SceneDataset
from vla_drive.data.feature_cache import CachedFeatureDataset, build_feature_cache, collate_cached
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rl import minibatch_layout, prepare_policy
from vla_drive.train.rollout import PdmReward, collect_rollouts

RL_NAMES = [name for name, cls in ALGORITHMS.items() if cls.uses_rollouts]


def one_iteration(model, algorithm, batch, reward, optimizer, seed: int) -> tuple[float, float, float, int]:
    """(sampling, scoring, update) seconds of one iteration and its optimizer steps."""
    generator = torch.Generator().manual_seed(seed)
    rollouts, stats = collect_rollouts(
        model, batch.cond, batch.tokens, algorithm.rollout_spec(), reward, generator, logged=batch.trajectory
    )
    start = time.perf_counter()
    spec = algorithm.update_spec()
    layout = minibatch_layout(rollouts.num_samples, spec, torch.Generator().manual_seed(seed))
    rollouts = algorithm.prepare(rollouts, UpdateContext(lambda fn: fn(model), layout[0], generator))
    algorithm.begin_iteration()
    steps = 0
    for epoch in layout:
        for rows in epoch:
            if algorithm.stop_requested():
                continue
            steps += 1
            loss, metrics = algorithm.loss(model, rollouts, rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            algorithm.after_step({**metrics, "lr": optimizer.param_groups[0]["lr"]})
    return stats.sample_seconds, stats.score_seconds, time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8, help="scenes per iteration (the demo presets: 8)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=RL_NAMES, choices=RL_NAMES)
    args = parser.parse_args()
    names = ["dipole", *[name for name in args.algorithms if name != "dipole"]]
    base = get_preset("demo-dipole")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = generate_world(root / "world", WorldConfig(num_logs=1, frames_per_log=14 + args.scenes - 1))
        split = load_split(world.splits_dir, "synthetic_all")
        loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
        scenes = [loader[t] for t in loader.tokens][: args.scenes]
        features = DrivingVLA.build(base.model)
        dataset = SceneDataset.for_model(scenes, features)
        normalizer = features.fit_normalizer(np.stack([dataset[i].trajectory for i in range(len(dataset))]))
        cached = CachedFeatureDataset(build_feature_cache(features.backbone, dataset, root / "features"))
        batch = collate_cached([cached[i] for i in range(len(cached))])
        caches = [build_metric_cache_from_map(s, load_map(s.map_name, world.maps_root)) for s in scenes]
        store = build_metric_cache_store(root / "cache", caches)
        reward = PdmReward(store.root, "v1", workers=args.workers)
        print(
            f"demo model (head {sum(p.numel() for p in features.head.parameters()) / 1e6:.2f} M params, cached "
            f"backbone), {args.scenes} scenes per iteration, each algorithm's demo preset, "
            f"{torch.get_num_threads()} threads, scoring workers {args.workers}, median of {args.repeats}\n"
        )
        print(
            "| algorithm | K | sampling s | scoring s | update s (steps) | update s / step | iteration s | x DIPOLE "
            "| trainable adapters |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        baseline: dict[int, float] = {}
        for name in names:
            preset = get_preset(f"demo-{name}")
            for k in (8, 16):
                model_config = replace(base.model, head=replace(base.model.head, kind=preset.model.head.kind))
                model = DrivingVLA.build(model_config, normalizer=normalizer, seed=0)
                algorithm = make_algorithm(replace(preset.algorithm, samples_per_scene=k))
                prepare_policy(model, algorithm, seed=0)
                trainable = [p for p in model.parameters() if p.requires_grad]
                optimizer = torch.optim.AdamW(trainable, lr=preset.train.learning_rate)
                timings = []
                for repeat in range(args.repeats + 1):
                    measured = one_iteration(model, algorithm, batch, reward, optimizer, seed=repeat)
                    if repeat:  # the first iteration warms the scorer's scene contexts and the allocator
                        timings.append(measured)
                sample_s, score_s, update_s, steps = np.median(np.array(timings), axis=0)
                total = sample_s + score_s + update_s
                baseline.setdefault(k, total)
                print(
                    f"| {name} | {k} | {sample_s:.3f} | {score_s:.3f} | {update_s:.3f} ({steps:.0f}) | "
                    f"{update_s / max(steps, 1):.3f} | {total:.3f} | {total / baseline[k]:.2f} | "
                    f"{sum(p.numel() for p in trainable) / 1e3:.0f} k |",
                    flush=True,
                )
        reward.close()


if __name__ == "__main__":
    main()
