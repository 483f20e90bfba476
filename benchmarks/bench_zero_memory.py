"""Per-rank memory of parameters and optimizer state under DeepSpeed ZeRO-0 / 2 / 3 at 2 ranks, and the imitation
objective's training throughput on CPU, for a DrivingVLA with a fully trainable backbone.

    .venv/bin/python benchmarks/bench_zero_memory.py [--backbone small-qwen2.5-vl] [--steps 6] [--stages 0 2 3]

Each stage is one ``torchrun --standalone --nproc_per_node 2`` launch of this file (gloo on CPU, one thread per
rank). Memory is counted from the tensors each rank holds after training (exact, not sampled):

* params      the model's parameters as stored on this rank (ZeRO-3: its partition of each parameter)
* fp32 master the flat fp32 partition ZeRO-2/3 keep for the optimizer (a copy even in fp32 runs)
* optimizer   AdamW's exp_avg + exp_avg_sq on this rank (partitioned from ZeRO-1 on)

ZeRO-3 should hold about half of ZeRO-0's parameters per rank at 2 ranks (small parameters stay whole:
``stage3_param_persistence_threshold``). samples/s is the median over the steps after the first two, both ranks
together; on CPU it is bound by gloo collectives, which ZeRO-3 multiplies (an all-gather per layer and pass).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MB = 1024 * 1024


def _innermost_optimizer(optimizer):
    """The torch optimizer under accelerate's and DeepSpeed's wrappers, and the ZeRO optimizer if any."""
    chain = [optimizer]
    while hasattr(chain[-1], "optimizer"):
        chain.append(chain[-1].optimizer)
    zero = next((o for o in chain if type(o).__module__.startswith("deepspeed.runtime.zero")), None)
    return chain[-1], zero


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def worker(args: argparse.Namespace) -> None:
    from vla_drive.config import DistributedConfig, ExperimentConfig, TrainConfig
    from vla_drive.model.head import HeadConfig
    from vla_drive.model.normalizer import TrajectoryNormalizer
    from vla_drive.model.processor import Collator
    from vla_drive.model.vla import DrivingVLA, VLAConfig
    from vla_drive.train import Trainer, setup_accelerator

    torch.set_num_threads(1)
    samples = pickle.loads(Path(args.samples).read_bytes())
    train = TrainConfig(
        output_dir=str(Path(args.out) / f"run-zero{args.stage}"),
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=1e-4,
        warmup_steps=0,
        checkpoint_every=0,
        log_every=args.steps,
        loggers=(),
        resume="never",
    )
    config = ExperimentConfig(train=train, distributed=DistributedConfig(backend="deepspeed", zero_stage=args.stage))
    accelerator = setup_accelerator(config)  # before building: ZeRO-3 builds the backbone partitioned
    normalizer = TrajectoryNormalizer.fit(torch.stack([torch.from_numpy(s.trajectory) for s in samples]))
    vla_config = VLAConfig(
        backbone=args.backbone, trainable="full", head=HeadConfig(hidden_size=128, depth=4, num_heads=4)
    )
    model = DrivingVLA.build(vla_config, normalizer=normalizer)

    def imitation(model, batch):
        return model.imitation_loss(batch).mean(), {}

    trainer = Trainer(
        model,
        imitation,
        config,
        dataset=samples,
        collate_fn=Collator(model.backbone.processor),
        accelerator=accelerator,
    )
    history = trainer.fit()
    params = list(model.parameters())
    base, zero = _innermost_optimizer(trainer.optimizer)
    held = [getattr(p, "ds_tensor", p) for p in params]
    master = []
    if zero is not None:
        master = getattr(zero, "single_partition_of_fp32_groups", None) or getattr(
            zero, "fp32_partitioned_groups_flat", []
        )
    state = [t for s in base.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.ndim > 0]
    rate = [m["samples_per_s"] for m in history[2:]] or [history[-1]["samples_per_s"]]
    record = {
        "stage": args.stage,
        "rank": accelerator.process_index,
        "model_params": sum(int(getattr(p, "ds_numel", p.numel())) for p in params),
        "trainable_params": sum(int(getattr(p, "ds_numel", p.numel())) for p in params if p.requires_grad),
        "params_mb": _tensor_bytes(held) / MB,
        "master_mb": _tensor_bytes(master) / MB,
        "optimizer_mb": _tensor_bytes(state) / MB,
        "samples_per_s": statistics.median(rate),
        "final_loss": history[-1]["loss"],
    }
    (Path(args.out) / f"zero{args.stage}-rank{accelerator.process_index}.json").write_text(json.dumps(record))


def _samples(backbone: str, directory: Path) -> Path:
    from navsim_eval.data.loader import SceneLoader
    from navsim_eval.data.splits import load_split
    from navsim_eval.synthetic.world import WorldConfig, generate_world
    from vla_drive.data.dataset import SceneDataset
    from vla_drive.model.backbone import VLMBackbone

    world = generate_world(directory / "world", WorldConfig(num_logs=1, frames_per_log=21, image_size=(448, 252)))
    split = load_split(world.splits_dir, "synthetic_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    dataset = SceneDataset.for_backbone(loader, VLMBackbone.from_preset(backbone))
    path = directory / "samples.pkl"
    path.write_bytes(pickle.dumps([dataset[i] for i in range(len(dataset))]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="small-qwen2.5-vl")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2, help="samples per rank and step")
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 2, 3])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        samples = _samples(args.backbone, tmp_path)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
        for stage in args.stages:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
            command += [__file__, "--worker", "--stage", str(stage), "--samples", str(samples), "--out", tmp]
            command += ["--backbone", args.backbone, "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"ZeRO-{stage} launch failed:\n{result.stderr[-6000:]}")
        records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("zero*-rank*.json"))]
    first = records[0]
    print(
        f"DrivingVLA ({args.backbone}, full fine-tuning): {first['model_params'] / 1e6:.2f} M parameters, "
        f"{first['trainable_params'] / 1e6:.2f} M trainable; fp32, 2 CPU ranks x {args.batch_size} samples, "
        f"{args.steps} steps\n"
    )
    print("| ZeRO | rank | params MB | fp32 master MB | optimizer MB | total MB | samples/s | final loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        total = r["params_mb"] + r["master_mb"] + r["optimizer_mb"]
        print(
            f"| {r['stage']} | {r['rank']} | {r['params_mb']:.1f} | {r['master_mb']:.1f} | {r['optimizer_mb']:.1f} | "
            f"{total:.1f} | {r['samples_per_s']:.1f} | {r['final_loss']:.4f} |"
        )
    by_stage = {r["stage"]: r for r in records if r["rank"] == 0}
    if 0 in by_stage and 3 in by_stage:
        ratio = by_stage[3]["params_mb"] / by_stage[0]["params_mb"]
        print(f"\nZeRO-3 holds {100 * ratio:.0f}% of ZeRO-0's parameter bytes on rank 0.")


if __name__ == "__main__":
    main()
