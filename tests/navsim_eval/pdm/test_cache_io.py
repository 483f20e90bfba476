"""Metric cache files: bit-exact round trips, checksums, clear errors, relocatable stores, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

from navsim_eval.conformance import case_paths, default_conformance_dir, load_case
from navsim_eval.errors import CacheFileError
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm import cache_io
from navsim_eval.pdm.cache_io import (
    INDEX_FILE,
    MetricCacheStore,
    UnknownTokenError,
    build_metric_cache_store,
    decode_metric_cache,
    encode_metric_cache,
    read_cache_token,
    read_metric_cache,
    write_metric_cache,
)
from navsim_eval.pdm.idm_traffic import IdmAgentSetup, ReactiveTraffic
from navsim_eval.pdm.metric_cache import MetricCache, SceneType
from navsim_eval.scene import EgoState

CONFORMANCE_DIR = default_conformance_dir()
CASE_IDS = ["curve_good", "straight_no_past_no_human", "isec_red_light_run", "rand_02_intersection"]
pytestmark = pytest.mark.skipif(not CONFORMANCE_DIR.is_dir(), reason="conformance cases not available")


def _case(case_id: str) -> MetricCache:
    return load_case(CONFORMANCE_DIR / "cases" / f"{case_id}.json").cache


@pytest.fixture(scope="module")
def caches() -> list[MetricCache]:
    return [_case(case_id) for case_id in CASE_IDS] + [_odd_cache()]


def _odd_cache() -> MetricCache:
    """A cache exercising the awkward corners: holes, -0.0, unsafe names, synthetic type, metadata, no past."""
    base = _case("curve_good")
    outer = np.array([[0.0, 0.0], [50.0, -0.0], [50.0, 30.0], [0.0, 30.0]])
    hole = np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 10.1 + 1e-13]])
    polygons = [shapely.Polygon(outer, [hole]), *base.drivable_map.polygons]
    drivable = DrivableMap(
        ["holey/roadblock", *base.drivable_map.tokens], [MapLayer.ROADBLOCK, *base.drivable_map.layers], polygons
    )
    return dataclasses.replace(
        base,
        token="odd token/with ünicode",
        log_name="../weird log",
        drivable_map=drivable,
        ego=EgoState(x=1 / 3, y=-0.0, heading=np.nextafter(np.pi, 0.0), vx=5e-324, time_us=2**53 + 1),
        past_ego_states=[],
        human_trajectory=None,
        observation_v2=base.observation.truncated(41),
        scene_type=SceneType.SYNTHETIC,
        metadata={"map_name": "us-nv-las-vegas-strip", "nested": {"a": [1, 2.5, None]}},
        current_objects=base.observation.truncated(1),
        reactive_traffic=ReactiveTraffic(
            agents=[
                IdmAgentSetup(
                    0,
                    np.array([[0.0, 1.0, 2.0, 0.1], [1.5, 2.5, 2.0, -0.0]]),
                    np.array([1.0, 2.0, 0.1]),
                    0.25,
                    1 / 3,
                    10.0,
                ),
                IdmAgentSetup(
                    0,
                    np.array([[0.0, 5.0, 5.0, 3.0], [2.0, 7.0, 5.0, 3.1], [4.0, 9.0, 5.0, 3.14]]),
                    np.array([5.0, 5.0, 3.0]),
                    0.0,
                    0.0,
                    13.9,
                ),
            ],
            kept_if_free=np.array([True] + [False] * (len(base.observation.truncated(1).tokens) - 1)),
        ),
    )


def _bits(array: np.ndarray) -> tuple:
    array = np.asarray(array)
    return array.dtype.str, array.shape, np.ascontiguousarray(array).tobytes()


def _ego_bits(state: EgoState) -> tuple:
    return (
        *(struct.pack("<d", getattr(state, f)) for f in ("x", "y", "heading", "vx", "vy", "ax", "ay")),
        state.time_us,
    )


def assert_identical(a: MetricCache, b: MetricCache) -> None:
    """Every MetricCache field equal, floats bit for bit (NaN payloads and signed zeros included)."""
    checked = set()

    def check(name: str, ok: bool) -> None:
        checked.add(name)
        assert ok, f"field {name} differs"

    check("token", a.token == b.token)
    check("log_name", a.log_name == b.log_name)
    check("scene_type", a.scene_type is b.scene_type)
    check("route_lane_ids", a.route_lane_ids == b.route_lane_ids and isinstance(b.route_lane_ids, tuple))
    check("red_lights", a.red_lights == b.red_lights)
    check("metadata", a.metadata == b.metadata)
    check("ego", _ego_bits(a.ego) == _ego_bits(b.ego))
    check(
        "references",
        list(a.references) == list(b.references)
        and all(_bits(a.references[v]) == _bits(b.references[v]) for v in a.references),
    )
    check("centerline", _bits(a.centerline.poses) == _bits(b.centerline.poses))
    am, bm = a.drivable_map, b.drivable_map
    same_map = am.tokens == bm.tokens and am.layers == bm.layers and len(am.polygons) == len(bm.polygons)
    for p, q in zip(am.polygons, bm.polygons, strict=True):
        same_map &= shapely.equals_exact(p, q, tolerance=0.0)
        same_map &= len(p.interiors) == len(q.interiors)
        same_map &= shapely.get_coordinates(p).tobytes() == shapely.get_coordinates(q).tobytes()
    check("drivable_map", bool(same_map))
    ao, bo = a.observation, b.observation
    arrays = ("types", "present", "boxes", "velocity")
    same_objects = all(_bits(getattr(ao, n)) == _bits(getattr(bo, n)) for n in arrays)
    check("observation", ao.tokens == bo.tokens and same_objects)
    if a.observation_v2 is None:
        check("observation_v2", b.observation_v2 is None)
    else:
        ao, bo = a.observation_v2, b.observation_v2
        same_objects = all(_bits(getattr(ao, n)) == _bits(getattr(bo, n)) for n in arrays)
        check("observation_v2", ao.tokens == bo.tokens and same_objects)
    if a.past_ego_states is None:
        check("past_ego_states", b.past_ego_states is None)
    else:
        check("past_ego_states", [_ego_bits(s) for s in a.past_ego_states] == [_ego_bits(s) for s in b.past_ego_states])
    if a.human_trajectory is None:
        check("human_trajectory", b.human_trajectory is None)
    else:
        check("human_trajectory", _bits(a.human_trajectory) == _bits(b.human_trajectory))
    if a.current_objects is None:
        check("current_objects", b.current_objects is None)
    else:
        ao, bo = a.current_objects, b.current_objects
        same_objects = all(_bits(getattr(ao, n)) == _bits(getattr(bo, n)) for n in arrays)
        check("current_objects", ao.tokens == bo.tokens and same_objects)
    if a.reactive_traffic is None:
        check("reactive_traffic", b.reactive_traffic is None)
    else:
        at, bt = a.reactive_traffic, b.reactive_traffic
        same = len(at.agents) == len(bt.agents) and _bits(at.kept_if_free) == _bits(bt.kept_if_free)
        for x, y in zip(at.agents, bt.agents, strict=True):
            same &= (x.column, x.progress, x.velocity, x.target_velocity) == (
                y.column,
                y.progress,
                y.velocity,
                y.target_velocity,
            )
            same &= _bits(x.path) == _bits(y.path) and _bits(x.box_pose) == _bits(y.box_pose)
        check("reactive_traffic", bool(same))
    assert checked == {f.name for f in dataclasses.fields(MetricCache)}, "assert_identical misses a field"


def test_stored_fields_cover_metric_cache() -> None:
    # A new MetricCache field must be added to the file format; encode refuses unknown fields.
    assert {f.name for f in dataclasses.fields(MetricCache)} == cache_io.STORED_FIELDS


def test_round_trip_is_bit_exact(caches: list[MetricCache], tmp_path: Path) -> None:
    for cache in caches:
        path = write_metric_cache(tmp_path, cache)
        assert path.is_file() and path.resolve().is_relative_to(tmp_path.resolve())
        loaded = read_metric_cache(path)
        assert_identical(cache, loaded)
        assert encode_metric_cache(loaded) == encode_metric_cache(cache)  # deterministic bytes


def test_optional_fields_and_variants_survive(caches: list[MetricCache]) -> None:
    by_token = {c.token: decode_metric_cache(encode_metric_cache(c)) for c in caches}
    assert by_token["straight_no_past_no_human"].past_ego_states is None
    assert by_token["straight_no_past_no_human"].human_trajectory is None
    assert by_token["curve_good"].human_trajectory.shape == (8, 3)
    assert any(by_token["isec_red_light_run"].red_lights)
    odd = by_token["odd token/with ünicode"]
    assert odd.past_ego_states == [] and odd.scene_type is SceneType.SYNTHETIC
    assert odd.observation_v2.num_steps == 41 and by_token["curve_good"].observation_v2 is None
    assert len(odd.drivable_map.polygons[0].interiors) == 1
    assert odd.ego.time_us == 2**53 + 1 and np.signbit(odd.ego.y)


def test_loaded_arrays_are_writable(caches: list[MetricCache]) -> None:
    loaded = decode_metric_cache(encode_metric_cache(caches[0]))
    loaded.observation.boxes[0, 0, 0] = 1.0
    loaded.references["v1"][0, 0] = 1.0


def test_unserialisable_metadata_is_rejected(caches: list[MetricCache]) -> None:
    cache = dataclasses.replace(caches[0], metadata={"bad": object()})
    with pytest.raises(Exception, match="metadata is not JSON-serialisable"):
        encode_metric_cache(cache)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mcache"
    with pytest.raises(CacheFileError, match=r"nope\.mcache: metric cache file not found"):
        read_metric_cache(path)


@pytest.mark.parametrize("keep", [0, 5, 40, 70, 0.5, -1])
def test_truncated_file_names_the_file(caches: list[MetricCache], tmp_path: Path, keep: float) -> None:
    path = write_metric_cache(tmp_path, caches[0])
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:size])
    with pytest.raises(CacheFileError, match="truncated") as info:
        read_metric_cache(path)
    assert str(path) in str(info.value)


def test_hash_mismatch_is_detected(caches: list[MetricCache], tmp_path: Path) -> None:
    path = write_metric_cache(tmp_path, caches[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CacheFileError, match="content hash mismatch") as info:
        read_metric_cache(path)
    assert str(path) in str(info.value)


def test_trailing_bytes_are_detected(caches: list[MetricCache], tmp_path: Path) -> None:
    path = write_metric_cache(tmp_path, caches[0])
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(CacheFileError, match="unexpected bytes"):
        read_metric_cache(path)


@pytest.mark.parametrize(
    ("version", "match"),
    [
        (
            cache_io.FORMAT_VERSION + 1,
            f"metric cache format {cache_io.FORMAT_VERSION + 1}, this navsim_eval reads format "
            f"{cache_io.FORMAT_VERSION}: upgrade navsim_eval",
        ),
        (
            1,
            r"written by an older navsim_eval \(format 1, one PDM-Closed reference for both versions.*"
            r"`navsim-eval cache`",
        ),
    ],
)
def test_wrong_format_version(caches: list[MetricCache], tmp_path: Path, version: int, match: str) -> None:
    path = write_metric_cache(tmp_path, caches[0])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, version)
    path.write_bytes(bytes(data))
    with pytest.raises(CacheFileError, match=match) as info:
        read_metric_cache(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_index_of_an_older_format_is_refused_in_one_line(caches: list[MetricCache], tmp_path: Path) -> None:
    store = build_metric_cache_store(tmp_path, caches[:1], fsync=False)
    index = store.root / cache_io.INDEX_FILE
    data = json.loads(index.read_text())
    data["format_version"] = 1
    index.write_text(json.dumps(data))
    with pytest.raises(CacheFileError, match=r"metadata\.json: metric cache written by an older navsim_eval"):
        MetricCacheStore(tmp_path)


def test_foreign_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "metric_cache.pkl"
    path.write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 100)  # e.g. an official lzma pickle
    with pytest.raises(CacheFileError, match="not a navsim_eval metric cache file"):
        read_metric_cache(path)


def test_store_basic_api(caches: list[MetricCache], tmp_path: Path) -> None:
    store = build_metric_cache_store(tmp_path / "cache", caches, fsync=False)
    assert len(store) == len(caches)
    assert sorted(store.tokens()) == sorted(c.token for c in caches)
    for cache in caches:
        assert cache.token in store
        assert store.path(cache.token).is_file()
        assert_identical(cache, store[cache.token])
        assert read_cache_token(store.path(cache.token)) == cache.token
    # unsafe names stay inside the root
    odd_path = store.path("odd token/with ünicode").resolve()
    assert odd_path.is_relative_to((tmp_path / "cache").resolve())


def test_unknown_token(caches: list[MetricCache], tmp_path: Path) -> None:
    store = build_metric_cache_store(tmp_path, caches[:1], fsync=False)
    with pytest.raises(UnknownTokenError, match="no metric cache for token 'missing'") as info:
        store["missing"]
    assert isinstance(info.value, CacheFileError) and isinstance(info.value, KeyError)
    assert str(tmp_path) in str(info.value)
    assert store.get("missing") is None


def test_index_uses_relative_paths_and_moved_folder_loads(caches: list[MetricCache], tmp_path: Path) -> None:
    original = tmp_path / "original"
    build_metric_cache_store(original, caches, fsync=False)
    index_text = (original / INDEX_FILE).read_text()
    assert str(tmp_path) not in index_text
    assert all(not Path(p).is_absolute() for p in json.loads(index_text)["entries"].values())
    moved = tmp_path / "elsewhere" / "copy"
    shutil.move(str(original), str(moved))
    store = MetricCacheStore(moved)
    assert len(store) == len(caches)
    for cache in caches:
        assert_identical(cache, store[cache.token])


def test_leftover_temp_file_does_not_break_reading(caches: list[MetricCache], tmp_path: Path) -> None:
    store = build_metric_cache_store(tmp_path, caches[:2], fsync=False)
    target = store.path(caches[0].token)
    leftover = target.with_name(f".{target.name}.12345.deadbeef.tmp")
    leftover.write_bytes(b"half-written garbage")  # as if a writer died before os.replace
    (tmp_path / f".{INDEX_FILE}.999.tmp").write_text("{")
    reopened = MetricCacheStore(tmp_path)
    assert_identical(caches[0], reopened[caches[0].token])
    reopened.rebuild_index()  # the scan ignores temporary files
    assert sorted(MetricCacheStore(tmp_path).tokens()) == sorted(c.token for c in caches[:2])
    reopened.add(caches[0])  # and writing over the same name still works
    assert_identical(caches[0], MetricCacheStore(tmp_path)[caches[0].token])


def test_store_without_index_scans_folder(caches: list[MetricCache], tmp_path: Path) -> None:
    for cache in caches:
        write_metric_cache(tmp_path, cache, fsync=False)
    store = MetricCacheStore(tmp_path)
    assert sorted(store.tokens()) == sorted(c.token for c in caches)
    store.rebuild_index()
    assert (tmp_path / INDEX_FILE).is_file()


def test_add_replaces_and_moves_between_logs(caches: list[MetricCache], tmp_path: Path) -> None:
    store = MetricCacheStore(tmp_path)
    first = store.add(caches[0])
    moved = dataclasses.replace(caches[0], log_name="2021.06.09.17.23.18_veh-38_00773_01266")
    second = store.add(moved)
    assert not first.exists() and second.is_file()
    assert second.parent.name == moved.log_name
    reopened = MetricCacheStore(tmp_path)
    assert len(reopened) == 1 and reopened[moved.token].log_name == moved.log_name


def test_index_and_file_must_agree(caches: list[MetricCache], tmp_path: Path) -> None:
    store = build_metric_cache_store(tmp_path, caches[:2], fsync=False)
    a, b = caches[0].token, caches[1].token
    shutil.copy(store.path(a), store.path(b))
    with pytest.raises(CacheFileError, match=f"holds token {a!r}"):
        MetricCacheStore(tmp_path)[b]


def test_bad_index_is_reported(tmp_path: Path) -> None:
    (tmp_path / INDEX_FILE).write_text("{not json")
    with pytest.raises(CacheFileError, match=INDEX_FILE):
        MetricCacheStore(tmp_path)
    index = {"format": cache_io.INDEX_FORMAT, "format_version": cache_io.FORMAT_VERSION, "entries": {"t": "/etc/x"}}
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CacheFileError, match="not a path inside the cache"):
        MetricCacheStore(tmp_path)


def test_load_time_per_scene_is_small(tmp_path: Path) -> None:
    # every conformance scene; the budget is 5 ms per typical scene (measured ~0.5 ms)
    caches = [load_case(p).cache for p in case_paths(CONFORMANCE_DIR)]
    store = build_metric_cache_store(tmp_path, caches, fsync=False)
    times = []
    for token in store.tokens():
        start = time.perf_counter()
        store[token]
        times.append(time.perf_counter() - start)
    assert float(np.median(times)) < 5e-3
