"""Metric caches on disk: one compact, checksummed file per scene plus a relocatable index.

Why not NAVSIM's format: the official cache pickles nuPlan/shapely objects with lzma (slow to load, tied to class
paths) and indexes them by *absolute* paths, so a copied cache folder breaks. Here every :class:`MetricCache` field
is stored as plain numpy arrays plus a small JSON header, zlib-compressed, and the index holds paths relative to
the cache root, so a cache folder can be moved or copied freely.

Layout of a cache folder::

    <root>/metadata.json                        index: {token: "<log folder>/<file name>"} (relative paths)
    <root>/<log_name or unknown_log>/<token>.mcache

File layout (little-endian)::

    0   8 bytes   magic b"NEVMC\\x00\\r\\n" (the CR/LF catch text-mode copies)
    8   uint32    format version (FORMAT_VERSION)
    12  uint32    codec (1 = zlib)
    16  uint64    payload length in bytes
    24  32 bytes  sha256 of the payload
    56  payload   uint32 token length, token (UTF-8), compressed body

The body is ``uint32 header length, JSON header, zero padding to 8 bytes, array blob``; the header names each
array's dtype, shape and offset in the blob. Float arrays are stored raw, so a round trip is bit-exact. The
free-form ``metadata`` dict is stored as JSON (numpy scalars/arrays and tuples come back as Python numbers/lists).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from navsim_eval import __version__
from navsim_eval.atomic import atomic_write_bytes
from navsim_eval.errors import CacheFileError, NavsimEvalError
from navsim_eval.maps.centerline import Centerline
from navsim_eval.maps.drivable import DrivableMap, MapLayer
from navsim_eval.pdm.idm_traffic import IdmAgentSetup, ReactiveTraffic
from navsim_eval.pdm.metric_cache import MetricCache, SceneType
from navsim_eval.pdm.observation import Observation
from navsim_eval.scene import EgoState

# 2: one PDM-Closed reference per scoring version (v1.1 and v2 rank the proposals differently)
FORMAT_VERSION = 2
CACHE_SUFFIX = ".mcache"
INDEX_FILE = "metadata.json"
INDEX_FORMAT = "navsim_eval.metric_cache_index"
UNKNOWN_LOG = "unknown_log"

_MAGIC = b"NEVMC\x00\r\n"
_CODEC_ZLIB = 1
_ZLIB_LEVEL = 6
_PREFIX = struct.Struct("<8sIIQ32s")  # magic, version, codec, payload length, sha256
_U32 = struct.Struct("<I")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,150}")

# Every MetricCache field this format stores. A field added to MetricCache without updating this module makes
# writing fail loudly (and the cache_io tests fail) instead of silently dropping data.
STORED_FIELDS = frozenset(
    {
        "token",
        "ego",
        "drivable_map",
        "route_lane_ids",
        "centerline",
        "observation",
        "red_lights",
        "references",
        "past_ego_states",
        "human_trajectory",
        "observation_v2",
        "scene_type",
        "log_name",
        "metadata",
        "current_objects",
        "reactive_traffic",
    }
)
_EGO_FIELDS = ("x", "y", "heading", "vx", "vy", "ax", "ay")


class UnknownTokenError(CacheFileError, KeyError):
    """The store has no metric cache for a token (also a ``KeyError``, so ``dict``-style handling works)."""

    __str__ = BaseException.__str__  # KeyError would quote the message


# --------------------------------------------------------------------------------------------------- encode


def encode_metric_cache(cache: MetricCache) -> bytes:
    """Serialise a metric cache to the bytes of one cache file."""
    unknown = {f.name for f in dataclasses.fields(cache)} - STORED_FIELDS
    if unknown:
        raise NotImplementedError(
            f"navsim_eval.pdm.cache_io cannot store MetricCache field(s) {sorted(unknown)}; "
            "extend the file format (and bump FORMAT_VERSION)"
        )
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {
        "token": cache.token,
        "log_name": cache.log_name,
        "scene_type": cache.scene_type.value,
        "ego_time_us": int(cache.ego.time_us),
        "route_lane_ids": list(cache.route_lane_ids),
        "red_lights": [[str(t) for t in step] for step in cache.red_lights],
        "map_tokens": list(cache.drivable_map.tokens),
        "map_layers": [layer.value for layer in cache.drivable_map.layers],
        "object_tokens": list(cache.observation.tokens),
        "object_tokens_v2": None if cache.observation_v2 is None else list(cache.observation_v2.tokens),
        "past_ego_time_us": None,
        "has_human_trajectory": cache.human_trajectory is not None,
        "reference_versions": list(cache.references),
        "current_object_tokens": None if cache.current_objects is None else list(cache.current_objects.tokens),
        "has_reactive_traffic": cache.reactive_traffic is not None,
        "metadata": cache.metadata,
        "writer": f"navsim_eval {__version__}",
    }
    arrays["ego"] = _ego_array([cache.ego])[0]
    for version, poses in cache.references.items():
        arrays[f"reference_{version}"] = poses
    arrays["centerline"] = cache.centerline.poses
    geometry_type, coords, offsets = shapely.to_ragged_array(cache.drivable_map.polygons, include_z=False)
    if geometry_type != shapely.GeometryType.POLYGON:
        raise NavsimEvalError(f"metric cache {cache.token}: drivable map must hold polygons, got {geometry_type!r}")
    arrays["map_coords"], arrays["map_ring_offsets"], arrays["map_polygon_offsets"] = coords, offsets[0], offsets[1]
    _put_observation(arrays, "object", cache.observation)
    if cache.observation_v2 is not None:
        _put_observation(arrays, "object_v2", cache.observation_v2)
    if cache.past_ego_states is not None:
        arrays["past_ego"] = _ego_array(cache.past_ego_states)
        header["past_ego_time_us"] = [int(s.time_us) for s in cache.past_ego_states]
    if cache.human_trajectory is not None:
        arrays["human_trajectory"] = cache.human_trajectory
    if cache.current_objects is not None:
        _put_observation(arrays, "current", cache.current_objects)
    if cache.reactive_traffic is not None:
        _put_reactive_traffic(arrays, cache.reactive_traffic)

    blob, specs = _pack_arrays(arrays)
    header["arrays"] = specs
    try:
        header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False, default=_json_default).encode()
    except (TypeError, ValueError) as error:
        raise NavsimEvalError(f"metric cache {cache.token}: metadata is not JSON-serialisable ({error})") from None
    padding = (-(_U32.size + len(header_bytes))) % 8
    body = b"".join([_U32.pack(len(header_bytes)), header_bytes, b"\x00" * padding, blob])
    token_bytes = cache.token.encode()
    payload = _U32.pack(len(token_bytes)) + token_bytes + zlib.compress(body, _ZLIB_LEVEL)
    prefix = _PREFIX.pack(_MAGIC, FORMAT_VERSION, _CODEC_ZLIB, len(payload), hashlib.sha256(payload).digest())
    return prefix + payload


def _put_observation(arrays: dict[str, np.ndarray], prefix: str, observation: Observation) -> None:
    arrays[f"{prefix}_types"], arrays[f"{prefix}_present"] = observation.types, observation.present
    arrays[f"{prefix}_boxes"], arrays[f"{prefix}_velocity"] = observation.boxes, observation.velocity


def _put_reactive_traffic(arrays: dict[str, np.ndarray], traffic: ReactiveTraffic) -> None:
    agents = traffic.agents
    arrays["idm_columns"] = np.array([a.column for a in agents], dtype=np.int64)
    arrays["idm_box_poses"] = np.array([a.box_pose for a in agents], dtype=np.float64).reshape(-1, 3)
    arrays["idm_states"] = np.array(
        [[a.progress, a.velocity, a.target_velocity] for a in agents], dtype=np.float64
    ).reshape(-1, 3)
    arrays["idm_path_offsets"] = np.cumsum([0] + [len(a.path) for a in agents]).astype(np.int64)
    arrays["idm_paths"] = np.concatenate([a.path for a in agents]) if agents else np.zeros((0, 4))
    arrays["idm_kept_if_free"] = traffic.kept_if_free


def _get_reactive_traffic(arrays: dict[str, np.ndarray]) -> ReactiveTraffic:
    offsets = arrays["idm_path_offsets"]
    agents = [
        IdmAgentSetup(
            column=int(column),
            path=arrays["idm_paths"][offsets[i] : offsets[i + 1]],
            box_pose=arrays["idm_box_poses"][i],
            progress=float(arrays["idm_states"][i, 0]),
            velocity=float(arrays["idm_states"][i, 1]),
            target_velocity=float(arrays["idm_states"][i, 2]),
        )
        for i, column in enumerate(arrays["idm_columns"])
    ]
    return ReactiveTraffic(agents, arrays["idm_kept_if_free"].astype(bool))


def _ego_array(states: Iterable[EgoState]) -> np.ndarray:
    return np.array([[getattr(s, name) for name in _EGO_FIELDS] for s in states], dtype=np.float64).reshape(-1, 7)


def _pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, list]]:
    chunks: list[bytes] = []
    specs: dict[str, list] = {}
    offset = 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise NavsimEvalError(f"cannot store object array {name!r} in a metric cache file")
        data = array.tobytes()
        specs[name] = [array.dtype.str, list(array.shape), offset]
        pad = (-len(data)) % 8
        chunks.extend([data, b"\x00" * pad])
        offset += len(data) + pad
    return b"".join(chunks), specs


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------------------------------- decode


def decode_metric_cache(data: bytes, source: str = "<bytes>") -> MetricCache:
    """Rebuild a metric cache from the bytes of one cache file; ``source`` names it in error messages."""
    payload = _checked_payload(data, source)
    token_end = _read_token_end(payload, source)
    try:
        body = bytearray(zlib.decompress(memoryview(payload)[token_end:]))  # bytearray: arrays come back writable
    except zlib.error as error:
        raise CacheFileError(f"{source}: corrupt compressed data ({error})") from None
    try:
        (header_len,) = _U32.unpack_from(body, 0)
        header = json.loads(bytes(body[_U32.size : _U32.size + header_len]))
        blob_start = _U32.size + header_len + (-(_U32.size + header_len)) % 8
        arrays = _unpack_arrays(body, blob_start, header["arrays"])
        return _build_cache(header, arrays)
    except CacheFileError:
        raise
    except NavsimEvalError as error:
        raise CacheFileError(f"{source}: stored scene is invalid: {error}") from None
    except (KeyError, ValueError, TypeError, IndexError, struct.error) as error:
        raise CacheFileError(f"{source}: malformed cache contents ({type(error).__name__}: {error})") from None


def _format_version_problem(version: object) -> str:
    """Why a cache of another format version cannot be read, and what to do."""
    if isinstance(version, int) and version < FORMAT_VERSION:
        detail = ", one PDM-Closed reference for both versions" if version == 1 else ""
        return (
            f"metric cache written by an older navsim_eval (format {version}{detail}; this one reads format "
            f"{FORMAT_VERSION}); rebuild it with `navsim-eval cache` (or `navsim-eval import-cache`)"
        )
    return f"metric cache format {version!r}, this navsim_eval reads format {FORMAT_VERSION}: upgrade navsim_eval"


def _checked_payload(data: bytes, source: str) -> memoryview:
    if len(data) < _PREFIX.size:
        if data[: len(_MAGIC)] != _MAGIC[: len(data)]:
            raise CacheFileError(f"{source}: not a navsim_eval metric cache file (unknown magic bytes)")
        raise CacheFileError(f"{source}: truncated file ({len(data)} bytes, the header alone is {_PREFIX.size})")
    magic, version, codec, length, digest = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC:
        raise CacheFileError(f"{source}: not a navsim_eval metric cache file (unknown magic bytes)")
    if version != FORMAT_VERSION:
        raise CacheFileError(f"{source}: {_format_version_problem(version)}")
    if codec != _CODEC_ZLIB:
        raise CacheFileError(f"{source}: unknown compression codec {codec}")
    actual = len(data) - _PREFIX.size
    if actual < length:
        raise CacheFileError(f"{source}: truncated file (payload has {actual} of {length} bytes)")
    if actual > length:
        raise CacheFileError(f"{source}: {actual - length} unexpected bytes after the payload (corrupt file)")
    payload = memoryview(data)[_PREFIX.size :]
    if hashlib.sha256(payload).digest() != digest:
        raise CacheFileError(f"{source}: content hash mismatch, the file is corrupt (sha256 of the payload differs)")
    return payload


def _read_token_end(payload: memoryview | bytes, source: str) -> int:
    if len(payload) < _U32.size:
        raise CacheFileError(f"{source}: truncated file (no token)")
    (token_len,) = _U32.unpack_from(payload, 0)
    if _U32.size + token_len > len(payload):
        raise CacheFileError(f"{source}: truncated file (token length {token_len} exceeds the payload)")
    return _U32.size + token_len


def _unpack_arrays(body: bytearray, start: int, specs: dict[str, list]) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (dtype_str, shape, offset) in specs.items():
        dtype = np.dtype(dtype_str)
        count = int(np.prod(shape, dtype=np.int64))
        if start + offset + count * dtype.itemsize > len(body):
            raise CacheFileError(f"array {name!r} runs past the end of the cache body")
        arrays[name] = np.frombuffer(body, dtype=dtype, count=count, offset=start + offset).reshape(shape)
    return arrays


def _ego(row: np.ndarray, time_us: int) -> EgoState:
    x, y, heading, vx, vy, ax, ay = row.tolist()
    return EgoState(x=x, y=y, heading=heading, vx=vx, vy=vy, ax=ax, ay=ay, time_us=int(time_us))


def _get_observation(arrays: dict[str, np.ndarray], prefix: str, tokens: list[str]) -> Observation:
    return Observation(
        tokens=list(tokens),
        types=arrays[f"{prefix}_types"],
        present=arrays[f"{prefix}_present"],
        boxes=arrays[f"{prefix}_boxes"],
        velocity=arrays[f"{prefix}_velocity"],
    )


def _build_cache(header: dict, arrays: dict[str, np.ndarray]) -> MetricCache:
    polygons = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON,
        arrays["map_coords"],
        (arrays["map_ring_offsets"], arrays["map_polygon_offsets"]),
    )
    drivable_map = DrivableMap(header["map_tokens"], [MapLayer(v) for v in header["map_layers"]], list(polygons))
    past_times, tokens_v2 = header["past_ego_time_us"], header["object_tokens_v2"]
    past = None if past_times is None else [_ego(row, t) for row, t in zip(arrays["past_ego"], past_times, strict=True)]
    return MetricCache(
        token=header["token"],
        ego=_ego(arrays["ego"], header["ego_time_us"]),
        drivable_map=drivable_map,
        route_lane_ids=tuple(header["route_lane_ids"]),
        centerline=Centerline(arrays["centerline"]),
        observation=_get_observation(arrays, "object", header["object_tokens"]),
        red_lights=[list(step) for step in header["red_lights"]],
        references={version: arrays[f"reference_{version}"] for version in header["reference_versions"]},
        past_ego_states=past,
        human_trajectory=arrays["human_trajectory"] if header["has_human_trajectory"] else None,
        observation_v2=None if tokens_v2 is None else _get_observation(arrays, "object_v2", tokens_v2),
        scene_type=SceneType(header["scene_type"]),
        log_name=header["log_name"],
        metadata=header["metadata"],
        current_objects=None
        if header["current_object_tokens"] is None
        else _get_observation(arrays, "current", header["current_object_tokens"]),
        reactive_traffic=_get_reactive_traffic(arrays) if header["has_reactive_traffic"] else None,
    )


# --------------------------------------------------------------------------------------------------- files


def safe_file_stem(name: str) -> str:
    """``name`` if it is a plain file name (letters, digits, ``_.-``), else a stable hash of it.

    Hashed stems start with ``_`` and so can never collide with a plain name.
    """
    if _SAFE_NAME.fullmatch(name) and name not in (".", ".."):
        return name
    return "_" + hashlib.sha256(name.encode()).hexdigest()[:40]


def relative_cache_path(cache: MetricCache) -> Path:
    """Where a cache lives inside a store: ``<log_name or unknown_log>/<token>.mcache``."""
    return Path(safe_file_stem(cache.log_name or UNKNOWN_LOG)) / (safe_file_stem(cache.token) + CACHE_SUFFIX)


def write_metric_cache(root: str | os.PathLike, cache: MetricCache, fsync: bool = True) -> Path:
    """Write one cache file under ``root`` (atomically) and return its path. Does not touch the index."""
    path = Path(root) / relative_cache_path(cache)
    atomic_write_bytes(path, encode_metric_cache(cache), fsync=fsync)
    return path


def read_metric_cache(path: str | os.PathLike) -> MetricCache:
    """Load and verify one cache file. Raises :class:`CacheFileError` naming the file and the problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheFileError(f"{path}: metric cache file not found") from None
    except IsADirectoryError:
        raise CacheFileError(f"{path}: is a directory, expected a metric cache file") from None
    except OSError as error:
        raise CacheFileError(f"{path}: cannot read metric cache file ({error.strerror or error})") from None
    return decode_metric_cache(data, source=str(path))


