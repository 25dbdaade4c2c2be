"""The restricted unpickler: code-running pickles refused, NumPy 1 and 2 arrays loaded."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from sketch_env.datasets.qmul import chairv2
from sketch_env.errors import DataFormatError, UnsafePickleError
from sketch_env.safe_pickle import safe_load_pickle
from tests.data_formats import QMUL_SKETCHES, ExecPayload, write_qmul


class SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ReducePayload:
    """Pickles as the given ``__reduce__`` tuple: crafts pickles that use only the allowed NumPy globals."""

    def __init__(self, *reduce_value) -> None:
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


@pytest.mark.parametrize("payload", [ExecPayload, SystemPayload])
def test_code_running_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    root = write_qmul(tmp_path / "qmul", {"/train/a_1": payload(marker)})
    with pytest.raises(UnsafePickleError, match="refusing global") as info:
        safe_load_pickle(root / "ChairV2_Coordinate")
    assert info.value.path == str(root / "ChairV2_Coordinate")
    with pytest.raises(UnsafePickleError):
        chairv2(root).sketches("train")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3])
def test_numpy1_module_names_load(tmp_path, protocol):
    data = {"/train/a_1": QMUL_SKETCHES["/train/abc_def_1"], "s": np.float64(2.5)}
    raw = pickle.dumps(data, protocol=protocol)
    assert b"numpy._core" in raw  # GLOBAL opcodes are text lines, so the rename keeps the pickle valid
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core", b"numpy.core"))
    assert b"numpy._core" not in path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from importing numpy.core
        loaded = safe_load_pickle(path)
    np.testing.assert_array_equal(loaded["/train/a_1"], data["/train/a_1"])
    assert loaded["s"] == 2.5


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_all_protocols_load(tmp_path, protocol):
    data = {"k": np.arange(12.0).reshape(4, 3), "i": np.int16(3), "l": [1, "x", (2.0, None)]}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = safe_load_pickle(path)
    np.testing.assert_array_equal(loaded["k"], data["k"])
    assert loaded["i"] == 3 and loaded["l"] == [1, "x", (2.0, None)]


@pytest.mark.parametrize(
    "payload",
    [
        # a float64 dtype flagged as holding Python objects: NumPy would read the data bytes as pointers
        ReducePayload(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 63)),
        # an object array whose item list is shorter than its shape: NumPy reads past the list
        ReducePayload(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (173,), np.dtype("O"), False, [1, 2])),
        ReducePayload(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (4,), np.dtype("f8"), False, b"short")),
        # the ndarray constructor takes raw buffers, offsets and strides: pickles never call it
        ReducePayload(np.ndarray, ((2,), "f8", b"0123456789abcdef")),
        ReducePayload(np.dtype, ([("a", "O")], False, True)),
    ],
)
def test_crafted_numpy_states_are_refused(tmp_path, payload):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"/train/a_1": payload}, protocol=3))
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        safe_load_pickle(path)


def test_huge_length_prefix_is_refused(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"xyz.")  # BYTEARRAY8 of 1 TiB
    with pytest.raises(DataFormatError, match="bytearray"):
        safe_load_pickle(path)


def test_malformed_pickles(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros((2, 3))})[:-5])
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        safe_load_pickle(path)
    with pytest.raises(DataFormatError, match="cannot read"):
        safe_load_pickle(tmp_path / "missing.pkl")
