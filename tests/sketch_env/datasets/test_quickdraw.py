"""The QuickDraw loader (ndjson and sketch-rnn npz) on fixtures in the published formats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.datasets.quickdraw import QuickDrawDataset
from sketch_env.errors import DataFormatError, UnsafePickleError
from tests.data_formats import (
    NDJSON_OBJECTS,
    NDJSON_TEXT,
    ExecPayload,
    npz_bytes,
    object_array,
    stroke3,
)


def write_quickdraw(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cat.ndjson").write_text(NDJSON_TEXT)
    (root / "dog.npz").write_bytes(npz_bytes())
    return root


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
    (tmp_path / "dog.npz").write_bytes(npz_bytes())
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
    equal = {"train": [stroke3([(1, 2, 0), (3, 4, 1)])] * 3, "test": [stroke3([(1, 0, 0), (0, 1, 1)])] * 2}
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
    np.savez(buf, train=object_array([stroke3([(1, 1, 1)]), ExecPayload(marker)]))
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
