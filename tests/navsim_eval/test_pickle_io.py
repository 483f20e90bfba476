"""Portable pickles (no numpy._core paths, official class names) and the allow-list unpickler."""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

from navsim_eval.pickle_io import (
    BASE_GLOBALS,
    ForbiddenGlobalError,
    ForeignObject,
    PortablePickleError,
    RestrictedUnpickler,
    dumps_portable,
    foreign_classes,
    pickle_globals,
    restricted_loads,
    write_pickle,
)

VALUES = {
    "float64": np.arange(6, dtype=np.float64).reshape(2, 3) / 7.0,
    "float32": np.array([1.5, -2.25], dtype=np.float32),
    "empty": np.zeros((0, 7)),
    "strings": np.array(["vehicle", "pedestrian"]),
    "bools": np.array([True, False]),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "scalar": np.float64(0.1),
    "int_scalar": np.int64(-3),
    "dtype": np.dtype("<f4"),
    "plain": [1, 2.5, "x", (None, True), {"k": b"bytes"}],
}


class _NumpyOneUnpickler(pickle.Unpickler):
    """What NumPy 1.x sees: there is no numpy._core package to import."""

    def find_class(self, module: str, name: str):
        if module.startswith("numpy._core"):
            raise ModuleNotFoundError(f"No module named {module!r}")
        return super().find_class(module, name)


def _assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    else:
        assert a == b


def test_native_numpy2_pickles_name_numpy_core_which_numpy1_lacks():
    data = pickle.dumps(VALUES["float64"], protocol=4)
    if not np.__version__.startswith("1."):
        assert any(module.startswith("numpy._core") for module, _ in pickle_globals(data))
        with pytest.raises(ModuleNotFoundError, match=r"numpy\._core"):
            _NumpyOneUnpickler(io.BytesIO(data)).load()


def test_portable_pickles_reference_only_numpy1_paths_and_round_trip_exactly():
    data = dumps_portable(VALUES)
    names = pickle_globals(data)
    assert not [n for n in names if n[0].startswith("numpy._core")], names
    assert ("numpy.core.multiarray", "_reconstruct") in names and ("numpy.core.multiarray", "scalar") in names
    for loaded in (pickle.loads(data), _NumpyOneUnpickler(io.BytesIO(data)).load(), restricted_loads(data)):
        _assert_same(VALUES, loaded)
    assert restricted_loads(data)["float64"].flags.writeable


def test_opcode_walk_resolves_memoised_module_names():
    # the second array's module and name come from the memo (BINGET), not from new strings
    names = pickle_globals(dumps_portable([np.zeros(2), np.ones(3), np.float64(1.0), np.float64(2.0)]))
    assert names.count(("numpy.core.multiarray", "_reconstruct")) == 1  # memoised: referenced once
    assert names.count(("numpy.core.multiarray", "scalar")) == 1


@dataclass
class _Sampling:
    num_poses: int
    interval_length: float


def test_stand_in_classes_are_written_under_the_official_names_and_read_back_as_data(tmp_path):
    official = ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling")
    path = write_pickle(tmp_path / "x.pkl", {"s": _Sampling(8, 0.5)}, names={_Sampling: official}, fsync=False)
    data = path.read_bytes()
    assert official in pickle_globals(data)
    assert not [n for n in pickle_globals(data) if n[0].startswith(("navsim_eval", "tests"))]
    allowed = {**BASE_GLOBALS, **foreign_classes([".".join(official), "copyreg.__newobj__"])}
    allowed["copyreg", "__newobj__"] = (
        BASE_GLOBALS.get(("copyreg", "__newobj__"), None) or __import__("copyreg").__newobj__
    )
    loaded = RestrictedUnpickler(io.BytesIO(data), allowed, "test").load()["s"]
    assert isinstance(loaded, ForeignObject) and (loaded.module, loaded.name) == official
    assert loaded.fields == {"num_poses": 8, "interval_length": 0.5}


def test_objects_the_official_devkit_cannot_import_are_refused():
    with pytest.raises(PortablePickleError, match=r"refusing to pickle .*_Sampling: the official devkit cannot"):
        dumps_portable(_Sampling(1, 0.1))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_hostile_pickle_is_refused_naming_the_global():
    with pytest.raises(
        ForbiddenGlobalError, match=r"refusing to load global (posix|nt|os)\.system \(what it may hold\)"
    ):
        restricted_loads(pickle.dumps(_Exploit()), BASE_GLOBALS, "what it may hold")
