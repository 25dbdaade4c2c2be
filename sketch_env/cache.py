"""On-disk caches: where they live, atomic writes, and verified loads.

Every cache file is written to a temporary file in the destination folder and moved into place with
``os.replace``, so a reader sees either the old file or the complete new one, never a partial write, and
a run killed mid-write leaves the previous cache intact. Each cache stores the key (a hash of everything
that determines its content); a file whose key differs (stale) or that cannot be read (truncated,
corrupt) is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "data_dir", "stable_hash", "atomic_path", "write_text", "write_csv", "write_json",
           "read_json",
           "save_npz_atomic", "load_npz_checked", "cached_npz"]

ENV_VAR = "SKETCH_ENV_CACHE"
#: overrides where trained models go by default (the per-user data folder)
DATA_ENV_VAR = "SKETCH_ENV_DATA"


def cache_dir(sub: str | None = None) -> Path:
    """The cache root: ``$SKETCH_ENV_CACHE``, else ``$XDG_CACHE_HOME/sketch_env``, else ``~/.cache/sketch_env``."""
    root = os.environ.get(ENV_VAR)
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "sketch_env"
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(sub: str | None = None) -> Path:
    """The per-user data folder, where trainings write their models by default and names are looked up:
    ``$SKETCH_ENV_DATA``, else the platform's user data folder (``platformdirs``; on Linux
    ``~/.local/share/sketch-env``). Unlike the cache, nothing here is rebuilt: it holds what you trained."""
    root = os.environ.get(DATA_ENV_VAR)
    if root:
        base = Path(root)
    else:
        from platformdirs import user_data_dir

        base = Path(user_data_dir("sketch-env", appauthor=False))
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def stable_hash(obj: object, length: int = 16) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys), truncated: a cache key."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was. ``suffix`` ends the
    temporary name (a writer that insists on an extension, such as SB3's ``.zip``, gets its own).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the file gets the mode a plain open() would give
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`): a reader never sees half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any] | Sequence[Any]],
              header: Sequence[str] | None = None) -> Path:
    """Write a table as CSV (``\\n`` line ends) to ``path`` atomically (:func:`write_text`).

    ``rows`` are mappings or sequences. Mappings are written under ``header`` (keys outside it dropped, missing
    ones empty), or under the first row's keys when no header is given. Sequences are written as they are,
    after ``header`` when there is one.
    """
    rows = list(rows)
    buf = io.StringIO()
    if rows and isinstance(rows[0], Mapping):
        fields = list(header) if header is not None else list(rows[0])
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n",
                                extrasaction="ignore" if header is not None else "raise")
        writer.writeheader()
        writer.writerows(rows)
    else:
        plain = csv.writer(buf, lineterminator="\n")
        if header is not None:
            plain.writerow(header)
        plain.writerows(rows)
    return write_text(path, buf.getvalue())


def write_json(path: str | Path, obj: object, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`atomic_path`); non-JSON values as strings."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=str))
    return path


def read_json(path: str | Path, max_bytes: int | None = None) -> Any:
    """JSON read from ``path`` (at most ``max_bytes``, :data:`sketch_env.limits.MAX_JSON_BYTES` by default); a
    file that is not UTF-8 JSON, or nests too deep, is a :class:`~sketch_env.errors.DataFormatError` naming it."""
    from sketch_env.errors import DataFormatError
    from sketch_env.limits import MAX_JSON_BYTES, read_bytes_bounded

    data = read_bytes_bounded(path, MAX_JSON_BYTES if max_bytes is None else max_bytes)
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise DataFormatError(path, "JSON nested too deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataFormatError(path, f"not UTF-8 JSON ({type(exc).__name__}: {exc})") from None


def save_npz_atomic(path: str | Path, key: str, **arrays: np.ndarray) -> None:
    """Write arrays plus their cache ``key`` to an uncompressed ``.npz``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __cache_key__=np.array(key), **arrays)


def load_npz_checked(path: str | Path, key: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Load a cache written by :func:`save_npz_atomic`; ``None`` if missing, stale or unreadable.

    Object arrays are never unpickled (``allow_pickle=False``).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        import zipfile

        from sketch_env.limits import check_zip_member

        with zipfile.ZipFile(path) as zf:  # what the directory announces, checked before numpy reads a member
            for info in zf.infolist():
                check_zip_member(path, info)
        with np.load(path, allow_pickle=False) as data:
            if str(data["__cache_key__"]) != key:
                warnings.warn(f"cache {path} is stale (its key differs); rebuilding", stacklevel=3)
                return None
            out = {k: data[k] for k in data.files if k != "__cache_key__"}
    except Exception as exc:  # truncated zip, bad header, missing key...
        warnings.warn(f"cache {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding", stacklevel=3)
        return None
    missing = [k for k in required if k not in out]
    if missing:
        warnings.warn(f"cache {path} lacks {missing}; rebuilding", stacklevel=3)
        return None
    return out


def cached_npz(
    path: str | Path, key: str, build: Callable[[], dict[str, np.ndarray]], required: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Return the cache at ``path`` if valid for ``key``, else ``build()`` it and save it atomically. Processes
    asking for the same entry at once build it once: the others wait on its lock, then read it."""
    from sketch_env.runs import entry_lock, lock_path

    data = load_npz_checked(path, key, required)
    if data is not None:
        return data
    path = Path(path)
    with entry_lock(lock_path(path), f"the cache {path}"):
        data = load_npz_checked(path, key, required)
        if data is None:
            data = build()
            save_npz_atomic(path, key, **data)
    return data
