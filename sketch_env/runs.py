"""Run folders and cache entries: one writer at a time, resume or refuse, no leftovers.

A training run (a backend, a meta backend, an RL agent, a sketcher) writes its configuration into its
folder and checkpoints as it goes; started again with the same folder, it resumes, but only if the
configuration is the one it was written with (:func:`check_resume`).

Locks (the ``filelock`` package; advisory OS locks, released when the holding process ends, even by
SIGKILL): :func:`run_lock` holds a run folder for the whole run, and a second run into the same folder is
refused with a message naming the holder; :func:`entry_lock` holds a cache entry (a feature store, a parsed
dataset, an adapted backend) while it is built, and a second process waits, then reuses what the first
built. Under a run's lock, :func:`remove_stale_temporaries` deletes what an interrupted write left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from sketch_env.backend import flatten_mapping
from sketch_env.errors import SketchEnvError
from sketch_env.log import logger

__all__ = ["RunConfigError", "RunLockedError", "check_resume", "plain", "run_lock", "entry_lock", "lock_path",
           "remove_stale_temporaries", "prepare_run_folder", "read_resume_file"]

LOCK_NAME = ".lock"


class RunConfigError(SketchEnvError, ValueError):
    """A run folder holding a run of another configuration."""


class RunLockedError(SketchEnvError, RuntimeError):
    """A run folder another process is writing."""


def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def _holder(lock_path: Path) -> str:
    try:
        who = json.loads(_owner_file(lock_path).read_text())
        return f"process {who['pid']} on {who['host']} since {who['since']}"
    except Exception:  # no owner note (yet), or an unreadable one
        return "another process"


@contextlib.contextmanager
def _held(lock: FileLock, lock_path: Path) -> Iterator[None]:
    """The block runs with ``lock`` (already acquired) held, its owner noted beside it."""
    try:
        note = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        _owner_file(lock_path).write_text(json.dumps(note))
        yield
    finally:
        lock.release()


def prepare_run_folder(folder: str | Path) -> Path:
    """``folder`` created if needed; a path that exists and is not a folder is a :class:`RunConfigError`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunConfigError(f"{folder} is a file, not a run folder: pass another --out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def run_lock(folder: str | Path, wait: bool = True) -> Iterator[Path]:
    """Hold run folder ``folder`` (created if needed) for the block. Held by another process, it is waited
    for (a message after a second names the holder), so a second start of the same training finds the run
    finished and reuses it; with ``wait=False`` a :class:`RunLockedError` names the holder instead. Stale
    temporaries of interrupted writes are removed once held."""
    folder = prepare_run_folder(folder)
    lock_path = folder / LOCK_NAME
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=1.0 if wait else 0)
    except Timeout:
        if not wait:
            raise RunLockedError(f"{folder} is in use by {_holder(lock_path)}: wait for it to finish, or pass "
                                 "another --out") from None
        logger.warning(f"waiting for {_holder(lock_path)}, which holds the run folder {folder}")
        lock.acquire()
    with _held(lock, lock_path):
        remove_stale_temporaries(folder)
        yield folder


@contextlib.contextmanager
def entry_lock(lock_path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock file ``lock_path`` of a cache entry while building it; another process holding it is
    waited for (with a message after a second), so the entry is built once and then reused."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=1.0)
    except Timeout:
        logger.warning(f"waiting for {_holder(lock_path)}, which is building {what}")
        lock.acquire()
    with _held(lock, lock_path):
        yield


def read_resume_file(path: str | Path, read: Callable[[Path], Any]) -> Any | None:
    """``read(path)`` for a run's resume file, None if there is none. A file that cannot be read (truncated by
    a kill, corrupt) is moved aside to ``<name>.corrupt`` with a warning naming it, and None is returned: the
    run starts over rather than failing on every start."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read(path)
    except Exception as exc:  # torch / zip / JSON errors of a damaged file
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"{path} is unreadable ({type(exc).__name__}: {exc}); moved to {aside.name}, and the run "
                      "starts over", stacklevel=2)
        return None


def lock_path(entry: str | Path) -> Path:
    """Where the lock of cache entry ``entry`` lives: ``$SKETCH_ENV_CACHE/locks/``, named by a hash of the
    entry's absolute path (so entry folders hold only their own files)."""
    from sketch_env.cache import cache_dir, stable_hash

    entry = Path(entry).resolve()
    return cache_dir("locks") / f"{entry.name}-{stable_hash(str(entry), 12)}.lock"


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries an interrupted atomic write left in ``folder`` (``.NAME.*.tmp`` files of
    :func:`sketch_env.cache.atomic_path`); call it only while holding the folder's lock."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        if tmp.is_file() and tmp.name != LOCK_NAME:
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def plain(obj: Any, default: Callable[[Any], Any] = str) -> Any:
    """``obj`` as plain JSON data (what a run folder records): what JSON cannot hold goes through ``default``
    (by default its string: paths and other objects)."""
    return json.loads(json.dumps(obj, default=default))


def check_resume(where: str | Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                 ignore: Iterable[str] = (), defaults: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume ``where`` unless the configuration it was ``saved`` with equals ``current``.

    Both are compared as plain JSON, flattened to dotted keys; keys in ``ignore`` (dotted, e.g.
    ``"config.minutes"``: a budget a resumed run may change) are left out, and a key ``saved`` lacks takes
    its value from ``defaults`` (an option added after the run was written counts as its default, so older
    runs stay resumable). Raises :class:`RunConfigError` naming the folder and the keys that differ.
    """
    ignored = set(ignore)
    have = {k: v for k, v in flatten_mapping(plain(dict(saved or {}))).items() if k not in ignored}
    want = {k: v for k, v in flatten_mapping(plain(dict(current))).items() if k not in ignored}
    for key, value in flatten_mapping(plain(dict(defaults or {}))).items():
        if key not in ignored and key not in have:
            have[key] = value
    if saved is not None and have == want:
        return
    if saved is None:
        detail = "no configuration is recorded"
    else:
        keys = sorted(k for k in set(have) | set(want) if have.get(k, "<missing>") != want.get(k, "<missing>"))
        detail = "; ".join(f"{k}: {have.get(k, '<missing>')!r} there, {want.get(k, '<missing>')!r} now"
                           for k in keys[:5]) + (f"; and {len(keys) - 5} more" if len(keys) > 5 else "")
    raise RunConfigError(f"{where} was written by a different configuration ({detail}); use another --out "
                         "or delete it")
