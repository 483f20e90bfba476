"""Trajectory normaliser: fit, round trips in numpy and torch, persistence, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_drive.model.normalizer import TrajectoryNormalizer


def trajectories(n: int = 200, seed: int = 0) -> np.ndarray:
    """Driving-like [N, 8, 3]: x grows along the horizon, small lateral offset and heading."""
    rng = np.random.default_rng(seed)
    horizon = np.linspace(0.5, 4.0, 8)
    speed = rng.uniform(0.0, 15.0, size=(n, 1))
    x = speed * horizon + rng.normal(0, 0.3, size=(n, 8))
    y = rng.normal(0, 0.5, size=(n, 1)) * horizon**2
    heading = np.arctan2(np.gradient(y, axis=1), np.maximum(np.gradient(x, axis=1), 1e-3))
    return np.stack([x, y, heading], axis=-1)


def test_fit_gives_unit_statistics_per_pose_and_dim() -> None:
    data = trajectories()
    norm = TrajectoryNormalizer.fit(data)
    z = norm.normalize(data)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-9)
    assert norm.shape == (8, 3) and norm.count == 200


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_numpy_and_torch(dtype: torch.dtype) -> None:
    data = trajectories()
    norm = TrajectoryNormalizer.fit(torch.as_tensor(data))  # fitting from torch works too
    np.testing.assert_allclose(norm.denormalize(norm.normalize(data)), data, atol=1e-9)
    tensor = torch.as_tensor(data, dtype=dtype).reshape(20, 10, 8, 3)  # any leading dims
    z = norm.normalize(tensor)
    assert isinstance(z, torch.Tensor) and z.dtype == dtype and z.shape == tensor.shape
    torch.testing.assert_close(norm.denormalize(z), tensor)
    np.testing.assert_allclose(z.double().numpy().reshape(200, 8, 3), norm.normalize(data), rtol=1e-5, atol=1e-5)
    assert isinstance(norm.normalize(data.astype(np.float32)), np.ndarray)
    assert norm.normalize(data.astype(np.float32)).dtype == np.float32


def test_std_floor_keeps_constant_coordinates_finite() -> None:
    data = trajectories()
    data[:, 0, 2] = 0.0  # heading at the first pose constant
    norm = TrajectoryNormalizer.fit(data, min_std=1e-2)
    assert norm.std[0, 2] == 1e-2
    assert np.isfinite(norm.normalize(data)).all()
    single = TrajectoryNormalizer.fit(data[:1])  # one trajectory: std 0 everywhere, floored
    np.testing.assert_allclose(single.normalize(data[:1]), 0.0)


def test_identity() -> None:
    data = trajectories(5)
    np.testing.assert_array_equal(TrajectoryNormalizer.identity().normalize(data), data)


def test_state_dict_and_json(tmp_path) -> None:
    norm = TrajectoryNormalizer.fit(trajectories(), min_std=5e-3)
    again = TrajectoryNormalizer.from_state_dict(json.loads(json.dumps(norm.state_dict())))
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
    assert again.min_std == norm.min_std and again.count == norm.count
    path = tmp_path / "trajectory_normalizer.json"
    norm.save(path)
    loaded = TrajectoryNormalizer.load(path)
    data = trajectories(7, seed=3)
    np.testing.assert_array_equal(loaded.normalize(data), norm.normalize(data))


def test_refusals(tmp_path) -> None:
    data = trajectories()
    with pytest.raises(ValueError, match="no trajectories"):
        TrajectoryNormalizer.fit(np.zeros((0, 8, 3)))
    bad = data.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN \(first at index \[3, 4, 1\]\)"):
        TrajectoryNormalizer.fit(bad)
    bad[3, 4, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        TrajectoryNormalizer.fit(bad)
    with pytest.raises(ValueError, match=r"\[N, H, D\]"):
        TrajectoryNormalizer.fit(np.zeros((8, 3)))
    norm = TrajectoryNormalizer.fit(data)
    with pytest.raises(ValueError, match="NaN"):
        norm.normalize(np.full((8, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        norm.denormalize(torch.full((2, 8, 3), float("nan")))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 8, 3\]"):
        norm.normalize(torch.zeros(2, 8, 2))
    with pytest.raises(ValueError, match="format"):
        TrajectoryNormalizer.from_state_dict({"mean": [], "std": []})
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        TrajectoryNormalizer.load(path)
    with pytest.raises(ValueError, match="min_std"):
        TrajectoryNormalizer(np.zeros((8, 3)), np.ones((8, 3)), min_std=0.0)
