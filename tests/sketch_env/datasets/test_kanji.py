"""The embedded kanji dataset: its three splits, the sketches, the photos, the cache."""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sketch_env.cache import (
    ENV_VAR,
)
from sketch_env.datasets import SPLITS


# ============================================================================================== kanji
@pytest.fixture(scope="module")
def kanji(tmp_path_factory):
    """The kanji dataset under each scheme, built once into a fresh cache folder (about 15 s)."""
    try:
        importlib.metadata.distribution("kanjivg")  # a data-only distribution: nothing to import
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded dataset needs the 'kanjivg' package")
    pytest.importorskip("matplotlib_fontja", reason="kanji photos need 'matplotlib-fontja'")
    from sketch_env.datasets.kanji import KanjiDataset

    old = os.environ.get(ENV_VAR)
    root = tmp_path_factory.mktemp("kanji-cache")
    os.environ[ENV_VAR] = str(root)
    try:
        out = {scheme: KanjiDataset(scheme) for scheme in ("instance", "category", "style")}
        for ds in out.values():  # load everything while the variable points at the temporary cache
            for split in SPLITS:
                ds.sketches(split)
                ds.photos(split)
        yield out, root
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def _chars(records) -> set[str]:
    return {r.instance for r in records}


def test_kanji_instance_split(kanji):
    ds = kanji[0]["instance"]
    train_chars = _chars(ds.sketches("train")) | _chars(ds.photos("train"))
    test_chars = _chars(ds.sketches("test")) | _chars(ds.photos("test"))
    assert not train_chars & test_chars
    assert 900 <= len(ds.photos("test")) <= 1100
    assert len(ds.photos("train")) > 4 * len(ds.photos("test"))
    train_categories = {r.category for r in ds.sketches("train")}
    assert {r.category for r in ds.sketches("test")} <= train_categories
    assert {p.category for p in ds.photos("test")} <= train_categories
    # every sketch has a photo of its own character, with the same category
    for split in SPLITS:
        idx = ds.photo_index(split)
        photos = ds.photos(split)
        for i, rec in zip(idx.tolist(), ds.sketches(split)):
            assert photos[i].instance == rec.instance and photos[i].category == rec.category


def test_kanji_category_split(kanji):
    ds = kanji[0]["category"]
    test_radicals = {p.category for p in ds.photos("test")}
    train_radicals = {p.category for p in ds.photos("train")}
    assert len(test_radicals) == 15
    assert not test_radicals & train_radicals
    assert not test_radicals & {r.category for r in ds.sketches("train")}
    per_radical = Counter(p.category for p in ds.photos("test"))
    assert min(per_radical.values()) >= 20
    assert {r.category for r in ds.sketches("test")} == test_radicals
    assert not _chars(ds.photos("train")) & _chars(ds.photos("test"))
    ds.photo_index("train")
    ds.photo_index("test")


def test_kanji_style_split(kanji):
    ds = kanji[0]["style"]
    assert {r.style for r in ds.sketches("train")} == {"base"}
    test_styles = {r.style for r in ds.sketches("test")}
    assert test_styles and all(s.startswith("Kaisho") for s in test_styles)
    assert len(ds.sketches("test")) > 100
    # the test characters have their photo on the test side
    assert _chars(ds.sketches("test")) == _chars(ds.photos("test"))
    ds.photo_index("test")


def test_kanji_sketches_look_like_kanji(kanji):
    ds = kanji[0]["instance"]
    one = next(r for r in ds.sketches("train") if r.instance == "一" and r.style == "base")
    assert one.sketch.num_strokes == 1
    eternity = next(
        r for r in ds.sketches("train") + ds.sketches("test") if r.instance == "永" and r.style == "base"
    )
    assert eternity.sketch.num_strokes == 5
    pts = np.concatenate([r.sketch.points for r in ds.sketches("test")[:200]])
    assert pts.min() >= 0 and pts.max() <= 1


def test_kanji_photos(kanji):
    ds, root = kanji[0]["instance"], kanji[1]
    photos = ds.photos("test")[:5]
    imgs = ds.load_photos(photos, 32)
    assert imgs.shape == (5, 32, 32, 3) and imgs.dtype == np.uint8
    assert (imgs.min(axis=(1, 2, 3)) < 128).all() and (imgs.max(axis=(1, 2, 3)) == 255).all()
    np.testing.assert_array_equal(ds.load_photo(photos[0], 32), imgs[0])
    assert len(list(Path(root).glob("kanji-glyphs-32-*.npy"))) == 1  # glyphs cached in the temporary folder


def test_kanji_second_object_loads_from_cache(kanji):
    from sketch_env.datasets.kanji import KanjiDataset

    built, root = kanji
    files = sorted(Path(root).glob("kanji-strokes-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    assert os.environ[ENV_VAR] == str(root)  # the module fixture keeps it set until the module ends
    t0 = time.perf_counter()
    again = KanjiDataset("instance")
    records = {split: again.sketches(split) for split in SPLITS}
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"loading the cached kanji data took {elapsed:.1f} s"
    assert files[0].stat().st_mtime_ns == mtime  # not rebuilt
    first = built["instance"]
    for split in SPLITS:
        assert len(records[split]) == len(first.sketches(split))
        for x, y in zip(records[split], first.sketches(split)):
            assert x.sketch == y.sketch
            assert (x.instance, x.category, x.style, x.split) == (y.instance, y.category, y.style, y.split)
        assert again.photos(split) == first.photos(split)
