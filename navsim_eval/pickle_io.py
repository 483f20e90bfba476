"""Pickles the official devkit reads, written under NumPy 1.x or 2.x alike, and read with an explicit allow-list.

Writing: NumPy 2 pickles arrays and scalars through ``numpy._core.*``, which the NumPy 1.x of navsim's environment
cannot import (``No module named 'numpy._core.numeric'``). :class:`PortablePickler` writes those references under
their NumPy 1.x paths (``numpy.core.*``), which NumPy 2 still resolves, and can write our stand-in classes under
the official class paths (``names``), so a file unpickles into navsim / nuPlan objects without either installed
here. Every pickle the project writes goes through :func:`dumps_portable` / :func:`write_pickle`.

Reading: :class:`RestrictedUnpickler` resolves only the globals of an explicit allow-list; anything else is
refused naming the class. Foreign classes (navsim / nuPlan) are allowed as :class:`ForeignObject` stand-ins that
only record their constructor arguments and state, so a hostile pickle cannot run code.
"""

from __future__ import annotations

import collections
import copyreg
import importlib
import io
import os
import pickle
import pickletools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from navsim_eval.atomic import atomic_write_bytes
from navsim_eval.errors import NavsimEvalError

PROTOCOL = 4  # readable by every Python the official stack runs on (>= 3.8)

# NumPy 2 reconstruction globals -> the module NumPy 1.x has them in (NumPy 2 keeps ``numpy.core`` as an alias).
# Top-level packages the official devkit's environment has: a written global outside them could not be loaded there.
PORTABLE_PACKAGES = frozenset(
    {"builtins", "copyreg", "_codecs", "collections", "pathlib", "numpy", "shapely", "navsim", "nuplan"}
)
PORTABLE_NUMPY_MODULES = {
    ("numpy._core.multiarray", "_reconstruct"): "numpy.core.multiarray",
    ("numpy._core.multiarray", "scalar"): "numpy.core.multiarray",
    ("numpy._core.numeric", "_frombuffer"): "numpy.core.numeric",
}


class PortablePickleError(NavsimEvalError):
    """An object cannot be pickled so that NumPy 1.x and 2.x both load it."""


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle references a class or function outside the allow-list."""


# ------------------------------------------------------------------------------------------------ writing


class PortablePickler(pickle._Pickler):
    """A pickler whose global references load under NumPy 1.x and 2.x (see the module docstring).

    ``names`` maps our stand-in classes to the official (module, qualified name) they are written as. The pure-
    Python pickler is used because only it lets a global be written under another module path (about 6x slower
    than the C pickler: a 60-frame log takes a quarter of a second).
    """

    def __init__(self, file, protocol: int = PROTOCOL, names: Mapping[type, tuple[str, str]] | None = None):
        super().__init__(file, protocol=protocol)
        self._names = dict(names or {})

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module, qualname = self._global_name(obj, name)
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    def _global_name(self, obj: Any, name: str | None) -> tuple[str, str]:
        try:
            if obj in self._names:
                return self._names[obj]
        except TypeError:  # unhashable: never a stand-in
            pass
        if isinstance(obj, type) and issubclass(obj, ForeignObject) and obj.module:
            return obj.module, obj.name
        qualname = name if name is not None else getattr(obj, "__qualname__", None)
        module = getattr(obj, "__module__", None)
        if module is None or qualname is None:
            raise PortablePickleError(f"cannot pickle {obj!r} by reference (no module or name)")
        if module.startswith("numpy._core"):
            try:
                module = PORTABLE_NUMPY_MODULES[module, qualname]
            except KeyError:
                raise PortablePickleError(
                    f"cannot write {module}.{qualname} so that NumPy 1.x loads it (no numpy.core counterpart known)"
                ) from None
        if module.split(".", 1)[0] not in PORTABLE_PACKAGES:
            raise PortablePickleError(
                f"refusing to pickle {module}.{qualname}: the official devkit cannot import it (write it under an "
                "official class path with names=...)"
            )
        return module, qualname


def dumps_portable(obj: Any, names: Mapping[type, tuple[str, str]] | None = None) -> bytes:
    """``obj`` pickled with :class:`PortablePickler` (protocol 4)."""
    buffer = io.BytesIO()
    PortablePickler(buffer, names=names).dump(obj)
    return buffer.getvalue()


def write_pickle(
    path: str | os.PathLike, obj: Any, names: Mapping[type, tuple[str, str]] | None = None, fsync: bool = True
) -> Path:
    """Write ``obj`` as a portable pickle, atomically; returns the path."""
    return atomic_write_bytes(Path(path), dumps_portable(obj, names), fsync=fsync)


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """Every (module, name) a pickle references, in order, read from its opcodes without loading it.

    Follows the string pushes and the memo, so ``STACK_GLOBAL`` operands fetched from the memo are resolved.
    """
    memo: dict[int, Any] = {}
    stack: list[Any] = []  # only strings matter; anything else is a placeholder
    found: list[tuple[str, str]] = []
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            stack.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        elif name == "STACK_GLOBAL":
            module, qualname = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
            found.append((str(module), str(qualname)))
            stack[-2:] = [None]
        elif name in ("GLOBAL", "INST"):
            module, qualname = arg.split(" ", 1)
            found.append((module, qualname))
            stack.append(None)
        else:
            stack.append(None)
    return found


# ------------------------------------------------------------------------------------------------ reading


class ForeignObject:
    """An instance of an allow-listed foreign class (navsim / nuPlan), kept as data: the positional arguments it
    was created with (``args``) and the state pickle gave it (``state``, usually the instance ``__dict__``)."""

    module: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def __new__(cls, *args: Any) -> ForeignObject:
        instance = object.__new__(cls)
        instance.args = args
        instance.state = None
        return instance

    def __init__(self, *args: Any) -> None:  # a REDUCE call ``cls(*args)``: __new__ kept the arguments
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: int) -> tuple:
        """Written back as the official pickler writes the class: an enum as ``cls(value)``, anything else as
        ``cls.__new__(cls)`` plus its state (NEWOBJ, BUILD)."""
        if self.args and self.state is None:
            return type(self), tuple(self.args)
        return copyreg.__newobj__, (type(self),), self.state

    @classmethod
    def make(cls, state: Any = None, args: tuple = ()) -> ForeignObject:
        """An instance to write: ``state`` a dict (instance ``__dict__``) or ``(None, slots dict)``; ``args`` the
        constructor arguments of an enum member."""
        instance = cls.__new__(cls, *args)
        instance.state = state
        return instance

    @property
    def fields(self) -> dict[str, Any]:
        """The instance dict of the state (a ``(dict, slots)`` pair is merged), empty when there is none."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            return merged
        return dict(state) if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name} args={self.args!r} fields={sorted(self.fields)}>"


