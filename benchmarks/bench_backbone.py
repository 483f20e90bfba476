"""Backbone speed per preset: parameters, LoRA parameters, tokens per image, sequence length of a real driving prompt,
processor time, frozen forward and LoRA forward+backward, for a batch of synthetic-world scenes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_backbone.py [--batch 2] [--cameras 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import median_ms

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.data.dataset import SceneDataset
from vla_drive.model.backbone import VLMBackbone
from vla_drive.model.presets import PRESETS
from vla_drive.model.processor import collate, image_placeholder

CAMERA_ORDER = ("CAM_F0", "CAM_L0", "CAM_R0", "CAM_B0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=1, choices=range(1, len(CAMERA_ORDER) + 1))
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    cameras = CAMERA_ORDER[: args.cameras]
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        world = generate_world(Path(tmp), WorldConfig(num_logs=1, frames_per_log=16, cameras=cameras))
        split = load_split(world.splits_dir, f"{world.data_split}_all")
        loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
        print(
            f"batch {args.batch} x {len(cameras)} camera(s), {args.dtype} on {args.device}, "
            f"{torch.get_num_threads()} thread(s); times are medians of {args.repeats}\n"
        )
        print(
            "| preset | params | LoRA params | img px | tokens/img | seq len | processor ms | forward ms "
            "| LoRA fwd+bwd ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name in args.presets:
            frozen = VLMBackbone.from_preset(name, torch_dtype=dtype).to(args.device)
            dataset = SceneDataset.for_backbone(loader, frozen, cameras=cameras)
            samples = [dataset[i % len(dataset)] for i in range(args.batch)]
            batch = collate(samples, frozen)
            inputs = batch.to(args.device).inputs
            placeholder_id = frozen.processor.tokenizer.convert_tokens_to_ids(image_placeholder(frozen.processor))
            image_tokens = int((inputs["input_ids"][0] == placeholder_id).sum()) // len(cameras)
            processor_ms = median_ms(lambda samples=samples, bb=frozen: collate(samples, bb), args.repeats)

            def forward(bb: VLMBackbone = frozen, inputs=inputs) -> None:
                with torch.no_grad():
                    bb.encode(inputs)
                _sync(args.device)

            lora = VLMBackbone.from_preset(name, trainable="lora", torch_dtype=dtype).to(args.device).train()

            def forward_backward(bb: VLMBackbone = lora, inputs=inputs) -> None:
                tokens, _ = bb.encode(inputs)
                tokens.float().square().mean().backward()
                _sync(args.device)

            params = sum(p.numel() for p in frozen.parameters())
            lora_params = sum(p.numel() for p in lora.trainable_parameters().values())
            print(
                f"| {name} | {params / 1e6:.2f} M | {lora_params / 1e3:.1f} k | {frozen.image_size} | {image_tokens} "
                f"| {inputs['input_ids'].shape[1]} | {processor_ms:.1f} | {median_ms(forward, args.repeats):.1f} "
                f"| {median_ms(forward_backward, args.repeats):.1f} |"
            )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
