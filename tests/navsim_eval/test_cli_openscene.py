"""``navsim-eval cache`` / ``inspect`` on OpenScene logs: scenes and bad logs counted apart, a split's missing
tokens fail ``--strict`` by name, one broken map reported once, progress on long runs; inspect's text lines say
what its JSON says."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from navsim_eval.cli import main
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pipeline_conformance import default_pipeline_dir

WORLD = default_pipeline_dir() / "worlds" / "synthetic_seed11"
LOGS = ("synthetic-0011-000", "synthetic-0011-001")
pytestmark = pytest.mark.skipif(not WORLD.is_dir(), reason=f"{WORLD} not available")
MISSING = "ffffffffffffffff"


def _tokens() -> dict[str, list[str]]:
    from navsim_eval.data.loader import SceneLoader

    loader = SceneLoader(WORLD, "synthetic")
    return loader.tokens_per_log()


def _world(root: Path, tokens: list[str], truncated_map: bool, bad_log: bool) -> Path:
    """A copy of the shared world with a split of ``tokens`` (+ one no log holds), optionally a truncated
    map.gpkg and an unreadable log named by the split."""
    logs = root / "navsim_logs" / "synthetic"
    logs.mkdir(parents=True)
    for name in LOGS:
        os.symlink(WORLD / "navsim_logs" / "synthetic" / f"{name}.pkl", logs / f"{name}.pkl")
    names = list(LOGS)
    if bad_log:
        (logs / "broken-log.pkl").write_bytes(b"not a pickle")
        names.append("broken-log")
    maps = root / "maps"
    shutil.copytree(WORLD / "maps", maps, copy_function=os.symlink)
    if truncated_map:
        gpkg = maps / "us-pa-pittsburgh-hazelwood" / "1.0.0" / "map.gpkg"
        data = gpkg.read_bytes()
        gpkg.unlink()
        gpkg.write_bytes(data[: len(data) // 3])
    splits = root / "splits"
    (splits / "scene_filter").mkdir(parents=True)
    (splits / "mini.yaml").write_text("defaults:\n  - scene_filter: mini\n\ndata_split: synthetic\n")
    listed = "".join(f"  - '{t}'\n" for t in [*tokens, MISSING])
    (splits / "scene_filter" / "mini.yaml").write_text(
        "num_history_frames: 4\nnum_future_frames: 10\nframe_interval: 1\nhas_route: true\nmax_scenes: null\n"
        "log_names:\n" + "".join(f"  - '{n}'\n" for n in names) + "tokens:\n" + listed
    )
    return root


def _cache(world: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "cache",
            "--data-root",
            str(world),
            "--maps-root",
            str(world / "maps"),
            "--split",
            str(world / "splits" / "mini.yaml"),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_bad_log_missing_token_and_broken_map_are_each_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    per_log = _tokens()
    tokens = per_log[LOGS[0]][:3] + per_log[LOGS[1]][:2]
    world = _world(tmp_path / "world", tokens, truncated_map=True, bad_log=True)
    code = _cache(world, tmp_path / "cache", "--strict")
    out = capsys.readouterr().out
    assert code == 2, out  # nothing could be written (every scene needs the broken map)
    assert f"read {len(tokens)} scenes" in out and "1 unreadable log" in out, out
    assert "broken-log" in out and MISSING in out, out
    map_lines = [line for line in out.splitlines() if "map.gpkg" in line]
    assert len(map_lines) == 1, "the broken map should be reported once:\n" + "\n".join(map_lines)
    assert f"{len(tokens)} scenes" in map_lines[0], map_lines[0]


def test_strict_fails_on_split_tokens_that_no_log_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("navsim_eval.progress.NON_TTY_INTERVAL_S", 0.0)  # a progress line per scene
    tokens = _tokens()[LOGS[0]][:2]
    world = _world(tmp_path / "world", tokens, truncated_map=False, bad_log=False)
    assert _cache(world, tmp_path / "cache") == 0
    captured = capsys.readouterr()
    assert sorted(MetricCacheStore(tmp_path / "cache").tokens()) == sorted(tokens)
    assert MISSING in captured.out and f"read {len(tokens)} scenes" in captured.out, captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("cache: ")]
    assert [line.split(",")[0] for line in progress] == ["cache: 1/2 scenes (50%)", "cache: 2/2 scenes (100%)"]
    assert "scenes/s" in progress[0] and "left" in progress[0], progress
    assert _cache(world, tmp_path / "cache", "--strict") == 1
    assert MISSING in capsys.readouterr().out


def test_inspect_text_line_shows_route_red_lights_objects_and_future(capsys: pytest.CaptureFixture) -> None:
    token = _tokens()[LOGS[0]][0]
    argv = ["inspect", "--data-root", str(WORLD), "--logs", "synthetic", "--tokens", token]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith(token), line
    assert summary["route_roadblock_ids"] and summary["red_lane_connectors"], "pick a scene with a route and red lights"
    assert "route " + ",".join(summary["route_roadblock_ids"]) in line, line
    assert "red " + ",".join(summary["red_lane_connectors"]) in line, line
    for kind, count in summary["annotations"].items():
        assert f"{count} {kind}" in line, line
    x, y, heading = summary["future_trajectory"][-1]
    assert f"future 4 s: x={x:.2f} y={y:.2f} heading={heading:.3f}" in line, line


def test_cache_reads_the_data_and_maps_roots_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/data.md's `navsim-eval cache --split $SPLITS/navtest.yaml --out ...`: no --data-root, as inspect."""
    tokens = _tokens()[LOGS[0]][:2]
    world = _world(tmp_path / "world", tokens, truncated_map=False, bad_log=False)
    monkeypatch.setenv("OPENSCENE_DATA_ROOT", str(world))
    monkeypatch.setenv("NUPLAN_MAPS_ROOT", str(world / "maps"))
    assert main(["cache", "--split", str(world / "splits" / "mini.yaml"), "--out", str(tmp_path / "cache")]) == 0
    assert f"read {len(tokens)} scenes from {world}" in capsys.readouterr().out
    assert sorted(MetricCacheStore(tmp_path / "cache").tokens()) == sorted(tokens)
    assert main(["cache", "--out", str(tmp_path / "cache")]) == 2, "no source at all is still refused"
