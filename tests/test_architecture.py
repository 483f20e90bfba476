"""The layout shows the architecture: every import of the two packages (module level, inside functions and under
``TYPE_CHECKING`` alike) runs the way the code map in docs/architecture.md says, and that map names every package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_MAP = ROOT / "docs" / "architecture.md"
NAVSIM_EVAL_FORBIDDEN = ("vla_drive", "torch", "transformers", "peft", "accelerate", "deepspeed", "nuplan", "navsim.")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]  # `from pkg import module`
    return found


def _layer_rules() -> dict[str, tuple[str, ...]]:
    """The code map's table: package -> the vla_drive packages it may import (besides itself)."""
    rules = {}
    for line in CODE_MAP.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(vla_drive[\w.]*)/?` \| (.*?) \| (.*?) \|$", line)
        if match:
            allowed = re.findall(r"`(vla_drive[\w.]*|\*)`", match.group(3))
            rules[match.group(1)] = tuple(allowed)
    assert rules, f"{CODE_MAP}: no code-map table rows of the form | `vla_drive.x` | holds | may import |"
    return rules


def _layer_of(module: str, layers) -> str | None:
    best = None
    for layer in layers:
        if (module == layer or module.startswith(f"{layer}.")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def test_navsim_eval_imports_nothing_of_vla_drive_nor_torch():
    bad = []
    for path in sorted((ROOT / "navsim_eval").rglob("*.py")):
        for line, module in _imports(path):
            if module.startswith(NAVSIM_EVAL_FORBIDDEN) or module in ("torch", "navsim"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "navsim_eval must stand alone:\n" + "\n".join(bad)


def test_every_vla_drive_import_follows_the_code_map():
    rules = _layer_rules()
    packages = {_module_name(p.parent) for p in (ROOT / "vla_drive").rglob("__init__.py")} - {"vla_drive"}
    top_modules = {_module_name(p) for p in (ROOT / "vla_drive").glob("*.py")} - {"vla_drive"}
    unmapped = sorted((packages | top_modules) - set(rules))
    assert not unmapped, f"{CODE_MAP}: the code map does not list {unmapped}"
    bad = []
    for path in sorted((ROOT / "vla_drive").rglob("*.py")):
        own = _layer_of(_module_name(path), rules)
        if own is None:
            continue  # vla_drive/__init__.py
        for line, module in _imports(path):
            if not module.startswith("vla_drive.") or module == "vla_drive.__version__":
                continue
            target = _layer_of(module, rules) or module
            if target != own and target not in rules[own] and "*" not in rules[own]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {module} (allowed: {rules[own]})")
    assert not bad, "imports against the code map in docs/architecture.md:\n" + "\n".join(bad)


def test_the_package_init_imports_nothing():
    assert not [m for _, m in _imports(ROOT / "vla_drive" / "__init__.py") if m.startswith("vla_drive")]
