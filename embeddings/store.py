"""The feature store: every (sketch, step) feature and query of one split, computed once, memory-mapped.

Training and evaluating a retrieval policy reads the frozen backend's observation feature of every
partial sketch many times; rendering and embedding them is the expensive part. :func:`open_feature_store`
does it once per (backend weights, dataset split, schedule, rendering) and keeps the result in

``<cache>/features/<key>/``::

    sketch_features.npy   float32 (n, S, F)   backend.sketch_features of each partial raster
    queries.npy           float32 (n, S, d)   backend.queries(features, step): the frozen model's queries
    gallery.npy           float32 (P, d)      backend.photo_embeddings of the split's photos
    photo_index.npy       int64   (n,)        index of each sketch's photo in the gallery
    meta.json             key, provenance, shapes, build time

A store is trusted only if ``meta.json``'s key matches and every file opens as a memory map with the
shape recorded in it; otherwise (stale, truncated, missing) it is rebuilt, with a warning saying why.
A build writes into a temporary folder beside the final one and moves it into place with ``os.replace``,
so a reader sees a whole store or none, and a build killed midway leaves no half-written store behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import EmbeddingBackend
from sketch_env.cache import cache_dir, stable_hash
from sketch_env.datasets.base import SketchDataset
from sketch_env.errors import ArgumentError
from sketch_env.render import render_progressive_batch
from sketch_env.runs import entry_lock, lock_path
from sketch_env.schedule import Schedule
from sketch_env.sketch import Sketch

__all__ = [
    "backend_and_dataset",
    "embed_progressive",
    "cached_feature_store",
    "LazyFeatures",
    "FeatureStore",
    "feature_store_key",
    "open_feature_store",
    "open_backend_store",
    "gallery_embeddings",
    "STORE_FORMAT",
]

STORE_FORMAT = "sketch-env-features/1"

_FILES = ("sketch_features", "queries", "gallery", "photo_index")
_DTYPES = {"sketch_features": np.float32, "queries": np.float32, "gallery": np.float32, "photo_index": np.int64}


@dataclass
class FeatureStore:
    """One split's precomputed features (see the module docstring).

    Attributes:
        path: the store's folder.
        sketch_features: read-only memory map, float32 ``(n, S, F)``.
        queries: read-only memory map, float32 ``(n, S, d)``: ``backend.queries(features, step)``.
        gallery: float32 ``(P, d)``, the split's L2-normalised photo embeddings (in memory).
        photo_index: int64 ``(n,)``, each sketch's photo in ``gallery`` (in memory).
        meta: the contents of ``meta.json``.
    """

    path: Path
    sketch_features: np.ndarray
    queries: np.ndarray
    gallery: np.ndarray
    photo_index: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_sketches(self) -> int:
        return int(self.sketch_features.shape[0])

    @property
    def steps(self) -> int:
        return int(self.sketch_features.shape[1])

    @property
    def gallery_size(self) -> int:
        return int(self.gallery.shape[0])

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"FeatureStore({m.get('dataset')}/{m.get('split')}, n={self.num_sketches}, S={self.steps}, "
            f"F={self.sketch_features.shape[2]}, d={self.gallery.shape[1]}, P={self.gallery_size}, path={self.path})"
        )


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(source: str) -> str:
    """SHA-1 of a photo file's bytes (memoised per process on its path, size and modification time); a source
    that is not a file (a rendering's description) stands for itself."""
    path = Path(source)
    try:
        st = path.stat()
    except (OSError, ValueError):
        return ""
    if not path.is_file():
        return ""
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return _FILE_DIGESTS[key]


def _sketch_digest(dataset: SketchDataset, split: str) -> str:
    """SHA-1 over the split's sketches (instance names, sources and the points themselves, in order) and its
    photos (names, sources and, for photo files, their bytes: a photo replaced under the same name changes
    the key)."""
    h = hashlib.sha1()
    for rec in dataset.sketches(split):
        h.update(f"{rec.instance}\x00{rec.source}\x00".encode())
        h.update(rec.sketch.points.tobytes())
        h.update(rec.sketch.stroke_ends.tobytes())
    h.update("\x01".join(f"{p.instance}\x00{p.source}\x00{_file_digest(p.source)}"
                         for p in dataset.photos(split)).encode())
    return h.hexdigest()


def _steps_of(schedule: Schedule) -> int:
    if schedule.steps is None:
        raise ArgumentError(f"the feature store needs a fixed-length schedule, got {schedule.key()} (steps=None)")
    return int(schedule.steps)


def feature_store_key(backend: EmbeddingBackend, dataset: SketchDataset, split: str, schedule: Schedule) -> str:
    """The store's cache key: a hash of everything that determines its content.

    The format version, the backend's fingerprint (configuration and weights) and class, the dataset's name,
    scheme and root, the split, a SHA-1 of the split's sketches (instance names, sources, points) and
    photo list, the schedule, the render configuration and the photo size.
    """
    root = getattr(dataset, "root", None)
    return stable_hash(
        {
            "format": STORE_FORMAT,
            "backend": backend.fingerprint(),
            # the fingerprint covers config and weights only; two classes can share both
            "backend_class": [type(backend).__qualname__, backend.name, bool(backend.per_step)],
            "dataset": dataset.name,
            "scheme": dataset.scheme,
            "root": None if root is None else str(root),
            "split": split,
            "data": _sketch_digest(dataset, split),
            "schedule": schedule.key(),
            "render": backend.render_config.key(),
            "photo_size": int(backend.photo_size),
        }
    )


# ----------------------------------------------------------------------------- reading


def _load(path: Path, key: str) -> FeatureStore | str:
    """The store at ``path``, or the reason it cannot be used."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        return "meta.json is missing"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        return f"meta.json is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(meta, dict) or meta.get("key") != key:
        return f"its key {meta.get('key') if isinstance(meta, dict) else None!r} differs from {key!r}"
    shapes = meta.get("shapes", {})
    arrays: dict[str, np.ndarray] = {}
    for name in _FILES:
        want = tuple(shapes.get(name, ()))
        try:
            arr = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # missing, truncated, bad header
            return f"{name}.npy is unreadable ({type(exc).__name__}: {exc})"
        if arr.shape != want or arr.dtype != _DTYPES[name]:
            return f"{name}.npy has shape {arr.shape} {arr.dtype}, meta.json says {want} {np.dtype(_DTYPES[name])}"
        arrays[name] = arr
    gallery = np.array(arrays["gallery"])
    photo_index = np.array(arrays["photo_index"])
    if len(photo_index) and (photo_index.min() < 0 or photo_index.max() >= len(gallery)):
        return "photo_index points outside the gallery"
    for name in ("sketch_features", "queries", "gallery"):  # a NaN would rank as 0 and pay an infinite reward
        arr = arrays[name]
        for lo in range(0, len(arr), 256):
            if not np.isfinite(arr[lo : lo + 256]).all():
                return f"{name}.npy holds NaN or inf values"
    return FeatureStore(path, arrays["sketch_features"], arrays["queries"], gallery, photo_index, meta)


def _open_array(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if int(np.prod(shape)) == 0:  # a zero-length memory map cannot be created
        np.save(path, np.empty(shape, dtype=dtype))
        return np.empty(shape, dtype=dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _check_shape(what: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape != shape:
        raise ArgumentError(f"backend returned {what} of shape {arr.shape}, expected {shape}")
    return arr


# ----------------------------------------------------------------------------- building


def embed_progressive(backend: EmbeddingBackend, sketches: Sequence[Sketch], schedule: Schedule,
                      batch_size: int = 256) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Every sketch drawn step by step (``schedule``) and embedded: yields ``(lo, hi, features, queries)``
    for ``sketches[lo:hi]``, features ``(hi - lo, S, F)`` and queries ``(hi - lo, S, d)``, with about
    ``batch_size`` rasters in memory at a time."""
    steps, config = _steps_of(schedule), backend.render_config
    feat, dim = backend.feature_dim, backend.embed_dim
    per_batch = max(1, batch_size // steps)
    for lo in range(0, len(sketches), per_batch):
        hi = min(lo + per_batch, len(sketches))
        b = hi - lo
        rasters = render_progressive_batch(list(sketches[lo:hi]), schedule, config)
        if rasters.shape[1] != steps:
            raise ArgumentError(f"schedule {schedule.key()} gave {rasters.shape[1]} steps, expected {steps}")
        flat = rasters.reshape(b * steps, config.size, config.size)
        step = np.tile(np.arange(steps), b)
        f = _check_shape("sketch features", backend.sketch_features(flat, step=step), (b * steps, feat))
        q = _check_shape("queries", backend.queries(f, step=step), (b * steps, dim))
        yield lo, hi, f.reshape(b, steps, feat), q.reshape(b, steps, dim)


def _build(
    tmp: Path,
    key: str,
    backend: EmbeddingBackend,
    dataset: SketchDataset,
    split: str,
    schedule: Schedule,
    batch_size: int,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    records = dataset.sketches(split)
    photos = dataset.photos(split)
    photo_index = dataset.photo_index(split)
    n, steps, num_photos = len(records), _steps_of(schedule), len(photos)
    feat, dim = backend.feature_dim, backend.embed_dim
    config = backend.render_config

    features = _open_array(tmp / "sketch_features.npy", (n, steps, feat), np.float32)
    queries = _open_array(tmp / "queries.npy", (n, steps, dim), np.float32)
    desc = f"features {dataset.name}/{split}"
    with tqdm(total=n * steps, desc=desc, unit="raster", disable=not progress, leave=False) as bar:
        for lo, hi, f, q in embed_progressive(backend, [r.sketch for r in records], schedule, batch_size):
            features[lo:hi] = f
            queries[lo:hi] = q
            bar.update((hi - lo) * steps)
    sketch_seconds = time.perf_counter() - start

    gallery = gallery_embeddings(backend, dataset, split, batch_size, progress)

    for arr in (features, queries):
        if isinstance(arr, np.memmap):
            arr.flush()
    del features, queries
    np.save(tmp / "gallery.npy", gallery)
    np.save(tmp / "photo_index.npy", np.asarray(photo_index, dtype=np.int64))
    seconds = time.perf_counter() - start
    root = getattr(dataset, "root", None)
    meta = {
        "format": STORE_FORMAT,
        "key": key,
        "dataset": dataset.name,
        "scheme": dataset.scheme,
        "root": None if root is None else str(root),
        "split": split,
        "schedule": schedule.key(),
        "render": config.key(),
        "photo_size": int(backend.photo_size),
        "backend": backend.name,
        "backend_fingerprint": backend.fingerprint(),
        "n": n,
        "S": steps,
        "F": feat,
        "d": dim,
        "P": num_photos,
        "shapes": {
            "sketch_features": [n, steps, feat],
            "queries": [n, steps, dim],
            "gallery": [num_photos, dim],
            "photo_index": [n],
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 3),
        "rasters_per_second": round(n * steps / sketch_seconds, 1) if sketch_seconds > 0 else None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    for name in os.listdir(tmp):  # data on disk before the folder becomes visible under its final name
        with open(tmp / name, "rb+") as fh:
            os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Move the built folder ``tmp`` onto ``final``; an old ``final`` is moved aside and then deleted."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, old / "store")  # a rename: readers holding memory maps keep their open files
    try:
        os.replace(tmp, final)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def open_feature_store(
    backend: EmbeddingBackend,
    dataset: SketchDataset,
    split: str,
    schedule: Schedule,
    batch_size: int = 256,
    rebuild: bool = False,
    progress: bool = True,
    root_dir: str | Path | None = None,
) -> FeatureStore:
    """The feature store of ``split`` for ``backend`` and ``schedule``: reused if valid, else built.

    Args:
        backend: the frozen embedding backend (only its interface is used).
        dataset: the dataset; its ``split`` sketches and photos are embedded.
        split: ``"train"`` or ``"test"``.
        schedule: a fixed-length schedule (``schedule.steps`` set).
        batch_size: rasters per backend call (sketches are rendered ``max(1, batch_size // S)`` at a
            time, all their steps together) and photos per ``photo_embeddings`` call.
        rebuild: build even if a valid store exists.
        progress: show tqdm progress bars.
        root_dir: where stores live; default ``cache_dir("features")``.

    An existing store that is invalid (stale key, a truncated or missing file, a shape that differs from
    ``meta.json``) is rebuilt with a warning naming the reason.
    """
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    _steps_of(schedule)
    key = feature_store_key(backend, dataset, split, schedule)
    root = Path(root_dir) if root_dir is not None else cache_dir("features")
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    # one builder per key: a second process waits for the first, then reuses its store
    with entry_lock(lock_path(final), f"the feature store {final}"):
        return _open_or_build(final, key, backend, dataset, split, schedule, batch_size, rebuild, progress)


def cached_feature_store(backend: EmbeddingBackend, dataset: SketchDataset, split: str, schedule: Schedule,
                         root_dir: str | Path | None = None) -> FeatureStore | None:
    """The valid feature store of these arguments if one is already on disk, else None (nothing is built)."""
    key = feature_store_key(backend, dataset, split, schedule)
    final = (Path(root_dir) if root_dir is not None else cache_dir("features")) / key
    if not final.exists():
        return None
    found = _load(final, key)
    return found if isinstance(found, FeatureStore) else None


class LazyFeatures:
    """The features and own queries of a split's sketches, computed on first use, a sketch (all its ``S``
    steps) at a time, and kept in memory: an env made before any feature store exists starts at once and
    pays only for the sketches its episodes draw. Exposes :attr:`sketch_features` and :attr:`queries`,
    array-likes of shapes ``(n, S, F)`` and ``(n, S, d)`` that index like NumPy arrays (reading all of
    them computes all)."""

    def __init__(self, backend: EmbeddingBackend, sketches: Sequence[Sketch], schedule: Schedule,
                 batch_size: int = 256, progress: bool = False) -> None:
        n, steps = len(sketches), _steps_of(schedule)
        self.backend, self.sketches, self.schedule = backend, list(sketches), schedule
        self.batch_size, self.progress = batch_size, progress
        self._arrays = {"sketch_features": np.zeros((n, steps, backend.feature_dim), np.float32),
                        "queries": np.zeros((n, steps, backend.embed_dim), np.float32)}
        self.filled = np.zeros(n, dtype=bool)
        self.sketch_features = _LazyArray(self, "sketch_features")
        self.queries = _LazyArray(self, "queries")

    def ensure(self, rows: np.ndarray) -> None:
        """Compute the rows not computed yet (checked finite)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64).ravel())
        missing = rows[~self.filled[rows]]
        if not len(missing):
            return
        from tqdm.auto import tqdm

        feats, queries = self._arrays["sketch_features"], self._arrays["queries"]
        with tqdm(total=len(missing), desc="features", unit="sketch", leave=False,
                  disable=not (self.progress and len(missing) > 500)) as bar:
            for lo, hi, f, q in embed_progressive(self.backend, [self.sketches[i] for i in missing], self.schedule,
                                                  self.batch_size):
                if not (np.isfinite(f).all() and np.isfinite(q).all()):
                    raise ArgumentError(f"the backend gave NaN or inf features for sketch rows {missing[lo:hi]}")
                idx = missing[lo:hi]
                feats[idx], queries[idx] = f, q
                self.filled[idx] = True
                bar.update(hi - lo)


class _LazyArray:
    """One array of a :class:`LazyFeatures`: indexing computes the rows it reads."""

    def __init__(self, owner: LazyFeatures, name: str) -> None:
        self._owner, self._name = owner, name
        self.shape, self.dtype, self.ndim = owner._arrays[name].shape, np.dtype(np.float32), 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        self._owner.ensure(np.arange(self.shape[0])[rows])
        return self._owner._arrays[self._name][key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self._owner.ensure(np.arange(self.shape[0]))
        arr = self._owner._arrays[self._name]
        return arr if dtype is None else arr.astype(dtype)


def _open_or_build(final: Path, key: str, backend: EmbeddingBackend, dataset: SketchDataset, split: str,
                   schedule: Schedule, batch_size: int, rebuild: bool, progress: bool) -> FeatureStore:
    """The store at ``final`` if valid, else built (holding the key's lock)."""
    root = final.parent
    for stale in root.glob(f".{key}.build.*"):  # a build killed midway (we hold the lock: nobody else's)
        shutil.rmtree(stale, ignore_errors=True)
    if not rebuild and final.exists():
        found = _load(final, key)
        if isinstance(found, FeatureStore):
            return found
        warnings.warn(f"feature store {final} is invalid ({found}); rebuilding", stacklevel=3)

    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.build.", dir=root))
    try:
        _build(tmp, key, backend, dataset, split, schedule, batch_size, progress)
        try:
            _swap_into_place(tmp, final)
        except OSError:
            # another process put a store there between our move-aside and our move: use it if valid
            found = _load(final, key)
            if isinstance(found, FeatureStore):
                return found
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    found = _load(final, key)
    if not isinstance(found, FeatureStore):
        raise RuntimeError(f"feature store {final} was just built but does not load: {found}")
    return found



def gallery_embeddings(backend: EmbeddingBackend, dataset: SketchDataset, split: str,
                       batch_size: int = 512, progress: bool = False) -> np.ndarray:
    """Photo embeddings of a split, float32 ``(P, d)``: the store's gallery, and distractor galleries
    (which need no sketch features)."""
    from tqdm.auto import tqdm

    photos = dataset.photos(split)
    dim = backend.embed_dim
    gallery = np.empty((len(photos), dim), dtype=np.float32)
    with tqdm(total=len(photos), desc=f"photos {dataset.name}/{split}", unit="photo", disable=not progress,
              leave=False) as bar:
        for lo in range(0, len(photos), batch_size):
            hi = min(lo + batch_size, len(photos))
            images = dataset.load_photos(photos[lo:hi], backend.photo_size)
            gallery[lo:hi] = _check_shape("photo embeddings", backend.photo_embeddings(images), (hi - lo, dim))
            bar.update(hi - lo)
    return gallery


def backend_and_dataset(checkpoint: str | Path, dataset: str | SketchDataset | None = None, root: str | None = None,
                        scheme: str | None = None, device: str = "auto",
                        flip_average: bool | None = None) -> tuple[EmbeddingBackend, SketchDataset]:
    """The backend ``checkpoint`` and the dataset it is evaluated on: by default the one it was trained on
    (``dataset`` may be a name or a dataset object), the scheme likewise. ``flip_average`` turns test-time
    mirror averaging on or off (``None``: as the checkpoint records); the weights are unchanged, and the
    backend's fingerprint, hence its feature stores, follows the setting."""
    from embeddings.base import load_backend
    from sketch_env.datasets import make_dataset
    from sketch_env.device import resolve_device

    backend = load_backend(checkpoint, device=str(resolve_device(device)))
    if flip_average is not None:
        if "flip_average" not in backend.config:
            raise ArgumentError(f"{checkpoint}: backend {backend.name!r} has no test-time mirror averaging "
                                "(no flip_average option)")
        backend.config["flip_average"] = bool(flip_average)
    if not isinstance(dataset, SketchDataset):
        name = dataset or backend.config["dataset"]
        if name is None:
            raise ArgumentError(f"{checkpoint}: the backend records no training dataset; pass the dataset")
        own = name == backend.config["dataset"]
        options = {"scheme": scheme or backend.config["scheme"]} if own or scheme else {}
        dataset = make_dataset(name, root=root, **options)
    return backend, dataset


def open_backend_store(
    checkpoint: str | Path,
    split: str,
    steps: int = 20,
    schedule: str = "points",
    dataset: str | SketchDataset | None = None,
    root: str | None = None,
    scheme: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
    flip_average: bool | None = None,
) -> tuple[EmbeddingBackend, SketchDataset, FeatureStore]:
    """Load the backend ``checkpoint`` and open (building if needed) its feature store of ``split``.

    The dataset defaults to the one the backend was trained on (``dataset`` may be a name or a dataset
    object), the scheme likewise; ``schedule`` is a :func:`~sketch_env.schedule.make_schedule` name with
    ``steps`` steps; ``batch_size`` as in :func:`open_feature_store` (rasters per backend call);
    ``flip_average`` as in :func:`backend_and_dataset`. Used by ``sketch-env embed cache|eval`` and the
    retrieval environment.
    """
    from sketch_env.schedule import make_schedule

    backend, dataset = backend_and_dataset(checkpoint, dataset, root, scheme, device, flip_average=flip_average)
    store = open_feature_store(backend, dataset, split, make_schedule(schedule, steps), batch_size=batch_size,
                               progress=progress)
    return backend, dataset, store
