"""Data-path speed: synthetic scenes generated per second, scenes loaded per second from OpenScene logs, metric
caches built per second from logs + map, and metric caches loaded per second from disk.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py [--logs 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.cache_io import MetricCacheStore, build_metric_cache_store
from navsim_eval.synthetic.world import WorldConfig, generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        world = generate_world(root / "world", WorldConfig(num_logs=args.logs))
        generate_s = time.perf_counter() - start

        split = load_split(world.splits_dir, f"{world.data_split}_all")
        start = time.perf_counter()
        loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
        scenes = [loader[token] for token in loader.tokens]
        load_s = time.perf_counter() - start

        start = time.perf_counter()
        caches = [build_metric_cache_from_map(s, load_map(s.map_name, world.maps_root)) for s in scenes]
        build_s = time.perf_counter() - start

        store = build_metric_cache_store(root / "cache", caches)
        start = time.perf_counter()
        reopened = MetricCacheStore(store.root)
        loaded = [reopened[token] for token in reopened.tokens()]
        read_s = time.perf_counter() - start

    n = len(scenes)
    print(f"{args.logs} synthetic logs, {world.num_frames} frames, {n} scenes, CAM_F0 rendered at 320x180\n")
    print("| step | scenes | seconds | scenes / s |")
    print("|---|---|---|---|")
    for name, count, seconds in (
        ("generate the synthetic world (simulate, render, write)", n, generate_s),
        ("load scenes from OpenScene logs", n, load_s),
        ("build metric caches from logs + map (PDM-Closed included)", n, build_s),
        ("load metric caches from disk", len(loaded), read_s),
    ):
        print(f"| {name} | {count} | {seconds:.2f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    main()
