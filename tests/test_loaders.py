"""Loaders of the user-supplied datasets (QMUL, Sketchy, QuickDraw) and the restricted unpickler.

Every fixture is written in the published format by code independent of the loaders: ``pickle.dump`` of a
dict of float64 arrays, SVG text, ``json.dumps`` lines, ``np.savez`` of object arrays, ``cv2.imwrite``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.datasets.qmul import QMULDataset, chairv2, shoev2
from sketch_env.datasets.quickdraw import QuickDrawDataset
from sketch_env.datasets.sketchy import ZERO_SHOT_TEST_CLASSES, SketchyDataset
from sketch_env.errors import DataFormatError, SketchEnvError, UnsafePickleError
from sketch_env.safe_pickle import safe_load_pickle

# ----------------------------------------------------------------------------- fixture writers


def _qmul_array(strokes: list[list[tuple[float, float]]]) -> np.ndarray:
    """QMUL layout: absolute (x, y, pen) float64 rows, pen = 1 on the last point of every stroke."""
    rows = []
    for stroke in strokes:
        for j, (x, y) in enumerate(stroke):
            rows.append((x, y, 1.0 if j == len(stroke) - 1 else 0.0))
    return np.array(rows, dtype=np.float64)


QMUL_SKETCHES = {
    # a photo name with underscores, and a worker-id suffix
    "/train/abc_def_1": _qmul_array([[(128, 128), (140, 130), (150, 150)], [(40, 200), (60, 210)]]),
    "/train/abc_def_A1YX741QQSMKPS": _qmul_array([[(33, 33), (223, 223)]]),
    "/train/2429245009_3": _qmul_array([[(50, 60), (70, 80), (90, 100)], [(10, 10)], [(20, 20), (30, 30)]]),
    "/test/xyz_9_1": _qmul_array([[(100, 100), (200, 100)]]),
    "/test/xyz_9_2": _qmul_array([[(100, 120), (200, 120), (210, 130)]]),
}
QMUL_PHOTOS = ("abc_def", "2429245009", "xyz_9")


def _pickle_bytes(obj: object, protocol: int | None = None) -> bytes:
    buf = io.BytesIO()
    pickle.dump(obj, buf, protocol=protocol)
    return buf.getvalue()


def write_qmul(
    root: Path, sketches: dict | None = None, variant: str = "ChairV2", photos: bool = True
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{variant}_Coordinate", "wb") as f:
        pickle.dump(QMUL_SKETCHES if sketches is None else sketches, f)
    if photos:
        (root / "photo").mkdir(exist_ok=True)
        for name in QMUL_PHOTOS:
            img = np.zeros((40, 30, 3), np.uint8)
            img[:] = (255, 0, 0)  # BGR blue
            cv2.imwrite(str(root / "photo" / f"{name}.png"), img)
    return root


SVG_NS = "http://www.w3.org/2000/svg"
# absolute and relative commands; the third path has a second move-to (a pen lift): 4 strokes in all
SVG_MAIN = f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="{SVG_NS}" width="640" height="480" version="1.1">
  <g fill="none" stroke="black">
    <path d="M 0 0 L 640 0"/>
    <path d="m 10 10 l 20 0 h 10 v 10 c 0 5 5 10 10 10 s 10 -5 10 -10 z"/>
    <path d="M100,100 C110,100 120,110 120,120 S140,140 150,140 H200 V200 Z M300 300 L310 300"/>
  </g>
</svg>
"""
SVG_PLAIN = '<svg><path d="M 320 240 l 0 10 L 330 250"/></svg>'  # no namespace, no size: 640 x 480
SVG_TWO = (
    f'<svg xmlns="{SVG_NS}" width="640" height="480"><path d="M 1 2 L 3 4"/><path d="m 5 6 l 7 8"/></svg>'
)

