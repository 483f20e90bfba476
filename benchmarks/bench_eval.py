"""Evaluation throughput: scenes/s of prediction per process and its scaling to 2 processes (shards, as ``vla-drive
eval --shard i/2`` runs them), and of the metric-cache build with 1 and 2 worker processes.

    .venv/bin/python benchmarks/bench_eval.py [--logs 2] [--backbone small-qwen2.5-vl] [--batch-size 8]

Each prediction process runs with one intra-op thread (``OMP_NUM_THREADS=1``), as one process per GPU would; the
times are of the prediction alone (model loading and imports excluded), measured inside each process. The 2-process
run predicts the same scenes as the 1-process run, split into two shards that run at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One prediction process: predict shard (i, n) and print its scenes and seconds as JSON."""
    import torch

    torch.set_num_threads(1)
    from vla_drive.eval.leaderboard import EvalSettings, predict_shard, predict_split
    from vla_drive.model.vla import DrivingVLA

    model = DrivingVLA.from_pretrained(args.model)
    settings = EvalSettings(steps=args.steps, batch_size=args.batch_size)
    index, count = (int(part) for part in args.worker.split("/"))
    start = time.perf_counter()
    if count == 1:
        predict_split(model, args.split, args.data_root, Path(args.out) / "predictions", settings)
    else:
        predict_shard(model, args.split, args.data_root, Path(args.out) / "predictions", settings, (index, count))
    seconds = time.perf_counter() - start
    parts = Path(args.out) / "predictions" / (f"shard-{index}-of-{count}" if count > 1 else "")
    scenes = 0
    import numpy as np

    for part in parts.glob("part-*.npz"):
        with np.load(part) as data:
            scenes += len(data["tokens"])
    print(json.dumps({"scenes": scenes, "seconds": seconds}))


def run_shards(count: int, common: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, *common, "--out", str(out), "--worker", f"{i}/{count}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(count)
    ]
    results = []
    for process in processes:
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a prediction process failed (exit {process.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=2, help="synthetic logs (about 45 scenes each)")
    parser.add_argument("--backbone", default="small-qwen2.5-vl")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    parser.add_argument("--data-root", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import numpy as np

    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.synthetic.world import WorldConfig, generate_world
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.eval.scoring import build_metric_caches
    from vla_drive.model.head import HeadConfig
    from vla_drive.model.vla import DrivingVLA, VLAConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = generate_world(root / "world", WorldConfig(num_logs=args.logs))
        split = world.splits_dir / "synthetic_all.yaml"
        loader = SceneLoader.from_split_file(split, world.data_root)
        model = DrivingVLA.build(
            VLAConfig(backbone=args.backbone, head=HeadConfig(hidden_size=128, depth=4, num_heads=4))
        )
        dataset = SceneDataset.for_model(loader, model)
        model.fit_normalizer(np.stack([dataset[i].trajectory for i in range(len(dataset))]))
        model_dir = model.save_pretrained(root / "model")
        common = ["--model", str(model_dir), "--split", str(split), "--data-root", str(world.data_root)]
        common += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
        print(
            f"{len(loader)} scenes, backbone {args.backbone}, batch {args.batch_size}, {args.steps} steps, "
            f"{os.cpu_count()} CPUs\n"
        )

        (one,) = run_shards(1, common, root / "one")
        two = run_shards(2, common, root / "two")
        base = one["scenes"] / one["seconds"]
        wall = max(r["seconds"] for r in two)
        total = sum(r["scenes"] for r in two) / wall
        print("| prediction | scenes | seconds | scenes/s per process | scenes/s total | speed-up |")
        print("|---|---|---|---|---|---|")
        print(f"| 1 process | {one['scenes']} | {one['seconds']:.1f} | {base:.2f} | {base:.2f} | 1.00 |")
        per = " / ".join(f"{r['scenes'] / r['seconds']:.2f}" for r in two)
        print(
            f"| 2 processes (shards 0/2, 1/2) | {sum(r['scenes'] for r in two)} | {wall:.1f} | {per} | "
            f"{total:.2f} | {total / base:.2f} |"
        )

        print("\n| metric caches | seconds | scenes/s | speed-up |")
        print("|---|---|---|---|")
        timings = {}
        for workers in (1, 2):
            start = time.perf_counter()
            build_metric_caches(loader, world.maps_root, root / f"caches{workers}", workers=workers)
            timings[workers] = time.perf_counter() - start
            rate = len(loader) / timings[workers]
            speedup = timings[1] / timings[workers]
            print(f"| {workers} worker(s) | {timings[workers]:.1f} | {rate:.1f} | {speedup:.2f} |")


if __name__ == "__main__":
    main()
