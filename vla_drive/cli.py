"""The ``vla-drive`` command. Training, evaluation and the demo arrive with the model and trainer issues."""

from __future__ import annotations

import argparse
import sys

COMMANDS = ("demo", "train", "eval", "sweep", "compare", "submit", "export")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-drive",
        description="Fine-tune driving VLAs with a diffusion trajectory head (imitation, then DIPOLE RL).",
    )
    parser.add_argument("command", choices=COMMANDS, help="what to run")
    args, _ = parser.parse_known_args(argv)
    print(
        f"vla-drive {args.command}: not yet available in this version. "
        "The scorer is ready: try `navsim-eval conformance` or `navsim-eval --help`.",
        file=sys.stderr,
    )
    return 2 if args.command != "demo" else 0


if __name__ == "__main__":
    raise SystemExit(main())
