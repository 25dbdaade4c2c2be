"""Loading pickles of NumPy arrays without letting the file run code.

The QMUL coordinate files (and the object arrays inside sketch-rnn ``.npz`` files) are pickles. A pickle
can name any importable callable and call it, so ``pickle.load`` on a downloaded file runs whatever the
file asks for. :func:`safe_load_pickle` uses an unpickler whose ``find_class`` only hands out the NumPy
globals that rebuild arrays and scalars; plain containers (dict, list, tuple, str, bytes, numbers) need no
globals at all. Any other global is refused before it can be called.

Arrays pickled by NumPy 1 name ``numpy.core.multiarray``, those pickled by NumPy 2 ``numpy._core``; both
spellings are accepted under either NumPy, and resolved without importing the deprecated ``numpy.core``
alias on NumPy 2 (which would warn).

Refusing globals is not enough on its own: NumPy's ``__setstate__`` methods trust their input. Fuzzing
found two segfaults reachable with only the allowed globals: a dtype state that sets the "holds Python
objects" flag on float64 (NumPy then dereferences the data bytes as pointers) and an object-array state
whose list is shorter than its shape. So every state is checked before NumPy sees it: a dtype's must be
its own state up to the byte order, an array's must hold exactly as many items or bytes as its shape
needs. The C unpickler has no hook for that (the BUILD opcode), so the pure-Python one is used: about 4x
slower than ``pickle.load``, some 0.1 s for all of Shoe-V2.

Nothing a pickle says can make the loader allocate much more than the file holds, nor nest without bound:
an array (or a NumPy scalar) needs its bytes in the file, a dtype's item is at most :data:`MAX_ITEMSIZE`
bytes, and containers nest at most :data:`MAX_DEPTH` deep (hashing a tuple nested 200,000 deep, as a dict
key does, overflows the C stack).
"""

from __future__ import annotations

import io
import math
import pickle
import reprlib
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.errors import DataFormatError, UnsafePickleError
from sketch_env.limits import MAX_FILE_BYTES, read_bytes_bounded

__all__ = ["safe_load_pickle", "safe_loads", "MAX_DEPTH", "MAX_ITEMSIZE"]

#: dtype kinds an array of sketch data can have (no structured, void or datetime dtypes)
_DTYPE_KINDS = frozenset("biufcOSU")
#: how deep containers (tuples, lists, dicts, sets) may nest
MAX_DEPTH = 64
#: the largest item a dtype may describe, in bytes (a string of 64 KiB; numbers are 16 bytes at most)
MAX_ITEMSIZE = 1 << 16
_CONTAINERS = (tuple, list, dict, set, frozenset)


