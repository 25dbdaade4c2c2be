"""The Sketchy loader on SVG fixtures: splits, strokes, canvas, photos, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.datasets.sketchy import ZERO_SHOT_TEST_CLASSES, SketchyDataset
from sketch_env.errors import DataFormatError
from tests.data_formats import SVG_MAIN, SVG_NS, write_jpg

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
            write_jpg(root / photo_dir / cls / f"{pid}.jpg")
    return root


def has_point(points: np.ndarray, xy: tuple[float, float], atol: float = 1e-5) -> bool:
    return bool(np.any(np.all(np.abs(points - np.asarray(xy)) <= atol, axis=1)))


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
        assert has_point(s1, norm(x, y)), (x, y)
    np.testing.assert_allclose(s1[-1], norm(10, 10), atol=1e-6)  # z closes the path
    np.testing.assert_allclose(s2[0], norm(100, 100), atol=1e-6)
    for x, y in [(120, 120), (150, 140), (200, 140), (200, 200)]:
        assert has_point(s2, norm(x, y)), (x, y)
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
    write_jpg(root / "photo" / "cat" / "n1_1.jpg")
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
        write_jpg(tmp_path / "photo" / cls / "n0_1.jpg")
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
