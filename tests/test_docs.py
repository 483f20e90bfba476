"""The docs keep up with the code: every command and option of both CLIs is in docs/cli.md, the README starts
with the two commands, and .ci/run runs exactly the README's test command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from navsim_eval.cli import build_parser as navsim_eval_parser
from vla_drive.cli import build_parser as vla_drive_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices.items()


@pytest.mark.parametrize("parser", [vla_drive_parser(), navsim_eval_parser()], ids=["vla-drive", "navsim-eval"])
def test_cli_reference_lists_every_command_and_option(parser):
    text = (ROOT / "docs" / "cli.md").read_text()
    for name, command in _commands(parser):
        assert f"### `{parser.prog} {name}`" in text, f"docs/cli.md lacks `{parser.prog} {name}`"
        section = text.split(f"### `{parser.prog} {name}`", 1)[1].split("\n### ", 1)[0]
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in section, f"docs/cli.md: `{parser.prog} {name}` lacks {option}"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and "vla-drive demo" in block[0] and "pytest" in block[1]
    test_command = block[1].split("#", 1)[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