def foreign_classes(paths: Iterable[str]) -> dict[tuple[str, str], type[ForeignObject]]:
    """A :class:`ForeignObject` subclass per ``"module.Name"`` path, keyed by (module, name) for an allow-list."""
    classes = {}
    for path in paths:
        module, name = path.rsplit(".", 1)
        classes[module, name] = type(name, (ForeignObject,), {"module": module, "name": name, "__module__": module})
    return classes


def _numpy_global(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` (numpy 2) or ``numpy.core.<submodule>.<name>`` (numpy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")  # pragma: no cover - every numpy >= 1.16 has them


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _base_globals() -> dict[tuple[str, str], Any]:
    """Plain builtins and numpy array / scalar reconstruction, under the module paths of every numpy."""
    allowed: dict[tuple[str, str], Any] = {}
    for builtin in (set, frozenset, complex, bytes, bytearray, str, int, float, bool, tuple, list, dict):
        # ``__builtin__`` is the Python 2 name that protocol <= 2 pickles (numpy's among them) use.
        allowed["builtins", builtin.__name__] = builtin
        allowed["__builtin__", builtin.__name__] = builtin
    allowed["_codecs", "encode"] = _latin1_encode  # protocol <= 2 stores bytes as _codecs.encode(text, "latin1")
    allowed["collections", "OrderedDict"] = collections.OrderedDict
    allowed["numpy", "ndarray"] = np.ndarray
    allowed["numpy", "dtype"] = np.dtype
    for package in ("numpy.core", "numpy._core"):
        allowed[f"{package}.multiarray", "_reconstruct"] = _numpy_global("multiarray", "_reconstruct")
        allowed[f"{package}.multiarray", "scalar"] = _numpy_global("multiarray", "scalar")
        allowed[f"{package}.numeric", "_frombuffer"] = _numpy_global("numeric", "_frombuffer")
    return allowed


BASE_GLOBALS = _base_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``allowed`` (module, name) globals; anything else raises :class:`ForbiddenGlobalError`
    naming it and saying what the file may hold (``what``)."""

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], what: str):
        super().__init__(file)
        self._allowed, self._what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise ForbiddenGlobalError(f"refusing to load global {module}.{name} ({self._what})") from None


# What a truncated or corrupt pickle raises besides ForbiddenGlobalError.
CORRUPT_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    LookupError,
    RecursionError,
)


def restricted_loads(
    data: bytes,
    allowed: Mapping[tuple[str, str], Any] = BASE_GLOBALS,
    what: str = "only builtins and numpy arrays are allowed",
) -> Any:
    """Unpickle ``data`` resolving only ``allowed`` globals; raises :class:`ForbiddenGlobalError` otherwise."""
    return RestrictedUnpickler(io.BytesIO(data), allowed, what).load()
