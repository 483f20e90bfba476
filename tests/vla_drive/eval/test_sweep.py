"""Guidance sweep: one row per omega, the chosen omega, files; the temperature choice; the medoid best-of-N rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla_drive.tiny_world import tiny_world
from vla_drive.eval.scoring import SceneScorer
from vla_drive.eval.sweep import best_omega, best_temperature, sweep_guidance, write_sweep
from vla_drive.model.selection import select_trajectory


def test_best_omega_prefers_the_higher_score_then_the_smaller_omega():
    rows = [{"omega": 0.0, "score": 0.7}, {"omega": 1.0, "score": 0.8}, {"omega": 3.0, "score": 0.8}]
    assert best_omega(rows) == 1.0


def test_the_temperature_choice_evaluates_each_temperature_once_in_order(monkeypatch):
    import vla_drive.eval.sweep as sweep

    told = []

    def evaluate_model(model, dataset, scorer, *, temperature, seed, **_):
        told.append((temperature, seed))
        return {"score": {0.0: 0.8, 0.5: 0.9, 1.0: 0.9}[temperature]}

    monkeypatch.setattr(sweep, "evaluate_model", evaluate_model)
    rows = sweep.sweep_temperature(None, None, None, (1.0, 0.0, 0.5, 1.0))
    assert told == [(0.0, 0), (0.5, 0), (1.0, 0)], "each temperature once, sorted, the same seed (paired)"
    assert [row["temperature"] for row in rows] == [0.0, 0.5, 1.0]
    assert best_temperature(rows) == 0.5, "the highest score, the smaller temperature on ties"


def test_medoid_selection_picks_the_most_typical_candidate():
    base = np.zeros((8, 3))
    base[:, 0] = np.arange(1, 9)
    candidates = np.stack([base + np.array([0.0, offset, 0.0]) for offset in (-1.0, 0.2, 1.5)])[None]
    chosen = select_trajectory(candidates)
    np.testing.assert_array_equal(chosen[0], candidates[0, 1])
    with pytest.raises(ValueError, match="unknown selection rule"):
        select_trajectory(candidates, "oracle")


def _peaked_sweep(monkeypatch, peak: float, omegas, widen: int):
    """sweep_guidance with a score that rises with omega up to ``peak`` and falls after it."""
    import vla_drive.eval.sweep as sweep

    calls = []

    def evaluate_model(model, dataset, scorer, *, omega, progress, **_):
        calls.append(omega)
        progress(len(dataset))
        return {"score": 1.0 - abs(omega - peak) / 100.0}

    monkeypatch.setattr(sweep, "evaluate_model", evaluate_model)
    seen = []
    rows = sweep.sweep_guidance(None, [0, 1], None, omegas, widen=widen, progress=lambda *a: seen.append(a))
    return rows, calls, seen


def test_the_grid_widens_past_a_best_omega_at_its_edge(monkeypatch):
    rows, calls, seen = _peaked_sweep(monkeypatch, peak=10.0, omegas=(5.0, 0.0, 1.0), widen=3)
    assert calls == [0.0, 1.0, 5.0, 8.0, 12.8], "sorted grid, then x1.6 until a larger omega scores lower"
    assert best_omega(rows) == 8.0 and max(r["omega"] for r in rows) > best_omega(rows)
    assert seen[-1] == ("sweep", 10, 10), "progress counts the added omegas too"
    rows, calls, _ = _peaked_sweep(monkeypatch, peak=100.0, omegas=(0.0, 1.0), widen=2)
    assert calls == [0.0, 1.0, 1.6, 2.56], "at most `widen` omegas are added"
    _, calls, _ = _peaked_sweep(monkeypatch, peak=0.5, omegas=(0.0, 1.0, 2.0), widen=3)
    assert calls == [0.0, 1.0, 2.0], "an interior best adds nothing"
    _, calls, _ = _peaked_sweep(monkeypatch, peak=50.0, omegas=(0.0, 1.0), widen=0)
    assert calls == [0.0, 1.0], "widen=0 keeps the grid"


@pytest.mark.slow
def test_sweep_writes_a_table_and_a_plot(tmp_path):
    tiny = tiny_world(tmp_path)
    world, loader, model, dataset = tiny.world, tiny.loader, tiny.model, tiny.dataset
    with torch.no_grad():  # distinct branches, so omega matters
        for name, parameter in model.head.named_parameters():
            if name.endswith((".pos", ".neg")):
                parameter.add_(0.1 * torch.randn_like(parameter))
    scorer = SceneScorer.from_scenes(loader, world.maps_root, tmp_path / "metric_cache")
    rows = sweep_guidance(model, dataset, scorer, (0.0, 1.0, 3.0), steps=3, widen=0)
    assert [row["omega"] for row in rows] == [0.0, 1.0, 3.0]
    assert all(0.0 <= row["score"] <= 1.0 for row in rows)
    sample = [dataset[0]]
    low, high = (model.predict(sample, 1, 3, omega=omega, seed=0) for omega in (0.0, 3.0))
    assert np.abs(low - high).max() > 1e-3, "different omegas give different policies"
    files = write_sweep(rows, tmp_path / "sweep")
    assert files["plot"].stat().st_size > 1000
    assert f"chosen omega: {best_omega(rows):g}" in files["markdown"].read_text()


@pytest.mark.slow
def test_cli_sweep_stores_omega_records_the_card_and_logs_the_plot(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vla_drive.cli import main
    from vla_drive.model.card import read_evaluations
    from vla_drive.model.vla import read_model_config

    tiny = tiny_world(tmp_path)
    model_dir = tiny.model.save_pretrained(tmp_path / "run" / "model")
    world = tiny.world
    args = ["sweep", "--model", str(model_dir), "--split", str(world.splits_dir / "synthetic_all.yaml")]
    args += ["--data-root", str(world.data_root), "--maps-root", str(world.maps_root), "--steps", "2"]
    args += ["--widen", "0"]
    assert main([*args, "--omegas", "0", "2", "--max-scenes", "2", "--out", str(tmp_path / "sweep")]) == 0
    sweep = read_evaluations(model_dir)["sweep"]
    assert sweep["split"] == "synthetic_all" and [r["omega"] for r in sweep["rows"]] == [0.0, 2.0]
    assert read_model_config(model_dir).guidance_omega == sweep["chosen"]
    assert "Guidance sweep on `synthetic_all`" in (model_dir / "README.md").read_text()
    assert "sweep: 4/4 scenes (100%)" in capsys.readouterr().err
    events = EventAccumulator(str(tmp_path / "sweep" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "sweep/plot" in events.Tags()["images"] and "sweep/score" in events.Tags()["scalars"]
