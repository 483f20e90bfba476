"""The ``vla-drive`` command: train (imitation, then RL), and the commands that arrive with later stages."""

from __future__ import annotations

import argparse
import logging
import sys

COMING = ("eval", "sweep", "compare", "submit", "export", "demo")


def cmd_train(args: argparse.Namespace) -> int:
    from vla_drive.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"vla-drive train: {error}", file=sys.stderr)
        return 2
    if config.algorithm.name == "bc":
        from vla_drive.train.stages import train_imitation

        model_dir = train_imitation(config)
    else:
        from vla_drive.train.rl import train_rl

        model_dir = train_rl(config)
    print(f"model written to {model_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-drive",
        description="Fine-tune driving VLAs with a diffusion trajectory head (imitation, then DIPOLE RL).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = sub.add_parser(
        "train",
        help="train a model from an experiment config",
        description="Train from an experiment config: a YAML file (configs/*.yaml) or a preset name (debug, "
        "demo-imitation, demo-dipole, navsim-imitation, navsim-dipole), with overrides key.sub=value. Runs in one "
        "process, or under accelerate launch / deepspeed / torchrun / srun (see launch/).",
    )
    train.add_argument("config", help="a YAML file or a preset name")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.max_steps=100 model.trainable=lora"
    )
    train.set_defaults(handler=cmd_train)
    for name in COMING:
        sub.add_parser(name, help="not yet available in this version").set_defaults(handler=None)
    args, _ = parser.parse_known_args(argv)
    if args.handler is None:
        print(f"vla-drive {args.command}: not yet available in this version; `vla-drive train` is.", file=sys.stderr)
        return 2 if args.command != "demo" else 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("accelerate", "deepspeed", "transformers", "torch.distributed"):  # per-file chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