# class -> {sketch stem: svg text}
SKETCHY_SKETCHES = {
    "airplane": {
        "n02691156_10151-1": SVG_MAIN,
        "n02691156_10151-2": SVG_PLAIN,
        "n02691156_10151-3": SVG_TWO,  # listed in invalid.txt
        "n02691156_10151-4": "<svg><path d='M 1 1 L'/></svg",  # invalid, and malformed: must not be parsed
        "n02691156_58-1": SVG_TWO,
    },
    "bat": {"n02139199_1-1": SVG_TWO, "n02139199_1-2": SVG_PLAIN},
    "tree": {"n12523475_7-1": SVG_TWO},
}
SKETCHY_INVALID = {
    "airplane": "Ambiguous\nn02691156_10151-3\n\nError\nnot a sketch name\nn02691156_10151-4.svg\n"
}
SKETCHY_PHOTOS = {
    "airplane": ["n02691156_10151", "n02691156_58", "n02691156_99"],  # _99 has no sketch
    "bat": ["n02139199_1"],
    "tree": ["n12523475_7"],
}


def _write_jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((24, 32, 3), 200, np.uint8))


def write_sketchy(root: Path, photo_dir: str = "photo") -> Path:
    for cls, files in SKETCHY_SKETCHES.items():
        d = root / "sketches" / cls
        d.mkdir(parents=True, exist_ok=True)
        for stem, text in files.items():
            (d / f"{stem}.svg").write_text(text)
        if cls in SKETCHY_INVALID:
            (d / "invalid.txt").write_text(SKETCHY_INVALID[cls])
    for cls, ids in SKETCHY_PHOTOS.items():
        for pid in ids:
            _write_jpg(root / photo_dir / cls / f"{pid}.jpg")
    return root


NDJSON_OBJECTS = [
    {
        "word": "cat",
        "countrycode": "US",
        "recognized": True,
        "key_id": "5000000000000001",
        "drawing": [[[0, 128, 255], [0, 128, 255]], [[10, 20], [30, 40]]],
    },
    {
        "word": "cat",
        "countrycode": "GB",
        "recognized": False,
        "key_id": "5000000000000002",
        "drawing": [[[5], [6]]],
    },
    {"word": "cat", "countrycode": "", "recognized": True, "drawing": [[[1, 2, 3], [4, 5, 6]]]},
]
NDJSON_TEXT = "\n".join([json.dumps(NDJSON_OBJECTS[0]), "", *map(json.dumps, NDJSON_OBJECTS[1:])]) + "\n"


def _object_array(seqs: list[np.ndarray]) -> np.ndarray:
    arr = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):  # item by item: equal shapes must not broadcast into a 3-D array
        arr[i] = s
    return arr


def _stroke3(rows: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=np.int16)


NPZ_SPLITS = {
    "train": [
        _stroke3([(0, 0, 0), (10, 0, 0), (0, 5, 1), (-5, 0, 1)]),
        _stroke3([(3, 3, 0), (4, 4, 1)]),
        _stroke3([(1, 0, 0), (1, 0, 0), (1, 0, 1)]),
    ],
    "valid": [_stroke3([(0, 0, 0), (2, 2, 1)]), _stroke3([(5, 5, 1)])],
    "test": [_stroke3([(1, 1, 0), (1, -1, 1), (0, 3, 1)]), _stroke3([(7, 0, 1)])],
}


def _npz_bytes(splits: dict[str, list[np.ndarray]] | None = None) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: _object_array(v) for k, v in (splits or NPZ_SPLITS).items()})
    return buf.getvalue()


def write_quickdraw(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cat.ndjson").write_text(NDJSON_TEXT)
    (root / "dog.npz").write_bytes(_npz_bytes())
    return root


def _has_point(points: np.ndarray, xy: tuple[float, float], atol: float = 1e-5) -> bool:
    return bool(np.any(np.all(np.abs(points - np.asarray(xy)) <= atol, axis=1)))


# ----------------------------------------------------------------------------- safe pickle


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_Exec, _System])
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


class _Reduce:
    """Pickles as the given ``__reduce__`` tuple: crafts pickles that use only the allowed NumPy globals."""

    def __init__(self, *reduce_value) -> None:
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


@pytest.mark.parametrize(
    "payload",
    [
        # a float64 dtype flagged as holding Python objects: NumPy would read the data bytes as pointers
        _Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 63)),
        # an object array whose item list is shorter than its shape: NumPy reads past the list
        _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (173,), np.dtype("O"), False, [1, 2])),
        _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (4,), np.dtype("f8"), False, b"short")),
        # the ndarray constructor takes raw buffers, offsets and strides: pickles never call it
        _Reduce(np.ndarray, ((2,), "f8", b"0123456789abcdef")),
        _Reduce(np.dtype, ([("a", "O")], False, True)),
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


