"""The QMUL-Shoe-V2 / Chair-V2 loader on fixtures in the published layout."""

from __future__ import annotations

import numpy as np
import pytest

from sketch_env.datasets import make_dataset
from sketch_env.datasets.qmul import QMULDataset, chairv2, shoev2
from sketch_env.errors import DataFormatError
from tests.data_formats import QMUL_SKETCHES, write_qmul


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
