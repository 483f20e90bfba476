"""Metric-cache builder: a round trip over a synthetic scene and the errors on incomplete input."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_eval.errors import InvalidSceneError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.annotations import observation_from_frames
from navsim_eval.pdm.builder import build_metric_cache, route_lane_connector_ids
from navsim_eval.pdm.closed_planner import pdm_closed_proposals
from navsim_eval.scene import Boxes, EgoState, Frame, ObjectType, Scene

NUM_HISTORY = 4


def make_scene(num_future: int = 10) -> Scene:
    frames = []
    for i in range(NUM_HISTORY + num_future):
        t = (i - (NUM_HISTORY - 1)) * 0.5  # seconds relative to t0
        ego = EgoState(20.0 + 5.0 * t, 0.0, 0.0, vx=5.0)
        boxes = Boxes(
            ["car", "cone"],
            [ObjectType.VEHICLE, ObjectType.TRAFFIC_CONE],
            [[60.0 + 2.0 * t, 0.0, 0.0], [80.0, 4.0, 0.0]],
            [[4.5, 2.0, 1.6], [0.5, 0.5, 1.0]],
            [[2.0, 0.0], [0.0, 0.0]],
        )
        lights = [("lc", t < 1.0), ("lc_off_route", True)]
        frames.append(Frame(f"tok{i}", 1_000_000_000 + int(t * 1e6) + 2_000_000, ego, boxes, traffic_lights=lights))
    return Scene(token="tok3", log_name="log", map_name="us-ma-boston", frames=frames, num_history=NUM_HISTORY)


def make_map() -> DrivableMap:
    return DrivableMap.from_rings(
        [
            ("rb", MapLayer.ROADBLOCK, np.array([[-50, -6], [250, -6], [250, 6], [-50, 6]])),
            ("lane1", MapLayer.LANE, np.array([[-50, -2], [50, -2], [50, 2], [-50, 2]])),
            ("lc", MapLayer.LANE_CONNECTOR, np.array([[50, -2], [60, -2], [60, 2], [50, 2]])),
            ("lc_off_route", MapLayer.LANE_CONNECTOR, np.array([[50, 2], [60, 2], [60, 6], [50, 6]])),
        ]
    )


CENTERLINE = Centerline(np.stack([np.arange(-50.0, 251.0), np.zeros(301), np.zeros(301)], axis=1))
ROUTE = ["lane1", "lc"]


def test_round_trip_with_pdm_closed_reference():
    scene, drivable = make_scene(), make_map()
    picked = []

    def select(proposals: np.ndarray) -> int:
        picked.append(proposals)
        return 14

    cache = build_metric_cache(scene, drivable, ROUTE, CENTERLINE, select=select)
    assert cache.token == "tok3" and cache.log_name == "log" and cache.route_lane_ids == ("lane1", "lc")
    assert cache.ego.x == 20.0 and cache.ego.time_us == 1_002_000_000

    # Observation: 51 steps of the current and ten future frames; the car moves 0.2 m per step.
    assert cache.observation.num_steps == 51 and cache.observation.tokens == ["car", "cone"]
    np.testing.assert_allclose(cache.observation.boxes[:, 0, 0], 60.0 + 0.2 * np.arange(51))
    np.testing.assert_array_equal(cache.observation.velocity[:, 1], 0.0)

    # Red lights: only the on-route connector, red in the frames at 0 s and 0.5 s -> steps 0..9.
    assert len(cache.red_lights) == 41
    assert cache.red_lights[:10] == [["lc"]] * 10 and cache.red_lights[10:] == [[]] * 31

    # Reference = proposal 14 of PDM-Closed planned from the t0 objects and the t0 red lights.
    current = observation_from_frames([scene.current_frame], 1)
    proposals = pdm_closed_proposals(cache.ego, CENTERLINE, current, drivable, ["lc"], None)
    assert len(picked) == 2  # planned once, picked once per scoring version
    np.testing.assert_array_equal(picked[0], proposals)
    np.testing.assert_array_equal(picked[1], proposals)
    assert list(cache.references) == ["v1", "v2"]
    np.testing.assert_array_equal(cache.references["v1"], proposals[14])
    np.testing.assert_array_equal(cache.references["v2"], proposals[14])
    assert np.all(cache.references["v1"][:, 0] + 4.049 < 50.0)  # stops before the red connector

    # History and human future.
    assert [s.time_us for s in cache.past_ego_states] == [1_000_500_000, 1_001_000_000, 1_001_500_000, 1_002_000_000]
    np.testing.assert_allclose([s.x for s in cache.past_ego_states], [12.5, 15.0, 17.5, 20.0])
    np.testing.assert_allclose(cache.human_trajectory[:, 0], 2.5 * np.arange(1, 9))
    np.testing.assert_allclose(cache.human_trajectory[:, 1:], 0.0)


def test_given_reference_is_used_and_v2_observation_length():
    reference = np.zeros((41, 3))
    reference[:, 0] = np.linspace(20.0, 40.0, 41)
    cache = build_metric_cache(make_scene(num_future=8), make_map(), ROUTE, CENTERLINE, reference_poses=reference)
    assert cache.versions == ("v2",)  # 4 s of frames: a v2-only cache
    np.testing.assert_array_equal(cache.reference("v2"), reference)
    assert cache.observation.num_steps == 41
    assert cache.observation_v2 is None


def test_full_scene_gets_both_observations():
    cache = build_metric_cache(make_scene(), make_map(), ROUTE, CENTERLINE, reference_poses=np.zeros((41, 3)))
    assert cache.observation.num_steps == 51
    assert cache.observation_v2 is not None and cache.observation_v2.num_steps == 41


def test_default_selection_plans_a_reference_on_the_route():
    cache = build_metric_cache(make_scene(), make_map(), ROUTE, CENTERLINE)
    assert cache.versions == ("v1", "v2")
    for reference in cache.references.values():
        assert reference.shape == (41, 3) and np.all(np.isfinite(reference))
        # The reference moves forward along the route from (near) the current ego pose.
        assert reference[-1, 0] > reference[0, 0]
        assert abs(reference[0, 0] - cache.ego.x) < 1.0


def test_route_lane_connector_ids():
    assert route_lane_connector_ids(make_map(), ["lane1", "lc", "missing"]) == ["lc"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"route_lane_ids": []}, "tok3: route_lane_ids is empty"),
        ({"scene": make_scene(num_future=7)}, "tok3: future_frames has 7 frames, at least 8 needed"),
        ({"reference_poses": np.zeros((40, 3))}, "tok3: reference_poses must be finite \\[41, 3\\]"),
        ({"reference_poses": np.full((41, 3), np.nan)}, "tok3: reference_poses must be finite"),
    ],
)
def test_bad_input_names_scene_and_field(kwargs, match):
    arguments = {
        "scene": make_scene(),
        "drivable_map": make_map(),
        "route_lane_ids": ROUTE,
        "centerline": CENTERLINE,
        "select": lambda proposals: 0,
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidSceneError, match=match):
        build_metric_cache(**arguments)
