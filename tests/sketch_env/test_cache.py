"""On-disk caches (sketch_env.cache): atomic writes, stale and truncated caches rebuilt."""

from __future__ import annotations

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
    write_csv,
)


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


def test_write_csv_mappings_and_sequences(tmp_path):
    import csv

    dicts = write_csv(tmp_path / "a.csv", [{"m": "B1", "x": 1.5, "extra": "dropped"}, {"m": "a,b", "x": 2}],
                      header=["m", "x"])
    assert dicts.read_text() == 'm,x\nB1,1.5\n"a,b",2\n'  # quoted where needed, keys outside the header dropped
    assert list(csv.DictReader(dicts.open())) == [{"m": "B1", "x": "1.5"}, {"m": "a,b", "x": "2"}]
    assert write_csv(tmp_path / "b.csv", [{"k": 1, "v": 2}]).read_text() == "k,v\n1,2\n"  # the first row's keys
    with pytest.raises(ValueError, match="extra"):  # without a header, a row with a new key is a mistake
        write_csv(tmp_path / "c.csv", [{"k": 1}, {"k": 2, "extra": 3}])
    assert not (tmp_path / "c.csv").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
    assert write_csv(tmp_path / "d.csv", [[1, "x"], [2, "y"]], header=["n", "s"]).read_text() == "n,s\n1,x\n2,y\n"
    assert write_csv(tmp_path / "e.csv", [], header=["n"]).read_text() == "n\n"


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


def test_write_text_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    from sketch_env.cache import write_text

    path = tmp_path / "report" / "README.md"
    assert write_text(path, "first ✓\n") == path and path.read_text(encoding="utf-8") == "first ✓\n"
    write_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in path.parent.iterdir()] == ["README.md"]