# ----------------------------------------------------------------------------- QMUL


def test_qmul_counts_pairing_and_labels(tmp_path):
    ds = make_dataset("chairv2", root=str(write_qmul(tmp_path)))
    assert isinstance(ds, QMULDataset) and ds.name == "chairv2"
    assert len(ds.sketches("train")) == 3 and len(ds.sketches("test")) == 2
    assert [p.instance for p in ds.photos("train")] == ["2429245009", "abc_def"]
    assert [p.instance for p in ds.photos("test")] == ["xyz_9"]
    for split in ("train", "test"):
        photos = ds.photos(split)
        for rec, i in zip(ds.sketches(split), ds.photo_index(split)):
            assert photos[i].instance == rec.instance
            assert rec.category == "chair" and rec.split == split
    by_style = {r.style: r for r in ds.sketches("train")}
    assert by_style["A1YX741QQSMKPS"].instance == "abc_def"
    assert {r.style for r in ds.sketches("test")} == {"1", "2"}


def test_qmul_strokes_and_coordinates(tmp_path):
    ds = chairv2(write_qmul(tmp_path))
    rec = next(r for r in ds.sketches("train") if r.style == "1")
    assert rec.sketch.num_strokes == 2 and rec.sketch.num_points == 5
    np.testing.assert_allclose(rec.sketch.points[0], [0.5, 0.5])  # (128, 128) in the 256 x 256 frame
    np.testing.assert_allclose(rec.sketch.points[-1], [60 / 256, 210 / 256], atol=1e-6)
    strokes = {r.style: r.sketch.num_strokes for r in ds.sketches("train")}
    assert strokes == {"1": 2, "A1YX741QQSMKPS": 1, "3": 3}