def read_cache_token(path: str | os.PathLike) -> str:
    """The scene token stored in a cache file, reading only its first bytes (no hash check)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PREFIX.size + _U32.size)
            if len(head) < _PREFIX.size + _U32.size or head[: len(_MAGIC)] != _MAGIC:
                raise CacheFileError(f"{path}: not a complete navsim_eval metric cache file")
            (token_len,) = _U32.unpack_from(head, _PREFIX.size)
            token = handle.read(token_len)
    except OSError as error:
        raise CacheFileError(f"{path}: cannot read metric cache file ({error.strerror or error})") from None
    if len(token) != token_len:
        raise CacheFileError(f"{path}: truncated file (no complete token)")
    return token.decode()


# --------------------------------------------------------------------------------------------------- store


class MetricCacheStore:
    """A folder of metric cache files with a ``metadata.json`` index of paths relative to the folder.

    Opening reads the index (or, if there is none, scans the folder). ``store[token]`` loads and verifies one
    scene. ``add`` writes a file and, by default, rewrites the index; it assumes a single writer. Parallel
    builders should write files with :func:`write_metric_cache` and call :meth:`rebuild_index` once at the end.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._entries: dict[str, str] = {}
        index = self.root / INDEX_FILE
        if index.is_file():
            self._entries = _read_index(index)
        elif self.root.is_dir():
            self._entries = self._scan()

    @classmethod
    def from_entries(cls, root: str | os.PathLike, entries: dict[str, str]) -> MetricCacheStore:
        """A store view with a given token -> relative path map (used to hand an index to worker processes)."""
        store = cls.__new__(cls)
        store.root = Path(root)
        store._entries = dict(entries)
        return store

    @property
    def entries(self) -> dict[str, str]:
        """token -> path relative to the root (POSIX separators)."""
        return dict(self._entries)

    def tokens(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: object) -> bool:
        return token in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __repr__(self) -> str:
        return f"MetricCacheStore({str(self.root)!r}, {len(self)} scenes)"

    def path(self, token: str) -> Path:
        """Absolute location of a token's cache file (resolved against the current root)."""
        try:
            return self.root / self._entries[token]
        except KeyError:
            where = "" if self.root.is_dir() else " (the folder does not exist)"
            raise UnknownTokenError(
                f"{self.root}: no metric cache for token {token!r}{where}; the store has {len(self)} tokens"
            ) from None

    def __getitem__(self, token: str) -> MetricCache:
        path = self.path(token)
        cache = read_metric_cache(path)
        if cache.token != token:
            raise CacheFileError(f"{path}: holds token {cache.token!r}, the index lists it for {token!r}")
        return cache

    def get(self, token: str, default: MetricCache | None = None) -> MetricCache | None:
        return self[token] if token in self._entries else default

    def add(self, cache: MetricCache, write_index: bool = True, fsync: bool = True) -> Path:
        """Write (or replace) a scene's cache file; update the index on disk unless ``write_index`` is False."""
        relative = relative_cache_path(cache)
        path = write_metric_cache(self.root, cache, fsync=fsync)
        old = self._entries.get(cache.token)
        self._entries[cache.token] = relative.as_posix()
        if old is not None and old != relative.as_posix():
            (self.root / old).unlink(missing_ok=True)
        if write_index:
            self.write_index()
        return path

    def write_index(self) -> Path:
        """Atomically write ``metadata.json`` with the current token -> relative path map."""
        index = {
            "format": INDEX_FORMAT,
            "format_version": FORMAT_VERSION,
            "writer": f"navsim_eval {__version__}",
            "num_scenes": len(self._entries),
            "entries": dict(sorted(self._entries.items())),
        }
        path = self.root / INDEX_FILE
        atomic_write_bytes(path, (json.dumps(index, indent=1) + "\n").encode())
        return path

    def rebuild_index(self) -> Path:
        """Re-scan the folder for cache files (ignoring leftover temporary files) and rewrite the index."""
        self._entries = self._scan()
        return self.write_index()

    def _scan(self) -> dict[str, str]:
        entries = {}
        for path in sorted(self.root.rglob("*" + CACHE_SUFFIX)):
            if path.name.startswith(".") or not path.is_file():
                continue
            entries[read_cache_token(path)] = path.relative_to(self.root).as_posix()
        return entries


def _read_index(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheFileError(f"{path}: unreadable metric cache index ({error})") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("entries"), dict):
        raise CacheFileError(f"{path}: not a navsim_eval metric cache index (expected format {INDEX_FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise CacheFileError(f"{path}: {_format_version_problem(data.get('format_version'))}")
    entries = {}
    for token, relative in data["entries"].items():
        rel = Path(str(relative))
        if rel.is_absolute() or ".." in rel.parts:
            raise CacheFileError(f"{path}: entry for token {token!r} is not a path inside the cache: {relative!r}")
        entries[str(token)] = rel.as_posix()
    return entries


def build_metric_cache_store(
    root: str | os.PathLike, caches: Iterable[MetricCache], fsync: bool = True
) -> MetricCacheStore:
    """Write every cache into ``root`` (adding to an existing store) and write the index once at the end."""
    store = MetricCacheStore(root)
    store.root.mkdir(parents=True, exist_ok=True)
    for cache in caches:
        store.add(cache, write_index=False, fsync=fsync)
    store.write_index()
    return store
