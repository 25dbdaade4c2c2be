"""The synthetic dataset: counts, determinism, pairing, photos, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sketch_env.datasets import SPLITS
from sketch_env.datasets.synthetic import CATEGORIES, SyntheticDataset


def test_synthetic_counts_and_labels():
    ds = SyntheticDataset(n_instances=32, sketches_per_instance=3)
    sk = ds.sketches("train") + ds.sketches("test")
    ph = ds.photos("train") + ds.photos("test")
    assert len(sk) == 32 * 3 and len(ph) == 32
    assert ds.sketches("train") and ds.sketches("test")  # both sides used
    assert {r.split for r in ds.sketches("test")} == {"test"}
    assert {r.category for r in sk} == set(CATEGORIES)
    assert Counter(r.style for r in sk) == {"clean": 32, "jitter": 64}
    # all sketches of an instance are on its photo's side; train and test instances are disjoint
    side = {p.instance: p.split for p in ph}
    assert len(side) == 32
    assert all(side[r.instance] == r.split for r in sk)
    train = {p.instance for p in ds.photos("train")}
    test = {p.instance for p in ds.photos("test")}
    assert not train & test
    assert 0.05 < len(test) / 32 < 0.5
    info = ds.info()
    assert info["train"]["sketches"] + info["test"]["sketches"] == 96
    assert info["test"]["photos"] == len(test)


def test_synthetic_is_deterministic():
    a, b = SyntheticDataset(seed=3), SyntheticDataset(seed=3)
    for split in SPLITS:
        ra, rb = a.sketches(split), b.sketches(split)
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb):
            assert x.sketch == y.sketch
            assert (x.instance, x.category, x.style, x.split, x.source) == (
                y.instance,
                y.category,
                y.style,
                y.split,
                y.source,
            )
        assert a.photos(split) == b.photos(split)
        np.testing.assert_array_equal(a.load_photos(a.photos(split), 32), b.load_photos(b.photos(split), 32))
    c = SyntheticDataset(seed=4)
    assert any(
        x.sketch != y.sketch
        for x, y in zip(a.sketches("train") + a.sketches("test"), c.sketches("train") + c.sketches("test"))
    )


@pytest.mark.parametrize("split", SPLITS)
def test_synthetic_photo_index_pairs_instances(split):
    ds = SyntheticDataset(n_instances=16)
    idx = ds.photo_index(split)
    photos, sketches = ds.photos(split), ds.sketches(split)
    assert idx.dtype == np.int64 and idx.shape == (len(sketches),)
    for i, rec in zip(idx, sketches):
        assert photos[i].instance == rec.instance
        assert photos[i].category == rec.category


@pytest.mark.parametrize("size", [16, 64, 100])
def test_synthetic_photos_rgb_uint8(size):
    ds = SyntheticDataset(n_instances=8)
    ph = ds.photos("train")
    img = ds.load_photo(ph[0], size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.min() < 200 and img.max() == 255  # ink on white
    many = ds.load_photos(ph, size)
    assert many.shape == (len(ph), size, size, 3) and many.dtype == np.uint8
    np.testing.assert_array_equal(many[0], img)
    # photos are coloured, not grey
    assert (many[..., 0] != many[..., 1]).any()


def test_synthetic_category_scheme_holds_out_one_category():
    ds = SyntheticDataset(scheme="category")
    assert {p.category for p in ds.photos("test")} == {"cross"}
    assert "cross" not in {p.category for p in ds.photos("train")}


def test_synthetic_errors():
    with pytest.raises(ValueError):
        SyntheticDataset(n_instances=3)
    with pytest.raises(ValueError, match="split schemes"):
        SyntheticDataset(scheme="style")
    ds = SyntheticDataset()
    with pytest.raises(ValueError):
        ds.sketches("val")
    with pytest.raises(ValueError):
        ds.photos("validation")
