"""Put a finished comparison into the docs: copy its CSV files and plots to ``docs/results/compare-<name>/`` and
regenerate the tables between ``<!-- compare-<name>: begin -->`` and ``<!-- compare-<name>: end -->`` in
``docs/compare.md`` (every table) and, where the README has those markers, ``README.md`` (the test-score table:
the README shows the comparisons it names, an older one may live in docs/compare.md alone) from those copies, so
the docs show what the CSV says (``tests/vla_drive/eval/test_compare.py`` checks it).

    python -m vla_drive.eval.compare.docs runs/compare-quick quick
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from navsim_eval.atomic import atomic_write_text
from vla_drive.eval.compare.report import headline_table, read_results, report_tables

ROOT = Path(__file__).resolve().parents[3]
CSV_FILES = ("compare.csv", "scenes.csv", "curves.csv", "budgets.csv")
ORDER = ("imitation", "dipole")


def results_dir(name: str, root: Path = ROOT) -> Path:
    return root / "docs" / "results" / f"compare-{name}"


def docs_sections(name: str, root: Path = ROOT) -> dict[Path, str]:
    """The generated text of each docs file's marked section, from the committed CSV files of ``name``: always
    ``docs/compare.md``, and ``README.md`` when it has the markers of ``name``."""
    folder = results_dir(name, root)
    rows, scenes, budgets = read_results(folder)
    link = f"results/compare-{name}"
    plots = "".join(f"![{p.stem}]({link}/plots/{p.name})\n" for p in sorted((folder / "plots").glob("*.png")))
    sections = {
        root / "docs" / "compare.md": _demote(report_tables(rows, scenes, budgets, ORDER), 4)
        + ("\n" + plots if plots else "")
    }
    readme = root / "README.md"
    if readme.is_file() and marked(readme.read_text(), name) is not None:
        sections[readme] = _demote(headline_table(rows, scenes, budgets, ORDER), 3)
    return sections


def _demote(text: str, level: int) -> str:
    """The report's ``##`` headings at ``level`` (the sections sit under a heading of the page)."""
    return "\n".join("#" * level + line[2:] if line.startswith("## ") else line for line in text.split("\n"))


def marked(text: str, name: str) -> str | None:
    """What lies between the markers of ``name`` (None without them)."""
    begin, end = f"<!-- compare-{name}: begin -->\n", f"<!-- compare-{name}: end -->"
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def embed(text: str, name: str, body: str) -> str:
    """``text`` with the marked section of ``name`` replaced by ``body``."""
    begin, end = f"<!-- compare-{name}: begin -->\n", f"<!-- compare-{name}: end -->"
    head, rest = text.split(begin, 1)
    return head + begin + body + end + rest.split(end, 1)[1]


def publish(out: Path, name: str, root: Path = ROOT) -> list[Path]:
    """Copy the results of ``out`` and regenerate the docs sections; returns the files written."""
    page = root / "docs" / "compare.md"
    if marked(page.read_text(), name) is None:
        raise SystemExit(
            f"{page}: no '<!-- compare-{name}: begin -->' / '<!-- compare-{name}: end -->' lines; put them where "
            "the tables of this comparison go (nothing was copied)"
        )
    target = results_dir(name, root)
    (target / "plots").mkdir(parents=True, exist_ok=True)
    written = []
    for file in CSV_FILES:
        written.append(Path(shutil.copyfile(out / file, target / file)))
    for plot in sorted((out / "plots").glob("*.png")):
        written.append(Path(shutil.copyfile(plot, target / "plots" / plot.name)))
    for path, body in docs_sections(name, root).items():
        written.append(atomic_write_text(path, embed(path.read_text(), name, body)))
    return written


if __name__ == "__main__":
    for path in publish(Path(sys.argv[1]), sys.argv[2]):
        print(path)
