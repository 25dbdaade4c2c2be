"""Every loader against truncated, corrupted and garbage files: only the package's DataFormatError."""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketch_env.datasets.qmul import chairv2
from sketch_env.datasets.quickdraw import QuickDrawDataset
from sketch_env.datasets.sketchy import SketchyDataset
from sketch_env.errors import DataFormatError, SketchEnvError
from tests.data_formats import (
    NDJSON_TEXT,
    QMUL_SKETCHES,
    SVG_MAIN,
    npz_bytes,
    write_jpg,
)


def pickle_bytes(obj: object, protocol: int | None = None) -> bytes:
    buf = io.BytesIO()
    pickle.dump(obj, buf, protocol=protocol)
    return buf.getvalue()


VALID_FILES = {
    "pickle": pickle_bytes(QMUL_SKETCHES),
    "svg": SVG_MAIN.encode(),
    "ndjson": NDJSON_TEXT.encode(),
    "npz": npz_bytes(),
}


def _load_everything(kind: str, payload: bytes) -> None:
    """Write ``payload`` as the one data file of a dataset of ``kind`` and read all of it."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if kind == "pickle":
            (root / "ChairV2_Coordinate").write_bytes(payload)
            ds = chairv2(root)
        elif kind == "svg":
            (root / "sketches" / "cat").mkdir(parents=True)
            (root / "sketches" / "cat" / "n1_1-1.svg").write_bytes(payload)
            write_jpg(root / "photo" / "cat" / "n1_1.jpg")
            ds = SketchyDataset(root)
        else:
            (root / f"cat.{kind}").write_bytes(payload)
            ds = QuickDrawDataset(root)
        for split in ("train", "test"):
            ds.sketches(split)
            ds.photos(split)
            if ds.has_photos:
                ds.photo_index(split)


def _only_sketch_env_errors(kind: str, payload: bytes) -> None:
    try:
        _load_everything(kind, payload)
    except SketchEnvError as exc:
        assert isinstance(exc, DataFormatError)


FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# a corrupted float64 beyond float32 range warns on the cast before it is reported as a SketchError
_NO_OVERFLOW_WARNING = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


@_NO_OVERFLOW_WARNING
@pytest.mark.parametrize("kind", sorted(VALID_FILES))
@FUZZ
@given(data=st.data())
def test_truncated_files_raise_only_data_format_errors(kind, data):
    blob = VALID_FILES[kind]
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    _only_sketch_env_errors(kind, blob[:cut])


@_NO_OVERFLOW_WARNING
@pytest.mark.parametrize("kind", sorted(VALID_FILES))
@FUZZ
@given(data=st.data())
def test_corrupted_files_raise_only_data_format_errors(kind, data):
    blob = bytearray(VALID_FILES[kind])
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        blob[data.draw(st.integers(0, len(blob) - 1), label="offset")] = data.draw(st.integers(0, 255))
    _only_sketch_env_errors(kind, bytes(blob))


@_NO_OVERFLOW_WARNING
@pytest.mark.parametrize("kind", sorted(VALID_FILES))
@FUZZ
@given(payload=st.binary(max_size=512))
def test_garbage_files_raise_only_data_format_errors(kind, payload):
    _only_sketch_env_errors(kind, payload)


def test_valid_fixture_files_load():
    for kind, blob in VALID_FILES.items():
        _load_everything(kind, blob)
