"""Plots people can read: the sweep draws only what varies, labels the chosen omega and keeps its legends clear of
the curves; BEV plots are in the ego frame with the heading up, show the simulated path and explain the agents;
the worst scenes include those that drove the wrong way."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.maps.locations import load_map
from navsim_eval.pdm.builder import build_metric_cache_from_map
from navsim_eval.pdm.results import ScoreTable
from navsim_eval.pdm.scorer import score
from navsim_eval.synthetic.world import WorldConfig, generate_world
from vla_drive.eval.bev import drove_the_wrong_way, scene_figure, to_view
from vla_drive.eval.leaderboard import worst_scenes
from vla_drive.eval.sweep import sweep_figure


def _labels(axis) -> list[str]:
    return [line.get_label() for line in axis.get_lines() if not line.get_label().startswith("_")]


def _outside(figure, axis) -> bool:
    """The axis legend lies right of the axis' plotting area."""
    figure.canvas.draw()
    legend = axis.get_legend().get_window_extent()
    return legend.x0 >= axis.get_window_extent().x1


def test_sweep_figure_draws_only_what_varies_and_labels_the_chosen_omega():
    omegas = (0.0, 1.0, 2.0, 3.0)
    rows = [
        {
            "omega": w,
            "score": 0.9 + 0.01 * w,
            "ego_progress": 0.9 + 0.01 * w,
            "no_at_fault_collisions": 1.0,
            "time_to_collision_within_bound": 1.0 - 0.02 * w,
        }
        for w in omegas
    ]
    metrics = ["score", "ego_progress", "no_at_fault_collisions", "time_to_collision_within_bound"]
    figure = sweep_figure(rows, metrics, "test", chosen=3.0)
    top, bottom = figure.axes
    assert _labels(top) == ["score"], "the score has a panel of its own: no sub-metric can hide it"
    assert _labels(bottom) == ["ego_progress", "time_to_collision_within_bound"], "constant metrics are not drawn"
    assert any("no_at_fault_collisions 1.000" in text.get_text() for text in figure.texts), "constant ones named"
    assert any("chosen omega = 3" in text.get_text() for text in top.texts)
    assert _outside(figure, top) and _outside(figure, bottom)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    world = generate_world(tmp_path_factory.mktemp("bev"), WorldConfig(num_logs=1, frames_per_log=16))
    from navsim_eval.data.loader import SceneLoader

    loader = SceneLoader.from_split_file(world.splits_dir / "synthetic_all.yaml", world.data_root)
    scene = loader[loader.tokens[0]]
    cache = build_metric_cache_from_map(scene, load_map(scene.map_name, world.maps_root))
    human = scene.future_trajectory().poses
    return cache, score(cache, human[None], "v1"), human


@pytest.mark.slow
def test_bev_is_in_the_ego_frame_heading_up_with_the_simulated_path_and_a_legend(scored):
    cache, table, human = scored
    figure = scene_figure(cache, table, human)
    axis = figure.axes[0]
    labels = _labels(axis)
    assert {"human ego", "predicted ego", "simulated ego"} <= set(labels)
    predicted = next(line for line in axis.get_lines() if line.get_label() == "predicted ego")
    xs, ys = predicted.get_xdata(), predicted.get_ydata()
    assert (xs[0], ys[0]) == (0.0, 0.0), "the ego is at the origin"
    np.testing.assert_allclose(np.c_[xs, ys][1:], to_view(human[:, :2]))
    if human[-1, 0] > 5:  # driving forward goes up the plot
        assert ys[-1] > abs(xs[-1])
    left, right = axis.get_xlim()
    bottom, top = axis.get_ylim()
    assert left <= xs.min() and xs.max() <= right and bottom <= ys.min() and ys.max() <= top, "zoomed to the paths"
    assert right - left < 90, "zoomed, not the old fixed 90 m square"
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert {"agent at t0", "agent future", "drivable area"} <= set(legend)
    assert _outside(figure, axis)


def test_wrong_way_scenes_join_the_worst_even_when_the_score_ignores_them():
    def table(token: str, value: float, ddc: float) -> ScoreTable:
        columns = {"score": np.array([value]), "driving_direction_compliance": np.array([ddc])}
        return ScoreTable(token, "v1", columns, np.array([True]), [""])

    tables = [table("a", 0.2, 1.0), table("b", 0.5, 1.0), table("c", 0.9, 0.5), table("d", 0.95, 1.0)]
    assert drove_the_wrong_way(tables[2]) and not drove_the_wrong_way(tables[0])
    assert [t.token for t in worst_scenes(tables, 2)] == ["a", "b", "c"]
    assert worst_scenes(tables, 0) == []
