"""Metric caching per scene on the shared worlds, against the official pipeline's figures; reactive scoring cost.

Run ``python benchmarks/bench_metric_caching.py`` (needs ``../shared/official_pipeline`` and, for the two-stage rows,
``../shared/official_two_stage``). One process, no pool; each figure is the best of two passes after a warm-up.
Per world it times, per scene:

* ``v1 only``: map inputs and PDM-Closed ranked with the v1.1 scorer (what one official v1.1 caching run does);
* ``both``: what ``navsim-eval cache`` does: one PDM-Closed planning, the v1.1 and the v2 pick, the reactive-traffic
  set-up; one cache serves both versions (the official pipeline caches each version in its own run).

The official figures are quoted from the issue that asked for this benchmark (the official ``run_metric_caching.py``
of v1.1 and v2 on the same worlds, 2 shared cores); they were not measured here. A second table times scoring one
trajectory per scene with log-replay against reactive IDM traffic (the two-stage splits' traffic).
"""

from __future__ import annotations

import json
import time

import numpy as np

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.data.splits import load_split
from navsim_eval.data.two_stage import load_two_stage_scenes
from navsim_eval.maps.locations import load_map
from navsim_eval.maps.route import scene_map_inputs
from navsim_eval.pdm.builder import build_metric_cache, build_metric_cache_from_map
from navsim_eval.pdm.metric_cache import SceneType
from navsim_eval.pdm.scorer import ScorerConfig, score
from navsim_eval.pipeline_conformance import default_pipeline_dir

PIPELINE = default_pipeline_dir()
WORLD = PIPELINE / "worlds" / "synthetic_seed11"
TWO_STAGE = PIPELINE.parent / "official_two_stage"
OFFICIAL_S_PER_SCENE = {"v1.1": (0.41, 0.59), "v2": (0.61, 0.98)}  # quoted, see the module docstring


def _v1_only(scene, nuplan_map):
    current = scene.current_frame
    inputs = scene_map_inputs(nuplan_map, current.ego, list(current.roadblock_ids), 100.0)
    return build_metric_cache(
        scene,
        inputs.drivable_map,
        inputs.route_lane_ids,
        inputs.centerline,
        speed_limit_mps=inputs.speed_limit_mps,
        red_light_route_lane_ids=inputs.uncorrected_route_lane_ids,
        versions=("v1",),
    )


def _per_scene(fn, scenes, repeats: int = 2) -> float:
    """Seconds per scene: the best of ``repeats`` passes, after warming up on the first scenes."""
    for scene in scenes[:3]:
        fn(scene)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for scene in scenes:
            fn(scene)
        best = min(best, (time.perf_counter() - started) / len(scenes))
    return best


def main() -> None:
    nuplan_map = load_map("us-pa-pittsburgh-hazelwood", WORLD / "maps")
    loader = SceneLoader(WORLD, "synthetic", SceneFilter(frame_interval=1))
    one_stage = [loader[t] for t in loader.tokens]
    rows = [
        (
            f"one-stage (4+10 frames), {len(one_stage)} scenes",
            _per_scene(lambda s: _v1_only(s, nuplan_map), one_stage),
            _per_scene(lambda s: build_metric_cache_from_map(s, nuplan_map), one_stage),
        )
    ]
    caches = {}
    if TWO_STAGE.is_dir():
        split = load_split(TWO_STAGE / "splits", "synthetic_two_stage")
        scenes = load_two_stage_scenes(
            split, WORLD, TWO_STAGE / "world_additions" / "navhard_two_stage" / "synthetic_scene_pickles"
        )
        synthetic = [s.scene for s in scenes.stage_two.values()]
        for scene in synthetic:
            caches[scene.token] = build_metric_cache_from_map(scene, nuplan_map, scene_type=SceneType.SYNTHETIC)
        for token in scenes.stage_one.tokens:
            caches[token] = build_metric_cache_from_map(scenes.stage_one[token], nuplan_map)
        rows.append(
            (
                f"two-stage synthetic (v2 only), {len(synthetic)} scenes",
                float("nan"),
                _per_scene(
                    lambda s: build_metric_cache_from_map(s, nuplan_map, scene_type=SceneType.SYNTHETIC), synthetic
                ),
            )
        )
    low, high = OFFICIAL_S_PER_SCENE["v1.1"][0], OFFICIAL_S_PER_SCENE["v2"][1]
    print("metric caching, seconds per scene (one process)")
    print(f"{'world':<44} {'v1 only':>8} {'both':>8}  official v1.1 / v2 (quoted)   official / ours (both)")
    for name, v1_only, both in rows:
        print(
            f"{name:<44} {v1_only:>8.3f} {both:>8.3f}  {OFFICIAL_S_PER_SCENE['v1.1']} / {OFFICIAL_S_PER_SCENE['v2']}"
            f"   {low / both:.1f}x .. {high / both:.1f}x"
        )
    if caches:
        trajectories = json.loads((TWO_STAGE / "trajectories" / "constant_velocity.json").read_text())
        tokens = sorted(caches)
        timings = {}
        for label, config in (
            ("log replay", ScorerConfig()),
            ("reactive IDM", ScorerConfig(traffic_agents="reactive")),
        ):
            started = time.perf_counter()
            for token in tokens:
                score(caches[token], np.asarray(trajectories[token]), "v2", config)
            timings[label] = (time.perf_counter() - started) / len(tokens)
        print()
        print(f"v2 scoring of one trajectory per scene ({len(tokens)} two-stage scenes), seconds per scene")
        for label, seconds in timings.items():
            print(f"{label:<14} {seconds:.3f}   x{seconds / timings['log replay']:.1f} of log replay")


if __name__ == "__main__":
    main()
