"""The shell commands the README and docs/*.md show, read from their fenced code blocks.

A command is one logical line of a ``bash`` / ``sh`` / ``shell`` / ``console`` block: ``\\`` continuations joined,
the trailing ``# comment`` and a ``$ `` prompt removed, and ``a && b`` split into its parts (each its own command,
at the same place). Whole-line comments are skipped. Blocks without a language, or with another one, are not
commands; :func:`unlabelled_command_lines` finds command-looking lines in them, so a runnable command cannot hide in
a block the test does not read (a usage synopsis belongs in a ``text`` block).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
# what a line of a non-shell block may not start with (it would be a command the test never sees)
COMMAND_PREFIXES = ("vla-drive ", "navsim-eval ", ".venv/bin/", "launch/", "bash ", "sbatch ", "torchrun ", "python ")


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is (file relative to the repository, 1-based line of its first line)."""

    path: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def doc_files(root: Path) -> list[Path]:
    """README.md and every docs/*.md, in a fixed order (the README's chain first)."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def fenced_blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of every fenced block of a Markdown file."""
    language, start, body = None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            if language is None:
                language, start, body = fence[3:].strip().lower(), number + 1, []
            else:
                yield language, start, body
                language = None
        elif language is not None:
            body.append(line)


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes that starts a word)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_and(text: str) -> list[str]:
    """``a && b`` -> ``[a, b]`` (``&&`` outside quotes)."""
    parts, quote, current, i = [], None, [], 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif text.startswith("&&", i):
            parts.append("".join(current).strip())
            current, i = [], i + 2
            continue
        current.append(char)
        i += 1
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def documented_commands(root: Path) -> list[DocCommand]:
    """Every command of the shell blocks of README.md and docs/*.md, in document order."""
    commands = []
    for path in doc_files(root):
        relative = path.relative_to(root).as_posix()
        for language, start, body in fenced_blocks(path):
            if language not in SHELL_LANGUAGES:
                continue
            pending, first = "", 0
            for offset, raw in enumerate(body):
                line = strip_comment(raw).strip()
                if line.startswith("$ "):
                    line = line[2:]
                if not pending:
                    first = start + offset
                if line.endswith("\\"):
                    pending += line[:-1].strip() + " "
                    continue
                text = re.sub(r"\s+", " ", pending + line).strip()
                pending = ""
                commands += [DocCommand(relative, first, part) for part in split_and(text)]
    return commands


def unlabelled_command_lines(root: Path) -> list[str]:
    """``file:line: text`` of lines that look like commands in blocks that are not shell blocks."""
    found = []
    for path in doc_files(root):
        relative = path.relative_to(root).as_posix()
        for language, start, body in fenced_blocks(path):
            if language in SHELL_LANGUAGES or language == "text":
                continue
            for offset, line in enumerate(body):
                if line.strip().startswith(COMMAND_PREFIXES):
                    found.append(f"{relative}:{start + offset}: {line.strip()}")
    return found