def test_qmul_photos(tmp_path):
    root = write_qmul(tmp_path)
    ds = chairv2(root)
    img = ds.load_photo(ds.photos("test")[0], 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert tuple(img[8, 8]) == (0, 0, 255)  # written BGR blue, read as RGB
    assert ds.load_photos(ds.photos("train"), 8).shape == (2, 8, 8, 3)
    (root / "photo" / "xyz_9.png").unlink()
    with pytest.raises(DataFormatError, match="xyz_9.png"):
        ds.load_photo(ds.photos("test")[0], 16)


def test_qmul_variants(tmp_path):
    root = write_qmul(tmp_path, variant="ShoeV2")
    for ds in (shoev2(root), QMULDataset(root, variant="shoev2"), make_dataset("shoev2", root=str(root))):
        assert {r.category for r in ds.sketches("train")} == {"shoe"}
    with pytest.raises(ValueError, match="variant"):
        QMULDataset(root, variant="SketchyV2")
    with pytest.raises(ValueError, match="split schemes"):
        QMULDataset(root, variant="ShoeV2", scheme="category")


@pytest.mark.parametrize(
    ("sketches", "match", "item"),
    [
        ({"/train/a_1": np.ones((2, 3)), "/val/a_2": np.ones((2, 3))}, "key", "/val/a_2"),
        ({"/train/nounderscore": QMUL_SKETCHES["/test/xyz_9_1"]}, "key", "/train/nounderscore"),
        ({"train/a_1": QMUL_SKETCHES["/test/xyz_9_1"]}, "key", "train/a_1"),
        ({("a", 1): QMUL_SKETCHES["/test/xyz_9_1"]}, "key", "('a', 1)"),
        ({"/train/a_1": np.zeros((4, 2))}, "shape", "/train/a_1"),
        ({"/train/a_1": np.zeros((0, 3))}, "empty", "/train/a_1"),
        ({"/train/a_1": np.array([[1.0, np.nan, 0.0], [2.0, 2.0, 1.0]])}, "non-finite", "/train/a_1"),
        ({"/train/a_1": [[1.0, 2.0, 1.0]]}, "array", "/train/a_1"),
        ({"/train/a_1": np.array([["a", "b", "c"]])}, "numeric", "/train/a_1"),
    ],
)
def test_qmul_bad_entries(tmp_path, sketches, match, item):
    root = write_qmul(tmp_path, sketches, photos=False)
    with pytest.raises(DataFormatError, match=match) as info:
        chairv2(root).sketches("train")
    assert info.value.item == item
    assert info.value.path == str(root / "ChairV2_Coordinate")


def test_qmul_bad_files(tmp_path):
    with pytest.raises(DataFormatError, match="root"):
        chairv2(tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match="ChairV2_Coordinate"):
        chairv2(tmp_path)
    root = write_qmul(tmp_path / "list", [QMUL_SKETCHES["/test/xyz_9_1"]], photos=False)
    with pytest.raises(DataFormatError, match="expected a dict"):
        chairv2(root).sketches("train")


# ----------------------------------------------------------------------------- Sketchy


def test_sketchy_category_split(tmp_path):
    ds = make_dataset("sketchy", root=str(write_sketchy(tmp_path)))
    assert ds.scheme == "category"
    train, test = ds.sketches("train"), ds.sketches("test")
    assert sorted(r.source.split("/")[-1] for r in train) == [
        "n02691156_10151-1.svg",
        "n02691156_10151-2.svg",
        "n02691156_58-1.svg",
    ]  # -3 and -4 are in invalid.txt
    assert {r.category for r in train} == {"airplane"}
    assert {r.category for r in test} == {"bat", "tree"} and len(test) == 3
    assert len(ds.photos("train")) == 3 and len(ds.photos("test")) == 2
    for split in ("train", "test"):
        photos = ds.photos(split)
        for rec, i in zip(ds.sketches(split), ds.photo_index(split)):
            assert photos[i].instance == rec.instance and photos[i].category == rec.category
    assert all(r.style == "" for r in train + test)


def test_sketchy_instance_split(tmp_path):
    ds = SketchyDataset(write_sketchy(tmp_path), scheme="instance")
    for split in ("train", "test"):
        for rec in ds.sketches(split):
            photo_id = rec.instance.split("/")[1]
            assert (stable_fraction(photo_id, "sketchy") < 0.1) == (split == "test")
        ds.photo_index(split)
    assert len(ds.sketches("train")) + len(ds.sketches("test")) == 6
    assert len(ds.photos("train")) + len(ds.photos("test")) == 5


def test_sketchy_strokes_and_coordinates(tmp_path):
    ds = SketchyDataset(write_sketchy(tmp_path))
    by_name = {r.source.split("/")[-1]: r.sketch for r in ds.sketches("train")}
    sk = by_name["n02691156_10151-1.svg"]
    assert sk.num_strokes == 4

    def norm(x: float, y: float) -> tuple[float, float]:  # 640 x 480 kept in aspect: y offset (640 - 480) / 2
        return (x / 640, (y + 80) / 640)

    s0, s1, s2, s3 = sk.to_strokes()
    np.testing.assert_allclose(s0[0], norm(0, 0), atol=1e-6)
    np.testing.assert_allclose(s0[-1], norm(640, 0), atol=1e-6)
    assert len(s0) == 41  # a 640 px line sampled every 16 px
    assert np.all(np.linalg.norm(np.diff(s1, axis=0), axis=1) <= 16 + 1e-3)
    np.testing.assert_allclose(s1[0], norm(10, 10), atol=1e-6)
    for x, y in [(30, 10), (40, 10), (40, 20), (50, 30), (60, 20)]:
        assert _has_point(s1, norm(x, y)), (x, y)
    np.testing.assert_allclose(s1[-1], norm(10, 10), atol=1e-6)  # z closes the path
    np.testing.assert_allclose(s2[0], norm(100, 100), atol=1e-6)
    for x, y in [(120, 120), (150, 140), (200, 140), (200, 200)]:
        assert _has_point(s2, norm(x, y)), (x, y)
    np.testing.assert_allclose(s2[-1], norm(100, 100), atol=1e-6)
    np.testing.assert_allclose(s3[[0, -1]], [norm(300, 300), norm(310, 300)], atol=1e-6)
    plain = by_name["n02691156_10151-2.svg"]  # no namespace, default canvas
    np.testing.assert_allclose(plain.points[0], [0.5, 0.5], atol=1e-6)
    assert plain.num_strokes == 1


def test_sketchy_canvas_and_step(tmp_path):
    root = tmp_path / "s"
    (root / "sketches" / "cat").mkdir(parents=True)
    (root / "sketches" / "cat" / "n1_1-1.svg").write_text(
        f'<svg xmlns="{SVG_NS}" width="256px" height="256"><path d="M 128 128 L 256 128"/></svg>'
    )
    _write_jpg(root / "photo" / "cat" / "n1_1.jpg")
    sk = SketchyDataset(root, curve_step=64.0).sketches("train")[0].sketch
    np.testing.assert_allclose(sk.points, [[0.5, 0.5], [0.75, 0.5], [1.0, 0.5]], atol=1e-6)


def test_sketchy_rendered_photo_layout(tmp_path):
    ds = SketchyDataset(write_sketchy(tmp_path, photo_dir="rendered_256x256/256x256/photo/tx_000000000000"))
    assert len(ds.photos("train")) == 3
    ds.photo_index("test")
    assert ds.load_photo(ds.photos("test")[0], 20).shape == (20, 20, 3)


def test_sketchy_zero_shot_classes(tmp_path):
    assert len(ZERO_SHOT_TEST_CLASSES) == 21
    train_classes = ["airplane", "cat", "car_(sedan)", "zebra"]
    for cls in [*ZERO_SHOT_TEST_CLASSES, *train_classes]:
        d = tmp_path / "sketches" / cls
        d.mkdir(parents=True)
        (d / "n0_1-1.svg").write_text(SVG_TWO)
        _write_jpg(tmp_path / "photo" / cls / "n0_1.jpg")
    ds = SketchyDataset(tmp_path)
    assert {r.category for r in ds.sketches("test")} == ZERO_SHOT_TEST_CLASSES
    assert sorted(r.category for r in ds.sketches("train")) == sorted(train_classes)
    assert len(ds.photos("test")) == 21
    assert len(set(ds.photo_index("test"))) == 21  # same photo id in every class, still paired per class


@pytest.mark.parametrize(
    ("text", "match", "item"),
    [
        ("<svg><path d='M 0 0 L 1 1'/>", "not a readable SVG", None),
        ("<svg><path d='M 0 0 L 1 x'/></svg>", "bad path data", "path 0"),
        ("<svg><path d='M 0 0 L 1 1'/><path d='L 5 5'/></svg>", "bad path data", "path 1"),
        ("<svg><path d='M 0 0 L 1e999 1'/></svg>", "outside", "path 0"),
        ("<svg><path d='M 0 0 L 1e12 1'/></svg>", "outside", "path 0"),
        ("<svg width='wide'><path d='M 0 0 L 1 1'/></svg>", "width", None),
        ("<svg><rect/></svg>", "empty sketch", None),
    ],
)
def test_sketchy_bad_svg(tmp_path, text, match, item):
    path = tmp_path / "sketches" / "cat" / "n1_1-1.svg"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(DataFormatError, match=match) as info:
        SketchyDataset(tmp_path).sketches("train")
    assert info.value.path == str(path) and info.value.item == item


def test_sketchy_bad_layout(tmp_path):
    with pytest.raises(DataFormatError, match="sketches"):
        SketchyDataset(tmp_path)
    path = tmp_path / "sketches" / "cat" / "nodash.svg"
    path.parent.mkdir(parents=True)
    path.write_text(SVG_TWO)
    with pytest.raises(DataFormatError, match="<photo_id>-<k>") as info:
        SketchyDataset(tmp_path).sketches("train")
    assert info.value.path == str(path)
    path.rename(path.with_name("n1_1-1.svg"))
    with pytest.raises(DataFormatError, match="photo"):
        SketchyDataset(tmp_path).photos("train")


# ----------------------------------------------------------------------------- QuickDraw


def test_quickdraw_ndjson_and_npz(tmp_path):
    ds = make_dataset("quickdraw", root=str(write_quickdraw(tmp_path)))
    records = ds.sketches("train") + ds.sketches("test")
    cats = [r for r in records if r.category == "cat"]
    dogs = [r for r in records if r.category == "dog"]
    assert len(cats) == 3 and len(dogs) == 7
    assert sum(r.split == "test" for r in dogs) == 2
    by_instance = {r.instance: r for r in cats}
    assert set(by_instance) == {"5000000000000001", "5000000000000002", "cat.ndjson:4"}
    for inst, rec in by_instance.items():
        assert rec.split == ("test" if stable_fraction(inst, "quickdraw") < 0.1 else "train")
    first = by_instance["5000000000000001"].sketch
    assert first.num_strokes == 2 and first.num_points == 5
    np.testing.assert_allclose(first.points[:3], [[0, 0], [0.5, 0.5], [255 / 256, 255 / 256]], atol=1e-6)
    assert [by_instance[i].style for i in sorted(by_instance)] == ["US", "GB", ""]
    assert ds.has_photos is False and ds.photos("train") == []
    with pytest.raises(ValueError, match="no photos"):
        ds.photo_index("train")
    with pytest.raises(ValueError, match="no photos"):
        ds.load_photo(None, 32)


def test_quickdraw_npz_stroke3(tmp_path):
    (tmp_path / "dog.npz").write_bytes(_npz_bytes())
    ds = QuickDrawDataset(tmp_path)
    first = ds.sketches("train")[0]
    assert first.instance == "dog/train[0]" and first.category == "dog" and first.style == ""
    # absolute (0,0) (10,0) (10,5) | (5,5): a 10 x 5 box fitted and centred in the unit square
    np.testing.assert_allclose(first.sketch.points, [[0, 0.25], [1, 0.25], [1, 0.75], [0.5, 0.75]], atol=1e-6)
    assert first.sketch.num_strokes == 2
    trusted = np.load(tmp_path / "dog.npz", encoding="latin1", allow_pickle=True)
    assert len(ds.sketches("train")) == len(trusted["train"]) + len(trusted["valid"])
    assert len(ds.sketches("test")) == len(trusted["test"])


def test_quickdraw_numeric_npz_and_max_per_file(tmp_path):
    equal = {"train": [_stroke3([(1, 2, 0), (3, 4, 1)])] * 3, "test": [_stroke3([(1, 0, 0), (0, 1, 1)])] * 2}
    buf = io.BytesIO()
    np.savez(buf, **{k: np.stack(v) for k, v in equal.items()})  # a plain int16 (S, N, 3) array
    (tmp_path / "a.npz").write_bytes(buf.getvalue())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cat.ndjson").write_text(NDJSON_TEXT)
    ds = QuickDrawDataset(tmp_path)
    assert len(ds.sketches("train")) + len(ds.sketches("test")) == 8
    ds = QuickDrawDataset(tmp_path, max_per_file=1)
    assert len(ds.sketches("train")) + len(ds.sketches("test")) == 3
    one = QuickDrawDataset(tmp_path / "sub" / "cat.ndjson")
    assert len(one.sketches("train")) + len(one.sketches("test")) == 3


def test_quickdraw_npz_with_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    buf = io.BytesIO()
    np.savez(buf, train=_object_array([_stroke3([(1, 1, 1)]), _Exec(marker)]))
    (tmp_path / "evil.npz").write_bytes(buf.getvalue())
    with pytest.raises(UnsafePickleError, match="builtins.exec"):
        QuickDrawDataset(tmp_path).sketches("train")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"word": "cat", "drawing": [[[1, 2], [3, 4]]', "Expecting"),
        ('{"word": "cat", "drawing": [[1, 2, 3]]}', "stroke 0"),
        ('{"word": "cat", "drawing": [[[1, 2], [3]]]}', "stroke 0"),
        ('{"word": "cat", "drawing": [[["a"], [3]]]}', "stroke 0"),
        ('{"word": "cat", "drawing": []}', "empty"),
        ('{"word": "cat"}', "drawing"),
        ('{"word": "cat", "drawing": [[[NaN], [1]]]}', "non-finite"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_quickdraw_bad_lines(tmp_path, line, match):
    path = tmp_path / "cat.ndjson"
    path.write_text(json.dumps(NDJSON_OBJECTS[0]) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=match) as info:
        QuickDrawDataset(tmp_path).sketches("train")
    assert info.value.path == str(path) and info.value.item == "line 2"


def test_quickdraw_bad_files(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        QuickDrawDataset(tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match="no"):
        QuickDrawDataset(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, other=np.zeros(3))
    (tmp_path / "x.npz").write_bytes(buf.getvalue())
    with pytest.raises(DataFormatError, match="'train'"):
        QuickDrawDataset(tmp_path).sketches("train")


# ----------------------------------------------------------------------------- robustness (hypothesis)

VALID_FILES = {
    "pickle": _pickle_bytes(QMUL_SKETCHES),
    "svg": SVG_MAIN.encode(),
    "ndjson": NDJSON_TEXT.encode(),
    "npz": _npz_bytes(),
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
            _write_jpg(root / "photo" / "cat" / "n1_1.jpg")
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
