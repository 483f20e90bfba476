"""The towns of the synthetic world: four layouts, each written as one of nuPlan's four map locations.

The official devkit accepts only nuPlan's location names, so every town is one of them, placed at coordinates of
that city's UTM zone (the zone is the map's projected CRS, as in the released maps):

* ``boston-grid`` (us-ma-boston, UTM 19N): a tight grid of one-lane streets inside a two-lane ring with sharp
  corners; signals inside, yield T-junctions on the ring, car parks;
* ``vegas-arterials`` (us-nv-las-vegas-strip, UTM 11N): wide arterials, three lanes per direction on the ring and
  two on the cross roads, big signalised junctions, lane drops;
* ``pittsburgh-hills`` (us-pa-pittsburgh-hazelwood, UTM 17N): a curvy suburb of winding one-lane roads with
  S-bends, tight corners, a roundabout and yield T-junctions;
* ``one-north-mixed`` (sg-one-north, UTM 48N): the held-out town, two-lane grid roads, winding side streets, a
  roundabout, a lane drop, signals and yield junctions.

The first three are the training towns; ``one-north-mixed`` is the test town that no training log drives in. The
layouts are deterministic in ``seed`` (the winding roads' bends move with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from navsim_eval.maps.locations import MAP_LOCATIONS, PROJECTED_CRS
from navsim_eval.synthetic.network import NodeSpec, RoadNetwork, RoadSpec, TownLayout, build_network, grid_layout


@dataclass(frozen=True)
class Town:
    """A town: its nuPlan location (and so its UTM zone), where it sits in that zone, and how it is laid out."""

    name: str
    location: str
    origin: tuple[float, float]  # UTM easting / northing of the layout's (0, 0)
    layout: Callable[[np.random.Generator], TownLayout]
    description: str

    def __post_init__(self) -> None:
        if self.location not in MAP_LOCATIONS:
            raise ValueError(f"town {self.name}: location {self.location!r} is not one of {list(MAP_LOCATIONS)}")

    @property
    def projected_crs(self) -> str:
        return PROJECTED_CRS[self.location]

    def build(self, seed: int = 0) -> RoadNetwork:
        """The town's road network (the same for the same seed)."""
        rng = np.random.default_rng([seed, MAP_LOCATIONS.index(self.location)])
        return build_network(self.layout(rng), self.origin)


# ------------------------------------------------------------------------------------------------ layout edits


def wiggle(road: RoadSpec, nodes, rng: np.random.Generator, amplitude: tuple[float, float], radius: float) -> RoadSpec:
    """A straight road made winding: two bends at a third and two thirds of its length, pushed sideways (an S-bend
    or a bulge), rounded with ``radius``; it still leaves its junctions straight (no acute corners there), and its
    speed limit drops to what the bends allow (about 3 m/s^2 across)."""
    a, b = np.array([nodes[road.a].x, nodes[road.a].y]), np.array([nodes[road.b].x, nodes[road.b].y])
    d = b - a
    normal = np.array([-d[1], d[0]]) / np.linalg.norm(d)
    first = float(rng.uniform(*amplitude)) * (1 if rng.random() < 0.5 else -1)
    second = -first if rng.random() < 0.6 else first
    via = (
        tuple(a + 0.12 * d),
        tuple(a + 0.38 * d + first * normal),
        tuple(a + 0.62 * d + second * normal),
        tuple(a + 0.88 * d),
    )
    return replace(road, via=via, radius=radius, speed_limit=min(road.speed_limit, round(math.sqrt(3.2 * radius), 1)))


def lane_drop(layout: TownLayout, index: int, name: str, fraction: float = 0.5) -> TownLayout:
    """Split straight road ``index`` at ``fraction`` with a ``merge`` node where direction a -> b loses its right
    lane (the merging lane yields to the one it joins)."""
    road = layout.roads[index]
    if road.via or road.points is not None or road.lanes_ab < 2:
        raise ValueError(f"lane_drop: road {road.a}-{road.b} must be straight with at least two lanes a -> b")
    a, b = layout.nodes[road.a], layout.nodes[road.b]
    nodes = dict(layout.nodes)
    nodes[name] = NodeSpec(a.x + fraction * (b.x - a.x), a.y + fraction * (b.y - a.y), "merge")
    roads = list(layout.roads)
    roads[index] = replace(road, b=name, carpark=False)
    roads.append(replace(road, a=name, lanes_ab=road.lanes_ab - 1))
    return TownLayout(nodes, roads)


def roundabout(layout: TownLayout, node: str, radius: float, speed: float = 8.0) -> TownLayout:
    """Replace a junction by a one-lane anticlockwise ring of ``radius`` with a ``roundabout`` node where each road
    meets it (traffic on the ring goes first)."""
    centre = np.array([layout.nodes[node].x, layout.nodes[node].y])
    nodes = {k: v for k, v in layout.nodes.items() if k != node}
    roads, arms = [], []
    for road in layout.roads:
        if node not in (road.a, road.b):
            roads.append(road)
            continue
        if road.a == node:
            toward = road.via[0] if road.via else (layout.nodes[road.b].x, layout.nodes[road.b].y)
        else:
            toward = road.via[-1] if road.via else (layout.nodes[road.a].x, layout.nodes[road.a].y)
        angle = math.atan2(toward[1] - centre[1], toward[0] - centre[0])
        arm = f"{node}/ring{len(arms)}"
        arms.append((angle, arm))
        nodes[arm] = NodeSpec(centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle), "roundabout")
        roads.append(replace(road, a=arm if road.a == node else road.a, b=arm if road.b == node else road.b))
    arms.sort()
    for k, (angle, arm) in enumerate(arms):
        next_angle, next_arm = arms[(k + 1) % len(arms)]
        sweep = (next_angle - angle) % (2 * math.pi)
        steps = max(8, math.ceil(radius * sweep))
        angles = angle + np.linspace(0.0, sweep, steps + 1)
        points = tuple((centre[0] + radius * math.cos(t), centre[1] + radius * math.sin(t)) for t in angles)
        roads.append(RoadSpec(arm, next_arm, 1, 0, speed, points=points, priority=True))
    return TownLayout(nodes, roads)


