"""Run under ``torchrun --nproc_per_node 2`` by test_multiprocess_rl.py: every RL algorithm of the registry, in one
launch, for one DeepSpeed ZeRO stage (``--stage 2`` / ``3``), through the real RL stage (``train_rl``) with PDM
rewards. Writes what it saw to ``<out>/results.json`` (rank 0).

Per algorithm: a straight run of 2 iterations (checkpoint after each), then a run resumed from the first
checkpoint into another folder; both final models (consolidated from the shards under ZeRO-3; the test compares
them) and the second iteration's metrics must agree exactly. During the straight run, forward hooks count every
call of a backbone or head module outside ``DrivingVLA.forward`` (a pass that is not a typed request) and outside
the engine's forward (a pass ZeRO-3 would not have gathered weights for), and the request types the model served.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root, for tests.* imports

import vla_drive.train.rl as rl_stage
from vla_drive.config import load_config, with_synthetic_world
from vla_drive.model.vla import DrivingVLA
from vla_drive.train.rl import train_rl

SETTINGS = {
    "algorithm.samples_per_scene": 2,
    "algorithm.rollout_steps": 2,
    "algorithm.update_epochs": 1,
    "algorithm.minibatches": 1,
    "train.batch_size": 1,
    "train.max_steps": 2,
    "train.checkpoint_every": 1,
    "train.eval_every": 0,
    "train.warmup_steps": 0,
    "train.log_every": 1,
}


class PassCounter:
    """Forward pre-hooks on the model's modules and on the two forwards that may contain them."""

    def __init__(self) -> None:
        self.in_model = 0  # depth inside DrivingVLA.forward
        self.in_engine = 0  # depth inside the engine's (ObjectiveModule's) forward
        self.outside_model = 0
        self.outside_engine = 0
        self.inside = 0
        self.requests: Counter[str] = Counter()

    def attach(self, model: DrivingVLA, engine_module: torch.nn.Module) -> None:
        def enter_model(module, args):
            self.in_model += 1
            self.requests[type(args[0]).__name__] += 1

        def leave_model(module, args, output):
            self.in_model -= 1

        def enter_engine(module, args):
            self.in_engine += 1

        def leave_engine(module, args, output):
            self.in_engine -= 1

        def count(module, args):
            self.inside += 1
            self.outside_model += self.in_model == 0
            self.outside_engine += self.in_engine == 0

        model.register_forward_pre_hook(enter_model)
        model.register_forward_hook(leave_model)
        engine_module.register_forward_pre_hook(enter_engine)
        engine_module.register_forward_hook(leave_engine)
        for part in (model.head, model.backbone):
            for module in part.modules():
                module.register_forward_pre_hook(count)

    def result(self) -> dict:
        return {
            "outside_model_forward": self.outside_model,
            "outside_engine_forward": self.outside_engine,
            "module_calls": self.inside,
            "requests": dict(self.requests),
        }


TRAINER = rl_stage.Trainer


def counting_trainer(counter: PassCounter):
    """The RL stage's Trainer with ``counter`` attached to the model it trains."""

    class CountingTrainer(TRAINER):
        def __init__(self, model, *args, **kwargs):
            super().__init__(model, *args, **kwargs)
            counter.attach(model, self.engine.module if hasattr(self.engine, "module") else self.engine)

    return CountingTrainer


def rl_config(args, name: str, output: Path, **train):
    kind = "coupled_flow" if name == "genpo" else "diffusion"
    overrides = [f"algorithm.name={name}", *(f"{key}={value}" for key, value in SETTINGS.items())]
    overrides += [f"train.init_from={args.models / kind / 'model'}", f"data.metric_cache={args.cache}"]
    overrides += [f"train.output_dir={output}", "distributed.backend=deepspeed", f"distributed.zero_stage={args.stage}"]
    if args.stage == 3:  # every head parameter partitioned (none kept whole as "persistent"), as in a full-size head
        overrides.append(f"distributed.deepspeed_config={args.out / 'zero3_partition_all.json'}")
    overrides += [f"train.{key}={value}" for key, value in train.items()]
    return with_synthetic_world(load_config("debug-rl", overrides), args.world)


def metrics(output: Path) -> dict[int, dict]:
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line for line in lines if "train/loss" in line}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", type=int, choices=[2, 3], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)  # <models>/<head kind>/model: the imitation models
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--algorithms", nargs="+", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    (args.out / "zero3_partition_all.json").write_text(
        json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}})
    )
    results: dict[str, dict] = {}
    for name in args.algorithms:
        started = time.perf_counter()
        counter = PassCounter()
        rl_stage.Trainer = counting_trainer(counter)
        straight = args.out / f"{name}-straight"
        train_rl(rl_config(args, name, straight))
        rl_stage.Trainer = counting_trainer(PassCounter())
        first = straight / "checkpoints" / "step_00000001"
        resumed = args.out / f"{name}-resumed"
        train_rl(rl_config(args, name, resumed, resume=str(first)))
        if torch.distributed.get_rank() == 0:
            live, again = metrics(straight), metrics(resumed)
            results[name] = {
                **counter.result(),
                "steps": sorted(live),
                "resumed_steps": sorted(again),
                "loss": [live[s]["train/loss"] for s in sorted(live)],
                "resumed_loss": [again[s]["train/loss"] for s in sorted(again)],
                "reward": [live[s]["train/rl/reward_mean"] for s in sorted(live)],
                "resumed_reward": [again[s]["train/rl/reward_mean"] for s in sorted(again)],
                "straight_model": str(straight / "model"),
                "resumed_model": str(resumed / "model"),
                "imitation_model": rl_config(args, name, straight).train.init_from,
                "seconds": time.perf_counter() - started,
            }
        torch.distributed.barrier()
    if torch.distributed.get_rank() == 0:
        (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