class _NDArrayToken:
    """What the global ``numpy.ndarray`` resolves to: pickles only pass it on to ``_reconstruct``, so the
    class itself (and its constructor, which takes raw buffers, offsets and strides) is never handed out."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NDArrayToken()


@lru_cache(maxsize=1)
def _numpy_core() -> tuple[Any, Any]:
    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray, numeric
    else:  # pragma: no cover - exercised only under NumPy 1
        from numpy.core import multiarray, numeric
    return multiarray, numeric


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    # NumPy pickles an array as an empty one (shape (0,)) whose BUILD state then brings shape and data; a
    # larger shape here would be allocated (objects: zero-filled pointers) before any state is checked
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}, not numpy.ndarray")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape) and math.prod(shape) == 0):
        raise pickle.UnpicklingError(f"_reconstruct with shape {shape!r}: arrays are rebuilt from an empty one")
    return _numpy_core()[0]._reconstruct(np.ndarray, shape, dtype)


def _scalar(dtype: object, data: object = None) -> object:
    if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of {dtype!r} needs exactly its item's bytes")
    return _numpy_core()[0].scalar(dtype, data)


def _empty_bytes(*args: object) -> bytes:
    # protocol 2 spells an empty bytes object as __builtin__.bytes(); nothing else is called through it
    if args:
        raise pickle.UnpicklingError("bytes(...) with arguments; pickles spell only the empty bytes this way")
    return b""


def _dtype(obj: object, align: bool = False, copy: bool = True) -> np.dtype:
    # always a fresh copy, so that a state set afterwards never touches NumPy's shared built-in dtypes
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"numpy.dtype of a {type(obj).__name__}; pickles give a type code")
    if len(obj) > 16:
        raise pickle.UnpicklingError(f"dtype code {obj[:20]!r}... is not a plain type code")
    dtype = np.dtype(obj, bool(align), True)
    if dtype.kind not in _DTYPE_KINDS:
        raise pickle.UnpicklingError(f"dtype {dtype} is not a plain numeric, string or object dtype")
    if dtype.itemsize > MAX_ITEMSIZE:
        raise pickle.UnpicklingError(f"dtype {dtype} has items of {dtype.itemsize} bytes (at most {MAX_ITEMSIZE})")
    return dtype


def _latin1_encode(text: object, encoding: str = "latin1") -> bytes:
    # protocols 0-2 written by Python 3 spell bytes (the array data) as _codecs.encode(str, 'latin1');
    # no other codec is needed
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not bytes")
    return text.encode("latin1")


@lru_cache(maxsize=1)
def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core()
    table: dict[tuple[str, str], Any] = {
        ("numpy", "dtype"): _dtype,
        ("numpy", "ndarray"): _NDARRAY,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{core}.multiarray", "scalar")] = _scalar
        # protocol 5 rebuilds contiguous arrays with frombuffer + reshape, which check sizes themselves
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


def _check_dtype_state(dtype: np.dtype, state: object) -> None:
    own = dtype.__reduce__()[2]
    if not (isinstance(state, tuple) and len(state) == len(own) and state[1] in ("<", ">", "|", "=")):
        raise pickle.UnpicklingError(f"malformed state for dtype {dtype}: {reprlib.repr(state)}")
    if state[:1] + state[2:] != own[:1] + own[2:]:
        raise pickle.UnpicklingError(f"state {reprlib.repr(state)} does not describe dtype {dtype}")


def _check_array_state(state: object) -> None:
    if not (isinstance(state, tuple) and len(state) == 5):
        raise pickle.UnpicklingError("array state must be (version, shape, dtype, is_fortran, data)")
    version, shape, dtype, fortran, data = state
    if not (
        version == 1
        and isinstance(shape, tuple)
        and all(type(n) is int and n >= 0 for n in shape)
        and isinstance(dtype, np.dtype)
        and type(fortran) in (bool, int)
    ):
        raise pickle.UnpicklingError(f"malformed array state header {reprlib.repr(state[:4])}")
    count = math.prod(shape)
    if dtype.hasobject:
        if not (isinstance(data, list) and len(data) == count):
            raise pickle.UnpicklingError(f"object array of shape {shape} needs a list of {count} items")
    elif not (isinstance(data, (bytes, bytearray, str)) and len(data) == count * dtype.itemsize):
        raise pickle.UnpicklingError(
            f"array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes"
        )


def _built(opcode: bytes):
    """A container built whole (tuple, list, dict, frozenset from the stack): its depth from its items."""
    load = pickle._Unpickler.dispatch[opcode[0]]

    def run(self) -> None:
        load(self)
        obj = self.stack[-1]
        items = [x for kv in obj.items() for x in kv] if isinstance(obj, dict) else obj
        self._record(obj, 1 + max((self._depth(x) for x in items), default=0))

    return run

def _grown(opcode: bytes):
    """Items added to a container (append, setitem, additems): its depth grows by theirs only, so a long
    run of additions costs linear time. (A mutable container grown after being put inside another leaves
    the outer's depth stale; only immutable ones are hashed, and those are built whole.)"""
    load = pickle._Unpickler.dispatch[opcode[0]]
    single = {pickle.APPEND[0]: 1, pickle.SETITEM[0]: 2}.get(opcode[0])

    def run(self) -> None:
        added = list(self.stack[-single:]) if single else list(self.stack)  # the items after the mark
        load(self)
        obj = self.stack[-1]
        self._record(obj, max(self._depth(obj), 1 + max((self._depth(x) for x in added), default=0)))

    return run


class _NumpyOnlyUnpickler(pickle._Unpickler):
    def __init__(self, data: bytes, path: str) -> None:
        # latin1 lets NumPy read array data pickled by Python 2 (as in the sketch-rnn files)
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._path = path
        self._size = len(data)
        self._depths: dict[int, tuple[object, int]] = {}  # id -> (container, nesting depth): kept alive

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                self._path,
                f"refusing global {module}.{name}: only NumPy arrays and plain containers are allowed "
                "(a pickle that names other globals can run code when loaded)",
            ) from None

    def _load_global(self) -> None:
        # GLOBAL names a module and a name, each ending in a newline: a name without one was cut short by the
        # end of the file, which is a truncated file, not an unsafe global
        module, name = self.readline(), self.readline()
        if not (module.endswith(b"\n") and name.endswith(b"\n")):
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(self.find_class(module[:-1].decode("utf-8"), name[:-1].decode("utf-8")))

    def _load_build(self) -> None:
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif isinstance(inst, np.ndarray):
            _check_array_state(state)
        else:
            raise pickle.UnpicklingError(f"BUILD on a {type(inst).__name__}, which pickled arrays never do")
        super().load_build()

    def _load_bytearray8(self) -> None:
        # the pure-Python unpickler allocates the announced length before reading: bound it by the file
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self._size:
            raise pickle.UnpicklingError(f"bytearray of {size} bytes in a pickle of {self._size}")
        buf = bytearray(size)
        if self.readinto(buf) != size:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(buf)

    def _depth(self, obj: object) -> int:
        if not isinstance(obj, _CONTAINERS):
            return 0
        known = self._depths.get(id(obj))
        return known[1] if known is not None and known[0] is obj else 1

    def _record(self, obj: object, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"containers nested more than {MAX_DEPTH} deep")
        self._depths[id(obj)] = (obj, depth)

    dispatch = {
        **pickle._Unpickler.dispatch,
        pickle.GLOBAL[0]: _load_global,
        pickle.BUILD[0]: _load_build,
        pickle.BYTEARRAY8[0]: _load_bytearray8,
        **{op[0]: _built(op) for op in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST,
                                        pickle.DICT, pickle.FROZENSET)},
        **{op[0]: _grown(op) for op in (pickle.APPEND, pickle.APPENDS, pickle.SETITEM, pickle.SETITEMS,
                                        pickle.ADDITEMS)},
    }


def safe_loads(data: bytes, path: str | Path) -> object:
    """Unpickle ``data`` (read from ``path``, named in errors) allowing only NumPy arrays and containers.

    Raises :class:`UnsafePickleError` for any other global, :class:`DataFormatError` for a truncated or
    malformed pickle.
    """
    try:
        return _NumpyOnlyUnpickler(data, str(path)).load()
    except DataFormatError:
        raise
    except Exception as exc:  # only the checked NumPy constructors run, so any failure means bad data
        raise DataFormatError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from exc


def safe_load_pickle(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> object:
    """Load the pickle at ``path`` (at most ``max_bytes``) allowing only NumPy arrays, NumPy scalars and plain
    containers."""
    # the whole file: a corrupt length prefix then cannot ask for huge reads
    return safe_loads(read_bytes_bounded(path, max_bytes), path)
