"""The relative angle that decides "ahead" / "behind" in NC and TTC, down to the last bit where it decides."""

from __future__ import annotations

import numpy as np

from navsim_eval.pdm.collisions import AHEAD_ANGLE, BEHIND_ANGLE, relative_angles

# (ego rear axle x, y, heading), object centroid, and nuPlan's get_agent_relative_angle as the official code
# returned it (traced in the official v2 run of the conformance case straight_rear_end_slow_lead: a lead vehicle
# exactly on the ego's heading ray). A plain a*b + c*d dot product rounds each of these the other way.
OFFICIAL_ON_RAY = [
    (
        (664015.1593775017, 3997010.4805138204, 0.6999999999735205),
        (664019.2541407914, 3997013.92948536),
        1.4901161193847656e-8,
    ),
    ((664015.6606429527, 3997010.902723885, 0.6999999999749464), (664019.4835934475, 3997014.1227506655), 0.0),
    (
        (664020.7642053562, 3997015.201395196, 0.7000000000182776),
        (664022.6959306342, 3997016.828464952),
        1.4901161193847656e-8,
    ),
    ((664006.4326050723, 3997003.130054805, 0.6999999999985489), (664018.3363301667, 3997013.156424136), np.nan),
]


def test_angles_on_the_heading_ray_round_as_the_official_code() -> None:
    ego = np.array([e for e, _, _ in OFFICIAL_ON_RAY])
    points = np.array([p for _, p, _ in OFFICIAL_ON_RAY])
    expected = np.array([a for _, _, a in OFFICIAL_ON_RAY])
    np.testing.assert_array_equal(relative_angles(ego, points), expected)


def test_angles_away_from_the_decision_values_are_the_geometric_angle() -> None:
    rng = np.random.default_rng(0)
    ego = np.column_stack([rng.uniform(-1e3, 1e3, 500), rng.uniform(-1e3, 1e3, 500), rng.uniform(-np.pi, np.pi, 500)])
    true_angle = rng.uniform(1e-3, np.pi - 1e-3, 500)
    direction = ego[:, 2] + true_angle * rng.choice([-1.0, 1.0], 500)
    distance = rng.uniform(1.0, 60.0, 500)
    points = ego[:, :2] + distance[:, None] * np.column_stack([np.cos(direction), np.sin(direction)])
    angles = relative_angles(ego, points)
    np.testing.assert_allclose(angles, true_angle, atol=1e-9)
    assert np.array_equal(angles < AHEAD_ANGLE, true_angle < AHEAD_ANGLE)
    assert np.array_equal(angles > BEHIND_ANGLE, true_angle > BEHIND_ANGLE)


def test_coincident_point_is_neither_ahead_nor_behind() -> None:
    angle = relative_angles(np.array([[1.0, 2.0, 0.3]]), np.array([[1.0, 2.0]]))
    assert np.isnan(angle[0])
