"""The synthetic world round trip: generator -> real file formats -> readers -> scenes -> metric cache -> scorer."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import shapely
from PIL import Image

from navsim_eval.cli import main as navsim_eval
from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.splits import load_split
from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.scorer import score
from navsim_eval.synthetic.world import WorldConfig, generate_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The default world (what the demo uses): 4 logs of 30 s."""
    return generate_world(tmp_path_factory.mktemp("world"), WorldConfig())


@pytest.fixture(scope="module")
def scored(world):
    split = load_split(world.splits_dir, f"{world.data_split}_all")
    loader = SceneLoader(world.data_root, split.data_split, split.scene_filter)
    rows = {}
    for token in loader.tokens:
        scene = loader[token]
        cache = build_metric_cache_from_map(scene, load_map(scene.map_name, world.maps_root))
        rows[token] = (scene, cache, score(cache, cache.human_trajectory, "v1").rows()[0])
    return loader, rows


def test_world_is_small_and_complete(world):
    assert len(world.logs) == 4 and world.num_frames == 240
    assert 150 <= world.num_scenes <= 400
    size = sum(p.stat().st_size for p in world.root.rglob("*") if p.is_file())
    assert size < 50 * 2**20, f"the embedded world should stay well under 50 MB, got {size / 2**20:.1f} MB"
    train, test = (set(world.scene_tokens[f"{world.data_split}_{name}"]) for name in ("train", "test"))
    assert train and test and not train & test  # held-out scenes come from other logs


def test_readers_load_every_scene(world, scored):
    loader, rows = scored
    assert loader.report.scenes_skipped == 0 and not loader.report.skipped_logs
    assert sorted(rows) == sorted(world.scene_tokens[f"{world.data_split}_all"])
    scene = next(iter(rows.values()))[0]
    assert scene.map_name == "synthetic-town" and len(scene.frames) == 14
    image = Image.open(scene.current_frame.cameras["CAM_F0"])
    assert image.size == WorldConfig().image_size


def test_the_ego_starts_on_its_map_and_route(scored):
    _, rows = scored
    for scene, cache, _ in rows.values():
        ego = shapely.Point(cache.ego.x, cache.ego.y)
        assert any(p.buffer(0.5).contains(ego) for p in cache.drivable_map.polygons), scene.token
        assert cache.centerline.distance(np.array([cache.ego.x, cache.ego.y])) < 3.0, scene.token


def test_the_logged_human_drives_like_a_human(scored):
    """The expert scores well but not perfectly: real drivers get 0.948 PDMS on navtest."""
    _, rows = scored
    scores = np.array([row["score"] for _, _, row in rows.values()])
    progress = np.array([row["ego_progress"] for _, _, row in rows.values()])
    assert 0.80 <= scores.mean() <= 0.95, f"mean expert PDMS {scores.mean():.3f} outside [0.80, 0.95]"
    assert progress.mean() < 0.97, "the expert should leave progress on the table sometimes (room for RL)"
    assert np.mean([row["no_at_fault_collisions"] for _, _, row in rows.values()]) > 0.95


def test_generation_is_deterministic(tmp_path):
    config = WorldConfig(num_logs=1, frames_per_log=16)

    def digest(root):
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".pkl", ".gpkg", ".jpg", ".yaml"))
        return [(p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]

    first = digest(generate_world(tmp_path / "a", config).root)
    assert first == digest(generate_world(tmp_path / "b", config).root)


def test_world_config_rejects_nonsense():
    with pytest.raises(ValueError, match="frames_per_log must be >= 14"):
        WorldConfig(frames_per_log=10)
    with pytest.raises(ValueError, match="unknown cameras"):
        WorldConfig(cameras=("CAM_X",))


def test_cli_synth_inspect_cache_score(tmp_path, capsys):
    out = tmp_path / "w"
    assert navsim_eval(["synth", "--out", str(out), "--logs", "1", "--frames", "18", "--seed", "3"]) == 0
    split = str(out / "splits" / "synthetic_all.yaml")
    capsys.readouterr()
    assert navsim_eval(["inspect", "--data-root", str(out), "--split", split, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5  # 18 frames - 14 + 1 windows
    first = lines[0]
    assert set(first) >= {
        "token",
        "log",
        "map_location",
        "ego_pose",
        "ego_velocity",
        "driving_command",
        "annotations",
        "route_roadblock_ids",
        "red_lane_connectors",
        "future_trajectory",
    }
    assert len(first["future_trajectory"]) == 8
    cache_dir = tmp_path / "cache"
    assert (
        navsim_eval(
            [
                "cache",
                "--data-root",
                str(out),
                "--maps-root",
                str(out / "maps"),
                "--split",
                split,
                "--out",
                str(cache_dir),
            ]
        )
        == 0
    )
    trajectories = tmp_path / "human.json"
    # The logged futures are the human's plans: score them like an agent's.
    trajectories.write_text(json.dumps({line["token"]: line["future_trajectory"] for line in lines}))
    assert (
        navsim_eval(
            [
                "score",
                "--cache",
                str(cache_dir),
                "--trajectories",
                str(trajectories),
                "--version",
                "v1",
                "--out",
                str(tmp_path / "scores.csv"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    text = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(text) == 1 + 5 + 1 and ",average," in text[-1]


def test_cli_reports_missing_logs(tmp_path, capsys):
    assert navsim_eval(["inspect", "--data-root", str(tmp_path), "--logs", "nope"]) != 0
    assert "nope" in capsys.readouterr().err
