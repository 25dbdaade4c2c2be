"""Datasets: the synthetic one, ``make_dataset``, the on-disk caches, and the embedded kanji dataset."""

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
    atomic_path,
    cache_dir,
    cached_npz,
    load_npz_checked,
    save_npz_atomic,
    stable_hash,
)
from sketch_env.datasets import SPLITS, make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.datasets.synthetic import CATEGORIES, SyntheticDataset


# ============================================================================================== synthetic
def _records(ds):
    return {split: ds.sketches(split) for split in SPLITS}


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


def test_stable_fraction():
    assert stable_fraction("abc") == stable_fraction("abc")
    assert stable_fraction("abc", "x") != stable_fraction("abc", "y")
    vals = [stable_fraction(str(i)) for i in range(2000)]
    assert 0 <= min(vals) and max(vals) < 1
    assert 0.45 < float(np.mean(vals)) < 0.55


# ============================================================================================== make_dataset
def test_make_dataset_synthetic_with_options():
    ds = make_dataset("Synthetic", n_instances=8, sketches_per_instance=1)
    assert isinstance(ds, SyntheticDataset) and ds.n_instances == 8
    assert len(ds.sketches("train")) + len(ds.sketches("test")) == 8


def test_make_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("imagenet")


@pytest.mark.parametrize("name", ["qmul", "shoev2", "chairv2", "sketchy", "quickdraw"])
def test_make_dataset_root_required(name):
    with pytest.raises(ValueError, match="root"):
        make_dataset(name)


@pytest.mark.parametrize("name", ["kanji", "synthetic"])
def test_make_dataset_embedded_takes_no_root(name, tmp_path):
    with pytest.raises(ValueError, match="no root"):
        make_dataset(name, root=str(tmp_path))


# ============================================================================================== caches
def _builder(calls: list, value: float = 1.0):
    def build():
        calls.append(1)
        return {"a": np.arange(5) * value, "b": np.eye(2)}

    return build


def test_cached_npz_builds_once(tmp_path):
    path, calls = tmp_path / "c.npz", []
    first = cached_npz(path, "k1", _builder(calls))
    second = cached_npz(path, "k1", _builder(calls))
    assert len(calls) == 1
    for k in ("a", "b"):
        np.testing.assert_array_equal(first[k], second[k])
    assert set(second) == {"a", "b"}  # the key is not returned as data


@pytest.mark.parametrize("keep", [0, 10, 100, -1])
def test_cached_npz_rebuilds_truncated(tmp_path, keep):
    path, calls = tmp_path / "c.npz", []
    cached_npz(path, "k1", _builder(calls))
    raw = path.read_bytes()
    path.write_bytes(raw[: keep if keep >= 0 else len(raw) // 2])
    with pytest.warns(UserWarning, match="unreadable"):
        data = cached_npz(path, "k1", _builder(calls, 2.0))
    assert len(calls) == 2
    np.testing.assert_array_equal(data["a"], np.arange(5) * 2.0)
    # and the rebuilt file is whole again
    assert load_npz_checked(path, "k1") is not None


def test_cached_npz_rebuilds_stale(tmp_path):
    path, calls = tmp_path / "c.npz", []
    cached_npz(path, "k1", _builder(calls))
    with pytest.warns(UserWarning, match="stale"):
        data = cached_npz(path, "k2", _builder(calls, 3.0))
    assert len(calls) == 2
    np.testing.assert_array_equal(data["a"], np.arange(5) * 3.0)
    assert load_npz_checked(path, "k2") is not None
    with pytest.warns(UserWarning, match="stale"):
        assert load_npz_checked(path, "k1") is None


def test_cached_npz_rebuilds_when_required_array_missing(tmp_path):
    path, calls = tmp_path / "c.npz", []
    cached_npz(path, "k1", _builder(calls))
    with pytest.warns(UserWarning, match="lacks"):
        cached_npz(path, "k1", _builder(calls), required=("a", "z"))
    assert len(calls) == 2


def test_load_npz_checked_missing_and_no_pickle(tmp_path):
    assert load_npz_checked(tmp_path / "nope.npz", "k") is None
    # an object array would need unpickling: refused, treated as unreadable
    path = tmp_path / "obj.npz"
    np.savez(path, __cache_key__=np.array("k"), x=np.array([{"a": 1}], dtype=object))
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_npz_checked(path, "k") is None
    # a file with no key at all
    path2 = tmp_path / "nokey.npz"
    np.savez(path2, x=np.arange(3))
    with pytest.warns(UserWarning):
        assert load_npz_checked(path2, "k") is None


def test_save_npz_atomic_round_trip(tmp_path):
    path = tmp_path / "sub" / "x.npz"
    save_npz_atomic(path, "key", x=np.arange(4, dtype=np.int32), s=np.array(["a", "bc"]))
    data = load_npz_checked(path, "key", required=("x", "s"))
    np.testing.assert_array_equal(data["x"], np.arange(4))
    assert data["x"].dtype == np.int32 and data["s"].tolist() == ["a", "bc"]
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]  # no temporary left behind


def test_atomic_path_keeps_old_file_when_writer_raises(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            assert tmp.parent == path.parent and tmp != path
            tmp.write_bytes(b"half a new fi")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]
    # and a writer that succeeds replaces it
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new content")
        assert path.read_bytes() == b"old content"  # not visible before the block ends
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_atomic_path_no_file_created_when_writer_raises(tmp_path):
    path = tmp_path / "new" / "data.bin"
    with pytest.raises(KeyError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"x")
            raise KeyError("k")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_cached_npz_keeps_old_cache_when_build_raises(tmp_path):
    path, calls = tmp_path / "c.npz", []
    cached_npz(path, "k1", _builder(calls))
    before = path.read_bytes()

    def failing():
        raise OSError("disk gone")

    with pytest.warns(UserWarning, match="stale"), pytest.raises(OSError):
        cached_npz(path, "k2", failing)
    assert path.read_bytes() == before


def test_stable_hash():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert len(stable_hash("x")) == 16 and len(stable_hash("x", length=8)) == 8


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))
    assert cache_dir() == tmp_path / "root"
    sub = cache_dir("glyphs")
    assert sub == tmp_path / "root" / "glyphs" and sub.is_dir()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sketch_env"


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
