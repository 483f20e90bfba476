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
from navsim_eval.maps.locations import MAP_LOCATIONS, load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.scorer import score
from navsim_eval.synthetic.labels import ScenarioLabelsError, load_scenario_labels
from navsim_eval.synthetic.scenarios import SCENARIO_NAMES
from navsim_eval.synthetic.towns import TEST_TOWN, TRAIN_TOWNS
from navsim_eval.synthetic.world import WorldConfig, generate_world, plan_logs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small world (6 logs: as the tests use, split by log only)."""
    return generate_world(tmp_path_factory.mktemp("world"), WorldConfig(num_logs=6))


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


def test_world_is_small_and_split_by_log(world):
    assert len(world.logs) == 6
    assert 20 <= world.num_scenes <= 150
    size = sum(p.stat().st_size for p in world.root.rglob("*") if p.is_file())
    assert size < 50 * 2**20, f"a small world should stay well under 50 MB, got {size / 2**20:.1f} MB"
    splits = {name: set(world.scene_tokens[f"{world.data_split}_{name}"]) for name in ("train", "val", "test")}
    assert splits["train"] and splits["test"] and not splits["train"] & splits["test"]
    assert not splits["train"] & splits["val"]
    logs = {
        name: {world.log_info[log]["split"] for log in world.logs if set(world.tokens_by_log[log]) & tokens}
        for name, tokens in splits.items()
    }
    assert logs["test"] == {"test"} and logs["train"] == {"train"}, "splits are disjoint in logs"
    header = (world.splits_dir / "synthetic_test.yaml").read_text().splitlines()[0]
    assert header.startswith("#") and "split by log only" in header
    labels = load_scenario_labels(world.splits_dir / "synthetic_test.yaml")
    assert labels.holdout == "log" and "split by log only" in labels.note and labels.filter is None


def test_scenario_labels_cover_every_scene(world):
    for name in ("all", "train", "val", "test"):
        split_file = world.splits_dir / f"synthetic_{name}.yaml"
        labels = load_scenario_labels(split_file)
        split = load_split(world.splits_dir, f"synthetic_{name}")
        assert set(labels.scenes) == set(split.scene_filter.tokens), name
        assert set(labels.scenes.values()) <= set(SCENARIO_NAMES)
        assert set(labels.logs) == set(split.scene_filter.log_names)
        scene_filter_text = (world.splits_dir / "scene_filter" / f"synthetic_{name}.yaml").read_text()
        assert "scenario" not in scene_filter_text, "labels must stay out of the file the devkit instantiates"
    with pytest.raises(ScenarioLabelsError, match="cannot read scenario labels"):
        load_scenario_labels(world.splits_dir / "nope.yaml")


def test_maps_root_has_all_four_nuplan_locations(world):
    versions = json.loads((world.maps_root / "nuplan-maps-v1.0.json").read_text())
    assert set(versions) == set(MAP_LOCATIONS)
    used = {info["location"] for info in world.log_info.values()}
    for location in MAP_LOCATIONS:
        path = world.maps_root / location / versions[location]["version"] / "map.gpkg"
        assert path.is_file(), location
        nuplan_map = load_map(location, world.maps_root)  # placeholders too are valid maps
        assert nuplan_map.lanes, location
    placeholders = set(MAP_LOCATIONS) - used
    for location in placeholders:
        assert len(load_map(location, world.maps_root).lanes) < 10, f"{location} should hold the placeholder"


def test_readers_load_every_scene(world, scored):
    loader, rows = scored
    assert loader.report.scenes_skipped == 0 and not loader.report.skipped_logs
    assert sorted(rows) == sorted(world.scene_tokens[f"{world.data_split}_all"])
    for scene, _, _ in rows.values():
        assert scene.map_name in MAP_LOCATIONS and len(scene.frames) == 14
        assert scene.map_name == world.log_info[scene.log_name]["location"]
    scene = next(iter(rows.values()))[0]
    image = Image.open(scene.current_frame.cameras["CAM_F0"])
    assert image.size == WorldConfig().image_size


def test_the_ego_starts_on_its_map_and_route(scored):
    _, rows = scored
    for scene, cache, _ in rows.values():
        ego = shapely.Point(cache.ego.x, cache.ego.y)
        assert any(p.buffer(0.5).contains(ego) for p in cache.drivable_map.polygons), scene.token
        assert cache.centerline.distance(np.array([cache.ego.x, cache.ego.y])) < 4.5, scene.token


def test_the_logged_human_drives_like_a_good_but_imperfect_human(scored):
    """The expert scores well but not perfectly: real drivers get 0.948 PDMS on navtest."""
    _, rows = scored
    scores = np.array([row["score"] for _, _, row in rows.values()])
    progress = np.array([row["ego_progress"] for _, _, row in rows.values()])
    assert 0.80 <= scores.mean() <= 0.98, f"mean expert PDMS {scores.mean():.3f} outside [0.80, 0.98]"
    assert progress.mean() < 0.97, "the expert should leave progress on the table sometimes (room for RL)"
    assert np.mean([row["no_at_fault_collisions"] for _, _, row in rows.values()]) > 0.95


def test_default_world_plan_holds_out_a_town():
    plans = plan_logs(WorldConfig())
    by_split = {name: [p for p in plans if p.split == name] for name in ("train", "val", "test")}
    assert {town for p in by_split["test"] for town in p.towns} == {TEST_TOWN}
    assert {town for p in by_split["train"] + by_split["val"] for town in p.towns} <= set(TRAIN_TOWNS)
    assert len(by_split["test"]) >= 8 and by_split["val"]
    for name in SCENARIO_NAMES:
        assert sum(p.scenario == name for p in by_split["test"]) >= 2, f"the test split needs {name} logs"


def test_small_worlds_split_by_log_only():
    for num_logs, expected in ((1, ["train"]), (2, ["train", "test"]), (4, ["train", "train", "val", "test"])):
        assert [p.split for p in plan_logs(WorldConfig(num_logs=num_logs))] == expected


def test_filtered_world_keeps_the_unfiltered_splits_and_reports_the_filter(tmp_path):
    world = generate_world(tmp_path, WorldConfig(num_logs=3, seed=2, filter_scenes=True))
    for name in ("all", "train", "val", "test"):
        generated = set(world.unfiltered_tokens[f"synthetic_{name}"])
        kept = set(load_split(world.splits_dir, f"synthetic_{name}").scene_filter.tokens)
        assert kept <= generated
        assert set(load_split(world.splits_dir, f"synthetic_{name}_unfiltered").scene_filter.tokens) == generated
        labels = load_scenario_labels(world.splits_dir / f"synthetic_{name}.yaml")
        report = labels.filter
        assert report["scenes"] == len(generated) and report["kept"] == len(kept)
        removed = report["removed_constant_velocity"] + report["removed_human"] - report["removed_by_both"]
        assert removed + report["unscored"] == len(generated) - len(kept)


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
    with pytest.raises(ValueError, match="scenarios"):
        WorldConfig(scenarios=("joyride",))
    with pytest.raises(ValueError, match="num_logs must be >= 1"):
        WorldConfig(num_logs=0)


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
