"""Camera rig and flat-shaded renderer of the synthetic world: projection, clipping, lights, objects, formats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from navsim_eval.data.openscene import CAMERA_NAMES
from navsim_eval.synthetic.cameras import (
    LIDAR2EGO_TRANSLATION,
    CameraSpec,
    default_rig,
    rig_from_openscene,
    rig_to_openscene,
)
from navsim_eval.synthetic.render import (
    CLASS_RGB,
    OFFROAD_COLOR,
    ROAD_COLOR,
    Marking,
    RenderScene,
    TrafficLightLamp,
    _marking_segments,
    example_scene,
    render_camera,
    render_rig,
    save_jpeg,
)

W, H = 256, 144


@pytest.fixture(scope="module")
def rig() -> dict[str, CameraSpec]:
    return default_rig(W, H)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _horizon_row(camera: CameraSpec) -> float:
    """Image row of the horizon at the centre column: a far point at camera height straight ahead."""
    (_, v), _ = camera.project(np.array([1e6, camera.translation[1], camera.translation[2]]))
    return float(v)


# ------------------------------------------------------------------------------------------------ cameras


def test_point_ahead_on_the_ground_projects_to_centre_column_below_horizon(rig):
    front = rig["CAM_F0"]
    (u, v), depth = front.project(np.array([20.0, 0.0, 0.0]))
    assert depth > 0
    assert abs(u - (W - 1) / 2) < 1.0
    assert _horizon_row(front) < v < H
    (u_left, _), _ = front.project(np.array([20.0, 3.0, 0.0]))
    (u_right, _), _ = front.project(np.array([20.0, -3.0, 0.0]))
    assert u_left < u < u_right
    (_, v_far), _ = front.project(np.array([40.0, 0.0, 0.0]))
    assert _horizon_row(front) < v_far < v  # farther ground is higher in the image


def test_rig_layout_matches_navsim_camera_directions(rig):
    """Optical axes: F0 forward, B0 back, L* on the left, R* on the right, front-most first."""
    assert list(rig) == list(CAMERA_NAMES)
    yaw = {name: np.degrees(np.arctan2(spec.rotation[1, 2], spec.rotation[0, 2])) for name, spec in rig.items()}
    assert abs(yaw["CAM_F0"]) < 1 and abs(abs(yaw["CAM_B0"]) - 180) < 1
    assert 0 < yaw["CAM_L0"] < yaw["CAM_L1"] < yaw["CAM_L2"] < 180
    assert 0 > yaw["CAM_R0"] > yaw["CAM_R1"] > yaw["CAM_R2"] > -180
    front = rig["CAM_F0"]
    hfov = 2 * np.degrees(np.arctan((W / 2) / front.intrinsics[0, 0]))
    assert 62 < hfov < 66
    assert 1.3 < front.translation[2] < 1.7


def test_resized_camera_is_the_same_camera(rig):
    big = rig["CAM_L0"].resized(4 * W, 4 * H)
    point = np.array([12.0, 9.0, 0.5])
    (u, v), _ = rig["CAM_L0"].project(point)
    (u4, v4), _ = big.project(point)
    assert np.allclose([(u4 + 0.5) / 4 - 0.5, (v4 + 0.5) / 4 - 0.5], [u, v])
    assert np.allclose(default_rig(1920, 1080)["CAM_F0"].resized(W, H).intrinsics, rig["CAM_F0"].intrinsics)


def test_openscene_camera_dict_round_trip(rig):
    cams = rig_to_openscene(rig, {"CAM_F0": "log/CAM_F0/abc.jpg"})
    assert set(cams) == set(CAMERA_NAMES)
    f0 = cams["CAM_F0"]
    assert set(f0) == {"data_path", "sensor2lidar_rotation", "sensor2lidar_translation", "cam_intrinsic", "distortion"}
    assert f0["data_path"] == "log/CAM_F0/abc.jpg" and cams["CAM_B0"]["data_path"] == ""
    assert f0["sensor2lidar_rotation"].dtype == np.float64 and f0["sensor2lidar_rotation"].shape == (3, 3)
    assert np.array_equal(f0["distortion"], np.zeros(5))
    back = rig_from_openscene(cams, W, H)
    for name, spec in rig.items():
        assert back[name].name == name and (back[name].width, back[name].height) == (W, H)
        for field in ("intrinsics", "rotation", "translation", "distortion"):
            assert np.array_equal(getattr(back[name], field), getattr(spec, field)), (name, field)
    # A lidar frame offset from the ego moves the translation only, and converts back exactly.
    offset = np.array([0.5, 0.0, 1.5])
    shifted = rig["CAM_F0"].to_openscene(lidar2ego_translation=offset)
    assert np.allclose(shifted["sensor2lidar_translation"], rig["CAM_F0"].translation - offset)
    again = CameraSpec.from_openscene("CAM_F0", shifted, W, H, lidar2ego_translation=offset)
    assert np.allclose(again.translation, rig["CAM_F0"].translation)
    assert np.array_equal(LIDAR2EGO_TRANSLATION, np.zeros(3))
    camera = rig["CAM_R1"].to_camera("x.jpg")
    assert camera.name == "CAM_R1" and camera.data_path == "x.jpg"
    assert np.array_equal(camera.intrinsics, rig["CAM_R1"].intrinsics)


def test_bad_calibration_is_refused():
    with pytest.raises(ValueError, match="sensor2lidar_rotation"):
        CameraSpec.from_openscene("CAM_F0", {"sensor2lidar_translation": np.zeros(3), "cam_intrinsic": np.eye(3)})
    with pytest.raises(ValueError, match="orthonormal rotation"):
        CameraSpec("CAM_F0", W, H, np.eye(3), 2 * np.eye(3), np.zeros(3))


# ------------------------------------------------------------------------------------------------ renderer


def _road_around_ego() -> RenderScene:
    """A 10 m wide road from 40 m behind to 60 m ahead: the polygon crosses the camera plane of every camera."""
    road = np.array([[-40.0, -5.0], [60.0, -5.0], [60.0, 5.0], [-40.0, 5.0]])
    return RenderScene(ego_pose=(0.0, 0.0, 0.0), road_polygons=[road])


def test_road_polygon_behind_the_camera_is_clipped_not_dropped(rig):
    front = rig["CAM_F0"]
    image = _pixels(render_camera(_road_around_ego(), front))
    horizon = int(np.ceil(_horizon_row(front)))
    road = np.all(image == ROAD_COLOR, axis=-1)
    centre = W // 2
    # The road fills the centre column from the image bottom up to its far end, 60 m ahead, near the horizon.
    (_, far_end), _ = front.project(np.array([60.0, 0.0, 0.0]))
    assert road[int(np.ceil(far_end)) + 1 :, centre].all()
    assert not road[int(far_end) - 1, centre]
    # It keeps its width: 20 m ahead, road within its edges and off-road outside them.
    (left_edge, row), _ = front.project(np.array([20.0, 5.0, 0.0]))
    (right_edge, _), _ = front.project(np.array([20.0, -5.0, 0.0]))
    line, slack = road[round(row)], 4  # the edges run diagonally: half a row is a few columns
    assert line[int(left_edge) + slack : int(right_edge) - slack].all()
    assert not line[: int(left_edge) - slack].any() and not line[int(right_edge) + slack :].any()
    # No inverted copy of the part behind the car: nothing but sky above the horizon.
    assert not road[: horizon - 1].any()
    offroad = np.all(image == OFFROAD_COLOR, axis=-1)
    assert not offroad[: horizon - 1].any()
    # Every camera renders it, each with road in its lower half and no exception (side cameras look across it).
    for image in render_rig(_road_around_ego(), rig).values():
        assert np.all(_pixels(image)[H // 2 :] == ROAD_COLOR, axis=-1).any()


def test_red_and_green_lights_show_where_their_lens_projects(rig):
    front = rig["CAM_F0"]

    def lens_window(state: str) -> np.ndarray:
        lamp = TrafficLightLamp(position=np.array([30.0, 0.0, 5.0]), state=state, facing_yaw=np.pi)
        image = _pixels(render_camera(RenderScene(ego_pose=(0.0, 0.0, 0.0), traffic_lights=[lamp]), front))
        (u, v), depth = front.project(lamp.lens_position())
        assert depth > 0 and 0 <= u < W and 0 <= v < H
        u, v = round(u), round(v)
        return image[max(v - 2, 0) : v + 3, max(u - 2, 0) : u + 3].reshape(-1, 3)

    red, green = lens_window("red"), lens_window("green")
    strongly_red = (red[:, 0] > 200) & (red[:, 1] < 90) & (red[:, 2] < 90)
    strongly_green = (green[:, 1] > 200) & (green[:, 0] < 100) & (green[:, 2] < 160)
    assert strongly_red.any() and not ((red[:, 1] > 200) & (red[:, 0] < 100)).any()
    assert strongly_green.any() and not ((green[:, 0] > 200) & (green[:, 1] < 90)).any()


def test_light_seen_from_behind_shows_no_lens(rig):
    lamp = TrafficLightLamp(position=np.array([30.0, 0.0, 5.0]), state="red", facing_yaw=0.0)  # faces away
    image = _pixels(render_camera(RenderScene(ego_pose=(0.0, 0.0, 0.0), traffic_lights=[lamp]), rig["CAM_F0"]))
    assert not ((image[..., 0] > 200) & (image[..., 1] < 90)).any()
    assert (image.sum(-1) < 150).any()  # the dark housing is there


def test_box_ahead_is_seen_by_the_front_camera_only(rig):
    empty = RenderScene(ego_pose=(5.0, 2.0, 0.3))
    heading = np.array([np.cos(0.3), np.sin(0.3)])
    centre = np.array([5.0, 2.0]) + 15.0 * heading
    box = RenderScene(
        ego_pose=(5.0, 2.0, 0.3),
        boxes=np.array([[*centre, 0.8, 4.6, 1.9, 1.6, 0.3]]),
        box_classes=["vehicle"],
    )
    changed = {
        name: int(np.any(_pixels(render_camera(box, cam)) != _pixels(render_camera(empty, cam)), axis=-1).sum())
        for name, cam in rig.items()
    }
    assert changed["CAM_F0"] > 100
    assert changed["CAM_B0"] == 0
    # The box is drawn in its class hue: blue dominates where it changed the front image.
    front = _pixels(render_camera(box, rig["CAM_F0"]))
    diff = np.any(front != _pixels(render_camera(empty, rig["CAM_F0"])), axis=-1)
    hue = front[diff].mean(axis=0)
    assert hue[2] > hue[0] + 40 and CLASS_RGB["vehicle"][2] > CLASS_RGB["vehicle"][0]


def test_near_box_is_painted_over_far_box(rig):
    front = rig["CAM_F0"]
    boxes = np.array([[25.0, 0.0, 1.5, 4.0, 4.0, 3.0, 0.0], [12.0, 0.0, 0.9, 1.0, 1.0, 1.8, 0.0]])
    image = _pixels(
        render_camera(RenderScene((0.0, 0.0, 0.0), boxes=boxes, box_classes=["vehicle", "pedestrian"]), front)
    )
    (u, v), _ = front.project(np.array([11.5, 0.0, 0.9]))  # rear face of the pedestrian
    pixel = image[round(v), round(u)]
    assert pixel[0] > pixel[2] - 60 and pixel[0] > 100  # magenta-ish, not the blue vehicle behind


def test_dashes_repeat_along_the_line():
    line = Marking(np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 0.0]]), style="dashed", dash_m=3.0, gap_m=6.0)
    start, end, half_width, _ = _marking_segments([line])
    assert np.allclose(start[:, 0], [0.0, 9.0, 18.0, 27.0]) and np.allclose(end[:, 0], [3.0, 12.0, 21.0, 30.0])
    assert np.allclose(half_width, 0.075)
    double = Marking(np.array([[0.0, 0.0], [10.0, 0.0]]), style="double", color="yellow")
    start, _, _, rgb = _marking_segments([double])
    assert sorted(start[:, 1].round(3)) == [-0.15, 0.15] and len(rgb) == 2  # one width apart, edge to edge


def test_markings_are_painted_on_the_road(rig):
    front = rig["CAM_F0"]
    scene = _road_around_ego()
    scene.markings = [Marking(np.array([[-40.0, 1.75], [60.0, 1.75]]), "solid", "white", 0.3)]
    image = _pixels(render_camera(scene, front))
    (u, v), _ = front.project(np.array([10.0, 1.75, 0.0]))
    assert (image[round(v), round(u) - 1 : round(u) + 2] > 200).all(axis=-1).any()


def test_every_camera_of_the_default_rig_renders(rig):
    images = render_rig(example_scene(), rig)
    assert list(images) == list(CAMERA_NAMES)
    for name, image in images.items():
        assert image.mode == "RGB" and image.size == (W, H), name
        pixels = _pixels(image)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5, name  # sky, ground, road, markings at least
    small = render_camera(example_scene(), rig["CAM_F0"], supersample=2)
    assert small.size == (W, H)


def test_rendering_is_deterministic(rig, tmp_path):
    first = render_camera(example_scene(), rig["CAM_F0"])
    second = render_camera(example_scene(), rig["CAM_F0"])
    assert first.tobytes() == second.tobytes()
    a, b = save_jpeg(first, tmp_path / "a" / "x.jpg"), save_jpeg(second, tmp_path / "b.jpg", quality=90)
    assert a.read_bytes() == b.read_bytes() and a.read_bytes()[:2] == b"\xff\xd8"
    assert Image.open(a).size == (W, H)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.jpg"]  # no temporary file left


def test_scene_far_away_is_culled_and_bad_input_refused(rig):
    far = example_scene(ego_pose=(5000.0, 5000.0, 0.0))
    sky_and_ground = render_camera(RenderScene(ego_pose=(5000.0, 5000.0, 0.0)), rig["CAM_F0"])
    assert render_camera(far, rig["CAM_F0"]).tobytes() == sky_and_ground.tobytes()
    with pytest.raises(ValueError, match="box_classes"):
        RenderScene((0.0, 0.0, 0.0), boxes=np.zeros((1, 7)), box_classes=["truck"])
    with pytest.raises(ValueError, match="road_polygons\\[0\\]"):
        render_camera(RenderScene((0.0, 0.0, 0.0), road_polygons=[np.zeros((2, 2))]), rig["CAM_F0"])
    with pytest.raises(ValueError, match="state"):
        TrafficLightLamp(np.zeros(3), "blue", 0.0)
