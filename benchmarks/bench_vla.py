"""End-to-end prediction latency of a DrivingVLA per scene, backbone included: K = 1 and 16 trajectories at 2, 5
and 10 steps, guided (DIPOLE, both branches in one batched forward per step) vs unguided.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_vla.py [--backbone small-qwen2.5-vl]

The overhead of guidance is relative to the whole prediction (backbone encode + sampling), as a deployed model
pays it. The backbone runs once per scene, however many samples and branches.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from common import median_ms

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="small-qwen2.5-vl")
    parser.add_argument("--head-hidden", type=int, default=256)
    parser.add_argument("--head-depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = generate_world(tmp, WorldConfig(num_logs=1, frames_per_log=15, image_size=(448, 252)))
        split = load_split(world.splits_dir, "synthetic_all")
        loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
        head = HeadConfig(hidden_size=args.head_hidden, depth=args.head_depth, num_heads=4)
        model = DrivingVLA.build(VLAConfig(backbone=args.backbone, head=head))
        sample = SceneDataset.for_backbone(loader, model.backbone)[0]
    backbone_params = sum(p.numel() for p in model.backbone.parameters()) / 1e6
    head_params = sum(p.numel() for p in model.head.parameters()) / 1e6
    with torch.no_grad():
        encode_ms = median_ms(lambda: model.encode(model.collate([sample])), args.repeats)
    print(
        f"backbone {args.backbone} ({backbone_params:.1f} M params), head {head_params:.1f} M params, "
        f"{torch.get_num_threads()} threads; backbone encode alone: {encode_ms:.1f} ms per scene\n"
    )
    print("| K | steps | unguided ms | guided ms | guidance overhead |")
    print("|---|---|---|---|---|")
    for k in (1, 16):
        for steps in (2, 5, 10):
            plain = median_ms(lambda k=k, s=steps: model.predict([sample], k, s, omega=0.0, seed=0), args.repeats)
            guided = median_ms(lambda k=k, s=steps: model.predict([sample], k, s, omega=1.5, seed=0), args.repeats)
            print(f"| {k} | {steps} | {plain:.1f} | {guided:.1f} | {100 * (guided / plain - 1):+.0f}% |")
    print("\nomega = 0 takes the pos branch alone (one forward per step); omega > 0 evaluates pos and neg together.")


if __name__ == "__main__":
    main()
