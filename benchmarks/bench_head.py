"""Trajectory-head sampling latency, head only (condition tokens given): K samples of one scene at N steps,
unguided (base) vs DIPOLE-guided (pos and neg branches in one batched forward per step), plus the stochastic
sampler that RL rollouts use (chain + per-step log-probs).

    .venv/bin/python benchmarks/bench_head.py [--device cuda] [--hidden 512 --depth 6 --cond-dim 960 --tokens 512]

Times are per call of ``head.sample`` (context projection once, then N denoising steps) under inference mode,
median of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse

import torch
from common import median_ms

from vla_drive.model.head import HeadConfig, TrajectoryHead
from vla_drive.model.types import Cond, Guidance, NoiseConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--cond-dim", type=int, default=960, help="backbone hidden size (SmolVLM-500M: 960)")
    parser.add_argument("--tokens", type=int, default=512, help="condition tokens per scene (20%% padding)")
    parser.add_argument("--scenes", type=int, default=1)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--omega", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    config = HeadConfig(hidden_size=args.hidden, depth=args.depth, num_heads=args.heads, cond_dim=args.cond_dim)
    head = TrajectoryHead(config).to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in head.base_parameters()) / 1e6
    adapters = sum(p.numel() for p in head.adapter_parameters("pos")) / 1e6
    g = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randn(args.scenes, args.tokens, args.cond_dim, device=device, dtype=dtype, generator=g)
    mask = torch.ones(args.scenes, args.tokens, dtype=torch.bool, device=device)
    mask[:, int(0.8 * args.tokens) :] = False
    cond = Cond(tokens, mask, torch.randn(args.scenes, 8, device=device, dtype=dtype, generator=g))

    def timed(k: int, steps: int, **kwargs: object) -> float:
        def call() -> None:
            with torch.inference_mode():
                head.sample(cond, n=k, steps=steps, generator=g, **kwargs)  # type: ignore[arg-type]
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return median_ms(call, args.repeats)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"head: hidden {args.hidden}, depth {args.depth}, heads {args.heads}, {params:.1f} M base + "
        f"{adapters:.2f} M per adapter; {args.scenes} scene(s) x {args.tokens} cond tokens of {args.cond_dim} "
        f"(20% padding); {name}, {args.dtype}; sampler {config.sampler} ({config.step_schedule}); "
        f"guided omega = {args.omega}\n"
    )
    print("| K | steps | unguided ms | guided ms | guided / unguided | stochastic (chain + logp) ms |")
    print("|---|---|---|---|---|---|")
    for k in args.k:
        for steps in args.steps:
            base = timed(k, steps)
            guided = timed(k, steps, guidance=Guidance("dichotomous", args.omega))
            stochastic = timed(k, steps, stochastic=NoiseConfig(), guidance=Guidance("dichotomous", args.omega))
            print(f"| {k} | {steps} | {base:.2f} | {guided:.2f} | {guided / base:.2f} | {stochastic:.2f} |")


if __name__ == "__main__":
    main()
