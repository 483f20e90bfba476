"""A two-stage split written from a world on disk: the official synthetic scenes rebuilt from their description,
the files read back unchanged and loadable under NumPy 1.x, and the whole path (split, cache, score) offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from navsim_eval.cli import main
from navsim_eval.csv_io import read_score_csv
from navsim_eval.data.openscene import read_log
from navsim_eval.data.splits import load_split
from navsim_eval.data.synthetic_scene_writer import write_synthetic_scene
from navsim_eval.data.synthetic_scenes import read_synthetic_scene
from navsim_eval.pdm.cache_io import MetricCacheStore
from navsim_eval.pdm.two_stage import COMBINED, score_two_stage
from navsim_eval.pickle_io import pickle_globals
from navsim_eval.pipeline_conformance import default_pipeline_dir
from navsim_eval.synthetic.two_stage import SyntheticStart, build_synthetic_scene

WORLD = default_pipeline_dir() / "worlds" / "synthetic_seed11"
OFFICIAL = default_pipeline_dir().parent / "official_two_stage"
pytestmark = pytest.mark.skipif(not WORLD.is_dir(), reason="the shared world is not available")


def _wrapped(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _assert_same_scene(a, b, tolerance: float) -> None:
    assert a.token == b.token and a.log_name == b.log_name and a.map_name == b.map_name
    assert len(a.frames) == len(b.frames) == 12
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.timestamp_us == fb.timestamp_us and fa.traffic_lights == fb.traffic_lights
        assert fa.roadblock_ids == fb.roadblock_ids and fa.boxes.tokens == fb.boxes.tokens
        assert fa.boxes.types == fb.boxes.types
        delta = fa.boxes.xyh - fb.boxes.xyh
        delta[:, 2] = _wrapped(delta[:, 2])
        assert np.abs(delta).max(initial=0.0) <= tolerance
        assert np.abs(fa.boxes.velocity - fb.boxes.velocity).max(initial=0.0) <= tolerance
        assert np.abs(fa.ego.pose - fb.ego.pose).max() <= tolerance


@pytest.mark.slow
@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official two-stage data not available")
def test_the_official_synthetic_scenes_are_rebuilt_from_their_description(tmp_path: Path) -> None:
    specs = json.loads((OFFICIAL / "synthetic_scenes.json").read_text())
    folder = OFFICIAL / "world_additions" / "navhard_two_stage" / "synthetic_scene_pickles"
    logs: dict[str, list] = {}
    for spec in specs:
        official = read_synthetic_scene(folder / f"{spec['scene_token']}.pkl")
        frames = logs.setdefault(
            spec["log_name"],
            [f.frame for f in read_log(WORLD / "navsim_logs" / "synthetic" / f"{spec['log_name']}.pkl")],
        )
        start = SyntheticStart(
            spec["log_name"],
            spec["log_start_frame_index"],
            (spec["offset_lon_m"], spec["offset_lat_m"], spec["offset_heading_rad"]),
            spec["token"],
            spec["scene_token"],
            spec["stage_one_token"],
            tuple(frame.token for frame in official.scene.frames[:3]),
        )
        ours = build_synthetic_scene(frames, official.scene.map_name, start)
        assert ours.corresponding_original_scene == official.corresponding_original_scene
        assert ours.corresponding_original_initial_token == official.corresponding_original_initial_token
        _assert_same_scene(ours.scene, official.scene, tolerance=1e-8)
        written = write_synthetic_scene(tmp_path, ours)
        names = pickle_globals(written.read_bytes())
        assert not [n for n in names if n[0].startswith(("numpy._core", "navsim_eval"))], names
        # history boxes go back to the ego frame and forth again: exact up to an ulp (see openscene_writer)
        _assert_same_scene(read_synthetic_scene(written).scene, ours.scene, tolerance=1e-12)


@pytest.mark.slow
def test_a_two_stage_split_of_a_world_is_cached_and_scored_offline(tmp_path: Path, capsys) -> None:
    world = tmp_path / "world"
    for part in ("navsim_logs", "maps", "splits"):
        shutil.copytree(WORLD / part, world / part)
    assert main(["two-stage", "--world", str(world), "--max-entries", "3", "--pairs", "3", "--seed", "4"]) == 0
    split = load_split(world / "splits", "synthetic_two_stage")
    assert len(split.two_stage) == 3 and all(len(entry.pairs) == 3 for entry in split.two_stage)
    descriptions = {
        d["token"]: d for d in json.loads((world / "synthetic_two_stage_synthetic_scenes.json").read_text())
    }
    for entry in split.two_stage:
        for pair_index, (now, previous) in enumerate(entry.pairs):
            assert descriptions[now]["role"] == "now" and descriptions[previous]["role"] == "prev"
            offset = [descriptions[now][k] for k in ("offset_lon_m", "offset_lat_m", "offset_heading_rad")]
            assert (np.abs(offset) == 0).all() if pair_index == 0 else (0 < np.abs(offset[:2]).max() <= 1.0)
            assert abs(offset[2]) <= 0.06

    cache = tmp_path / "cache"
    argv = ["cache", "--data-root", str(world), "--maps-root", str(world / "maps"), "--split"]
    assert main([*argv, str(world / "splits" / "synthetic_two_stage.yaml"), "--out", str(cache), "--strict"]) == 0
    store = MetricCacheStore(cache)
    assert len(store) == 3 * 2 + 3 * 3 * 2
    human = {t: np.asarray(p) for t, p in json.loads((world / "synthetic_two_stage_human.json").read_text()).items()}
    result = score_two_stage(store, human, split.two_stage)
    assert result.valid and 0.0 < result.combined_score <= 1.0
    rows = {row.token: row for row in result.rows}
    for entry in split.two_stage:
        for index in (0, 1):  # the human's plan ends exactly where the unperturbed pair starts: it weighs most
            weights = [rows[pair[index]].weight for pair in entry.pairs]
            assert abs(sum(weights) - 1.0) < 1e-12 and int(np.argmax(weights)) == 0, weights

    out = tmp_path / "human.csv"
    argv = ["score", "--cache", str(cache), "--trajectories", str(world / "synthetic_two_stage_human.json")]
    assert main([*argv, "--version", "v2", "--split", str(split_path(world)), "--out", str(out)]) == 0
    assert read_score_csv(out).summary[COMBINED]["score"] == pytest.approx(result.combined_score, abs=1e-12)
    assert "3 of 3 entries aggregated" in capsys.readouterr().out


def split_path(world: Path) -> Path:
    return world / "splits" / "synthetic_two_stage.yaml"