def _road_index(layout: TownLayout, a: str, b: str) -> int:
    return next(k for k, road in enumerate(layout.roads) if {road.a, road.b} == {a, b})


# ------------------------------------------------------------------------------------------------ the towns


def _boston(rng: np.random.Generator) -> TownLayout:
    layout = grid_layout(
        (5, 4),
        130.0,
        ring_lanes=2,
        inner_lanes=1,
        ring_speed=13.4,
        inner_speed=11.0,
        corner_radius=20.0,
        t_control="yield",
    )
    carparks = {_road_index(layout, "1,1", "2,1"), _road_index(layout, "2,2", "3,2")}
    roads = [replace(road, carpark=k in carparks) for k, road in enumerate(layout.roads)]
    return TownLayout(layout.nodes, roads)


def _vegas(rng: np.random.Generator) -> TownLayout:
    layout = grid_layout(
        (4, 3),
        230.0,
        ring_lanes=3,
        inner_lanes=2,
        ring_speed=17.0,
        inner_speed=15.0,
        corner_radius=45.0,
        t_control="signal",
    )
    layout = lane_drop(layout, _road_index(layout, "1,0", "2,0"), "drop-south", 0.5)
    layout = lane_drop(layout, _road_index(layout, "1,2", "2,2"), "drop-north", 0.5)
    inner = _road_index(layout, "1,1", "2,1")
    layout = lane_drop(layout, inner, "drop-centre", 0.5)
    roads = [replace(road, carpark=k == _road_index(layout, "0,1", "1,1")) for k, road in enumerate(layout.roads)]
    return TownLayout(layout.nodes, roads)


def _pittsburgh(rng: np.random.Generator) -> TownLayout:
    layout = grid_layout(
        (4, 3),
        210.0,
        ring_lanes=1,
        inner_lanes=1,
        ring_speed=11.0,
        inner_speed=11.0,
        corner_radius=20.0,
        t_control="yield",
    )
    roads = [
        wiggle(road, layout.nodes, rng, (22.0, 38.0), float(rng.uniform(18.0, 28.0))) if not road.via else road
        for road in layout.roads
    ]
    layout = TownLayout(layout.nodes, roads)
    layout = roundabout(layout, "1,1", 24.0)
    return TownLayout(layout.nodes, layout.roads)


def _one_north(rng: np.random.Generator) -> TownLayout:
    layout = grid_layout(
        (4, 4),
        180.0,
        ring_lanes=2,
        inner_lanes=1,
        ring_speed=13.9,
        inner_speed=11.0,
        corner_radius=24.0,
        t_control="yield",
    )
    winding = {_road_index(layout, "1,2", "1,3"), _road_index(layout, "2,1", "3,1"), _road_index(layout, "2,0", "2,1")}
    roads = [
        wiggle(road, layout.nodes, rng, (20.0, 32.0), float(rng.uniform(18.0, 26.0))) if k in winding else road
        for k, road in enumerate(layout.roads)
    ]
    carpark = _road_index(layout, "1,1", "2,1")
    roads = [replace(road, carpark=k == carpark) for k, road in enumerate(roads)]
    layout = TownLayout(layout.nodes, roads)
    layout = lane_drop(layout, _road_index(layout, "1,0", "2,0"), "drop-south", 0.5)
    layout = roundabout(layout, "2,2", 26.0)
    return layout


TOWNS: dict[str, Town] = {
    town.name: town
    for town in (
        Town(
            "boston-grid",
            "us-ma-boston",
            (330_000.0, 4_690_000.0),
            _boston,
            "a tight grid of one-lane streets inside a two-lane ring with sharp corners",
        ),
        Town(
            "vegas-arterials",
            "us-nv-las-vegas-strip",
            (664_000.0, 3_996_000.0),
            _vegas,
            "wide arterials with three and two lanes per direction, big signalised junctions and lane drops",
        ),
        Town(
            "pittsburgh-hills",
            "us-pa-pittsburgh-hazelwood",
            (587_000.0, 4_477_000.0),
            _pittsburgh,
            "a curvy suburb of winding one-lane roads, tight corners, a roundabout and yield junctions",
        ),
        Town(
            "one-north-mixed",
            "sg-one-north",
            (365_000.0, 143_000.0),
            _one_north,
            "two-lane grid roads, winding side streets, a roundabout and a lane drop",
        ),
    )
}
TRAIN_TOWNS = ("boston-grid", "vegas-arterials", "pittsburgh-hills")
TEST_TOWN = "one-north-mixed"
