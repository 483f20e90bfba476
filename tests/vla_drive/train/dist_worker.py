"""Run under ``torchrun --nproc_per_node 2`` by test_multiprocess.py: trains, checkpoints, resumes and consolidates
under DeepSpeed ZeRO (``--stage 2`` / ``3``) or plain DDP (``--stage ddp``) and writes what it saw to
``<out>/results.json`` (rank 0).

Scenarios, each with its own run directory under ``<out>``:
  standin      the stand-in model with a noisy objective: 6 steps (checkpoints at 3 and 6), then a fresh Trainer
               resumed from step 3 runs to 6 again; consolidation of step 6 against the gathered live weights
  exact        the deterministic objective, 2 samples per rank (compared with one process x 4 samples by the test)
  bf16         (stage 2 only) two bf16 steps
  vla          a real tiny DrivingVLA (LoRA backbone) on the samples pickled by the test: 4 steps, resume from 2,
               consolidation of step 4 against the gathered live weights
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root, for tests.* imports

from tests.vla_drive.train.standins import (
    StandInModel,
    exact_objective,
    imitation_objective,
    noisy_objective,
    regression_data,
    stand_in_config,
    tiny_vla_builder,
    with_deepspeed,
)
from vla_drive.train import Trainer, consolidate, setup_accelerator


def gathered(model: torch.nn.Module, stage: int) -> dict[str, torch.Tensor]:
    """Full copies of every parameter (ZeRO-3 partitions gathered on all ranks)."""
    params = dict(model.named_parameters())
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
            return {name: p.detach().clone().float() for name, p in params.items()}
    return {name: p.detach().clone().float() for name, p in params.items()}


def max_diff(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> float:
    assert left.keys() == right.keys(), sorted(set(left) ^ set(right))
    return max(float((left[k] - right[k].float()).abs().max()) for k in left)


def run(config, build, objective, data, collate_fn=None):
    accelerator = setup_accelerator(config)
    model = build()
    trainer = Trainer(model, objective, config, dataset=data, collate_fn=collate_fn, accelerator=accelerator)
    return trainer, [m["loss"] for m in trainer.fit()]


def scenario_resume(
    out: Path,
    name: str,
    stage,
    build,
    objective,
    data,
    collate_fn=None,
    steps=6,
    predict_samples=None,
    deepspeed_config="",
    **train,
):
    half = steps // 2
    base = with_deepspeed(
        stand_in_config(out / name, max_steps=steps, checkpoint_every=half, **train), stage, deepspeed_config
    )
    trainer, losses = run(base, build, objective, data, collate_fn)
    live = gathered(trainer.model, stage)
    first = out / name / "checkpoints" / f"step_{half:08d}"
    resumed_cfg = with_deepspeed(
        stand_in_config(out / f"{name}-resumed", max_steps=steps, checkpoint_every=half, resume=str(first), **train),
        stage,
        deepspeed_config,
    )
    resumed, resumed_losses = run(resumed_cfg, build, objective, data, collate_fn)
    final = out / name / "checkpoints" / f"step_{steps:08d}"
    model = consolidate(final, build)
    consolidated = {k: v for k, v in model.named_parameters()}
    extra = {}
    if predict_samples:  # the live (ZeRO-sharded) model predicts like the consolidated one

        def predict(m):
            return m.predict(predict_samples, num_samples=2, steps=2, seed=0)

        extra["predict_vs_consolidated"] = float(abs(resumed.call_model(predict) - predict(model)).max())
    return {
        **extra,
        "losses": losses,
        "resumed_losses": resumed_losses,
        "resumed_vs_live": max_diff(gathered(resumed.model, stage), live),
        "consolidated_vs_live": max_diff({k: v.detach() for k, v in consolidated.items()}, live),
        "trainer_state": resumed.state.__dict__,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=["ddp", "2", "3"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vla-samples", type=Path)
    args = parser.parse_args()
    args.stage = None if args.stage == "ddp" else int(args.stage)
    torch.set_num_threads(1)
    results: dict[str, object] = {}
    data = regression_data()
    results["standin"] = scenario_resume(
        args.out, "standin", args.stage, StandInModel, noisy_objective, data, batch_size=2
    )
    _, results["exact"] = run(
        with_deepspeed(stand_in_config(args.out / "exact", max_steps=6, batch_size=2, checkpoint_every=0), args.stage),
        StandInModel,
        exact_objective,
        data,
    )
    if args.stage == 2:
        bf16 = stand_in_config(args.out / "bf16", max_steps=2, batch_size=2, mixed_precision="bf16")
        _, results["bf16"] = run(with_deepspeed(bf16, args.stage), StandInModel, noisy_objective, data)
    if args.vla_samples:
        from vla_drive.model.processor import Collator

        samples = pickle.loads(args.vla_samples.read_bytes())
        build = tiny_vla_builder(samples)
        collate = Collator(build().backbone.processor)
        # Every head parameter partitioned under ZeRO-3 (none kept whole as "persistent"), as in a full-size head.
        ds_file = args.out / "zero3_partition_all.json"
        ds_file.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}))
        results["vla"] = scenario_resume(
            args.out,
            "vla",
            args.stage,
            build,
            imitation_objective,
            samples,
            collate,
            steps=4,
            predict_samples=samples[:2],
            batch_size=1,
            deepspeed_config=str(ds_file) if args.stage == 3 else "",
        )
    if torch.distributed.get_rank() == 0:
        (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
