"""What a retrieval environment reads: the frozen backend's features, queries and gallery of one split.

:func:`load_retrieval_data` turns an env spec's plain values (dataset, backend name or checkpoint, split,
schedule, ...) into a :class:`RetrievalData`: it finds (or, if asked, trains) the backend checkpoint,
opens its feature store (:func:`embeddings.store.open_backend_store`, built on first use with a progress
bar), selects the split's sketches and photos and adds distractor photos. Results are memoised per
process, so the N single envs of a ``SyncVectorEnv`` load once. :meth:`RetrievalData.from_arrays` makes
one from arrays (tests, benchmarks, custom backends).

**Backend checkpoints.** ``backend`` is a path (a ``backend.pt`` or the run folder holding it) or a
registry name (``ts``, ``b1``, ``b2``, ``b3``) looked up, in order, in

1. ``runs/embeddings/<dataset>-<scheme>/<backend>-s<seed>/backend.pt`` under the current directory, where
   ``sketch-env embed train`` and ``sketch-env run`` write it;
2. ``$SKETCH_ENV_CACHE/backends/<dataset>-<scheme>/<backend>-s<seed>[-<hash of train_options>]/``, where
   ``train_if_missing`` trains it (used only once its ``history.json`` says training finished; an
   interrupted training resumes from its ``last.pt``).

**Splits.** ``"train"`` and ``"val"`` come from the dataset's training split: ``"val"`` is the part the
backend held out for validation (photos with ``stable_fraction(name, "val") < val_fraction``, the
backend's own ``val_fraction``; :func:`embeddings.train.validation_mask`) and their sketches, ``"train"``
the rest; so the backend never trained on ``"val"`` and agents can select checkpoints on it. ``"test"``
is the dataset's test split. The gallery holds the split's photos; ``distractors=True`` appends all other
photos of the dataset (the README's "all photos" gallery), so the true photo indices are unchanged.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RetrievalData", "load_retrieval_data", "resolve_backend_checkpoint", "adapted_checkpoint", "ENV_SPLITS",
           "DEFAULT_TRAIN"]

ENV_SPLITS = ("train", "val", "test")

#: training run used by ``train_if_missing`` when no ``train_options`` are given: what ``sketch-env run`` does
DEFAULT_TRAIN: dict[str, Any] = {"minutes": 10.0, "epochs": 60}

_MEMO: OrderedDict[tuple, RetrievalData] = OrderedDict()
_MEMO_SIZE = 4


@dataclass(eq=False)
class RetrievalData:
    """Arrays of one split (read-only; may be memory maps shared between envs).

    Attributes:
        sketch_features: float32 ``(m, S, F)``: the observation feature of every (sketch, step).
        gallery: float32 ``(P, d)`` L2-normalised photo embeddings.
        photo_index: int64 ``(n,)``: sketch ``i``'s photo in ``gallery``.
        queries: float32 ``(m, S, d)``: the backend's own queries (``action="residual"``), or None.
        sketch_rows: int64 ``(n,)``: sketch ``i``'s row in ``sketch_features`` / ``queries`` (None: ``i``).
        description: where the data come from, for ``repr``.
        dataset, sketch_records, photo_records, schedule, render_config: what ``render()`` draws with
            (None for data made from arrays); ``photo_records`` is aligned with ``gallery``.
        load_kwargs: the :func:`load_retrieval_data` arguments that rebuild it (None for arrays).
        backend_checkpoint: the checkpoint it was computed with.
    """

    sketch_features: np.ndarray
    gallery: np.ndarray
    photo_index: np.ndarray
    queries: np.ndarray | None = None
    sketch_rows: np.ndarray | None = None
    description: str = "arrays"
    dataset: Any = None
    sketch_records: list | None = None
    photo_records: list | None = None
    schedule: Any = None
    render_config: Any = None
    load_kwargs: dict[str, Any] | None = None
    backend_checkpoint: str | None = None
    _max_abs: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        f = self.sketch_features
        if f.ndim != 3 or f.dtype != np.float32:
            raise ValueError(f"sketch_features must be float32 (m, S, F), got {f.dtype} {f.shape}")
        g = self.gallery
        if g.ndim != 2 or g.shape[0] < 1:
            raise ValueError(f"gallery must have shape (P, d) with P >= 1, got {g.shape}")
        if not np.isfinite(g).all():
            raise ValueError("gallery contains NaN or inf")
        norms = np.linalg.norm(g.astype(np.float64), axis=1)
        if np.abs(norms - 1.0).max() > 1e-3:
            raise ValueError(
                f"gallery rows must be L2-normalised; their norms range {norms.min():.4g}..{norms.max():.4g}"
            )
        rows = np.arange(len(f)) if self.sketch_rows is None else np.asarray(self.sketch_rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0:
            raise ValueError(f"no sketches: {self.description}")
        if rows.min() < 0 or rows.max() >= len(f):
            raise ValueError(f"sketch_rows must index the {len(f)} feature rows")
        idx = np.asarray(self.photo_index, dtype=np.int64)
        if idx.shape != rows.shape:
            raise ValueError(f"photo_index has shape {idx.shape}, expected ({len(rows)},): one photo per sketch")
        if idx.min() < 0 or idx.max() >= len(g):
            raise ValueError(f"photo_index must lie in [0, {len(g)}), got [{idx.min()}, {idx.max()}]")
        self.photo_index = idx
        if self.queries is not None:
            q = self.queries
            if q.shape != (*f.shape[:2], g.shape[1]) or q.dtype != np.float32:
                raise ValueError(f"queries must be float32 {(*f.shape[:2], g.shape[1])}, got {q.dtype} {q.shape}")

    @classmethod
    def from_arrays(
        cls,
        sketch_features: np.ndarray,
        gallery: np.ndarray,
        photo_index: np.ndarray,
        queries: np.ndarray | None = None,
        description: str = "arrays",
    ) -> RetrievalData:
        """Data from arrays: features ``(n, S, F)``, an L2-normalised gallery ``(P, d)``, each sketch's
        photo ``(n,)`` and optionally the own queries ``(n, S, d)`` (for ``action="residual"``)."""
        q = None if queries is None else np.asarray(queries, dtype=np.float32)
        return cls(
            np.asarray(sketch_features, dtype=np.float32),
            np.asarray(gallery, dtype=np.float32),
            np.asarray(photo_index, dtype=np.int64),
            q,
            description=description,
        )

    # -- pickling: data loaded from a feature store pickle as their load arguments ---------------------
    def __getstate__(self) -> dict[str, Any]:
        if self.load_kwargs is None:
            return dict(self.__dict__)
        return {"load_kwargs": self.load_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if set(state) == {"load_kwargs"}:  # reopen the store (memoised: free within one process)
            state = dict(load_retrieval_data(**state["load_kwargs"]).__dict__)
        self.__dict__.update(state)

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def num_sketches(self) -> int:
        return len(self.photo_index)

    @property
    def steps(self) -> int:
        return int(self.sketch_features.shape[1])

    @property
    def feature_dim(self) -> int:
        return int(self.sketch_features.shape[2])

    @property
    def embed_dim(self) -> int:
        return int(self.gallery.shape[1])

    @property
    def gallery_size(self) -> int:
        return int(self.gallery.shape[0])

    @property
    def can_render(self) -> bool:
        return self.sketch_records is not None and self.photo_records is not None

    def rows(self, sketch: np.ndarray) -> np.ndarray:
        """Feature rows of split sketch indices."""
        return sketch if self.sketch_rows is None else self.sketch_rows[sketch]

    def max_abs_feature(self) -> float:
        """``max |f|`` over the split's features (read in chunks; memoised)."""
        if self._max_abs is None:
            rows = np.unique(self.rows(np.arange(self.num_sketches)))
            top = 0.0
            for lo in range(0, len(rows), 256):
                chunk = np.asarray(self.sketch_features[rows[lo : lo + 256]])
                if not np.isfinite(chunk).all():
                    raise ValueError(f"sketch features contain NaN or inf ({self.description})")
                top = max(top, float(np.abs(chunk).max(initial=0.0)))
            self._max_abs = top
        return self._max_abs

    def __repr__(self) -> str:
        return (
            f"RetrievalData({self.description}, n={self.num_sketches}, S={self.steps}, F={self.feature_dim}, "
            f"d={self.embed_dim}, P={self.gallery_size})"
        )


# ------------------------------------------------------------------------------------ checkpoints


def _is_path(backend: str) -> bool:
    from embeddings.base import backend_names

    return backend.lower() not in backend_names() or Path(backend).exists()


def _train_command(name: str, dataset: str, scheme: str, root: str | None, train: dict[str, Any]) -> str:
    flags = [f"--backend {name}", f"--dataset {dataset}", f"--scheme {scheme}"]
    if root:
        flags.append(f"--root {root}")
    for key in ("minutes", "epochs", "seed"):
        if train.get(key) is not None:
            flags.append(f"--{key} {train[key]:g}" if isinstance(train[key], float) else f"--{key} {train[key]}")
    return "sketch-env embed train " + " ".join(flags)


def resolve_backend_checkpoint(
    backend: str,
    dataset: str,
    scheme: str,
    root: str | None = None,
    seed: int = 0,
    train_if_missing: bool = False,
    train_options: dict[str, Any] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """The ``backend.pt`` to use (module docstring), training it first if missing and ``train_if_missing``.

    ``train_options`` are :class:`embeddings.train.TrainConfig` fields (``minutes``, ``epochs``,
    ``backend_options``, ...) for that training; default :data:`DEFAULT_TRAIN`.
    """
    if _is_path(backend):
        path = Path(backend)
        path = path / "backend.pt" if path.is_dir() else path
        if not path.is_file():
            from embeddings.base import backend_names

            raise FileNotFoundError(
                f"backend {backend!r}: no checkpoint at {path}; pass a registry name "
                f"({', '.join(backend_names())}) or the path of a backend.pt written by "
                "`sketch-env embed train`"
            )
        return path

    from embeddings.train import TrainConfig
    from sketch_env.cache import cache_dir, stable_hash

    name = backend.lower()
    train = dict(DEFAULT_TRAIN if train_options is None else train_options)
    train["seed"] = seed
    folder = f"{name}-s{seed}" if train_options is None else f"{name}-s{seed}-{stable_hash(train_options, 8)}"
    cached = cache_dir("backends") / f"{dataset}-{scheme}" / folder / "backend.pt"
    runs = TrainConfig(backend=name, dataset=dataset, seed=seed).output_dir(scheme) / "backend.pt"
    if train_options is None and runs.is_file():
        if not (runs.parent / "history.json").is_file():
            print(f"sketch_env: note: {runs} is from a training run that has not finished", file=sys.stderr)
        return runs
    if cached.is_file() and (cached.parent / "history.json").is_file():
        return cached
    command = _train_command(name, dataset, scheme, root, train)
    looked = f"./{runs} or {cached}" if train_options is None else str(cached)
    if not train_if_missing:
        raise FileNotFoundError(
            f"no trained {name!r} backend for dataset {dataset!r} (scheme {scheme!r}) at {looked}. Train one with\n"
            f"    {command}\n"
            f"or pass train_if_missing=True to train it into {cached.parent} on first use, or backend=PATH "
            "to a backend.pt."
        )
    if name in ("meta", "cvae", "caae"):
        how = (f"sketch-env embed meta-train --dataset {dataset} --scheme {scheme}" if name == "meta"
               else f"sketch-env embed train-zs --backend {name} --backbone <backbone.pt trained on {scheme}>")
        raise ValueError(f"the {name!r} backend is not trained on first use: train it with `{how}` "
                         f"(it writes {runs}) or pass backend=PATH to its backend.pt")
    if name == "b3":
        raise ValueError(
            "B3 is fine-tuned from a B1 checkpoint and is not trained on first use: train B1, then "
            "`sketch-env embed train --backend b3 --option init_from='\"<b1 run>/backend.pt\"'`, "
            "and pass backend=<b3 run>/backend.pt"
        )
    from embeddings.train import train_backend

    budget = f"{train['minutes']:g} minutes" if train.get("minutes") else f"{train.get('epochs', 30)} epochs"
    verb = "resuming the interrupted training of" if (cached.parent / "last.pt").is_file() else "training"
    print(
        f"sketch_env: no trained {name!r} backend for {dataset!r} at {looked}; {verb} it now "
        f"({budget} at most, device {train.get('device', device)}, resumable if interrupted) into {cached.parent}. "
        f"The same by hand: {command}. Then the split's features are computed once and cached.",
        file=sys.stderr,
        flush=True,
    )
    cfg = TrainConfig(
        **{
            "backend": name,
            "dataset": dataset,
            "root": root,
            "scheme": scheme,
            "device": device,
            "progress": progress,
            **train,
            "out": str(cached.parent),
        }
    )
    return train_backend(cfg)


# ----------------------------------------------------------------------------------------- loading


def load_retrieval_data(
    dataset: str | None = None,
    backend: str = "b1",
    split: str = "train",
    steps: int = 20,
    schedule: str = "points",
    data_root: str | None = None,
    scheme: str | None = None,
    distractors: bool = False,
    val_fraction: float | None = None,
    backend_seed: int = 0,
    train_if_missing: bool = False,
    train_options: dict[str, Any] | None = None,
    backend_device: str = "auto",
    progress: bool = True,
    adapt: dict[str, Any] | None = None,
) -> RetrievalData:
    """The :class:`RetrievalData` of an env spec's values (the environment's Arguments; module docstring).

    ``dataset=None`` means the dataset (and split scheme) the checkpoint records when ``backend`` is a path,
    else kanji; a named dataset evaluates the checkpoint on that dataset.

    ``adapt`` (meta backend only) runs episodes on the backend adapted to a support set
    (:func:`adapted_checkpoint`): ``{"shots": k, "steps": K, "category": name or None, "seed": s,
    "split": "train" | "test"}``.

    Memoised per process on the arguments and the checkpoint file's size and modification time.
    """
    from sketch_env.datasets import NEEDS_ROOT, make_dataset

    if split not in ENV_SPLITS:
        raise ValueError(f"split must be one of {ENV_SPLITS}, got {split!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    backend = str(backend)
    if dataset is None and not _is_path(backend):
        dataset = "kanji"
    if dataset is not None and dataset.lower() in NEEDS_ROOT and data_root is None:
        raise ValueError(
            f"dataset {dataset!r} is read from your disk: pass data_root=PATH "
            f"(e.g. gym.make(..., data_root='/data/ShoeV2') for QMUL-Shoe-V2: the folder holding "
            f"ShoeV2_Coordinate and photo/)"
        )
    kwargs = dict(
        dataset=dataset,
        backend=backend,
        split=split,
        steps=int(steps),
        schedule=schedule,
        data_root=None if data_root is None else str(data_root),
        scheme=scheme,
        distractors=bool(distractors),
        val_fraction=val_fraction,
        backend_seed=int(backend_seed),
        train_if_missing=bool(train_if_missing),
        train_options=train_options,
        backend_device=backend_device,
        progress=progress,
        adapt=None if adapt is None else dict(adapt),
    )

    if _is_path(backend):
        checkpoint = resolve_backend_checkpoint(backend, "", "")
    else:
        ds = make_dataset(dataset, root=data_root, **({"scheme": scheme} if scheme else {}))
        checkpoint = resolve_backend_checkpoint(
            backend,
            ds.name,
            ds.scheme,
            root=data_root,
            seed=backend_seed,
            train_if_missing=train_if_missing,
            train_options=train_options,
            device=backend_device,
            progress=progress,
        )
        dataset, scheme = ds.name, ds.scheme
    if adapt is not None:
        checkpoint = adapted_checkpoint(checkpoint, adapt, dataset=dataset, data_root=kwargs["data_root"],
                                        scheme=scheme, device=backend_device)
    checkpoint = checkpoint.resolve()
    stat = checkpoint.stat()
    memo_key = (
        str(checkpoint),
        stat.st_mtime_ns,
        stat.st_size,
        dataset,
        kwargs["data_root"],
        scheme,
        split,
        int(steps),
        schedule,
        bool(distractors),
        val_fraction,
    )
    if memo_key in _MEMO:
        _MEMO.move_to_end(memo_key)
        return _MEMO[memo_key]

    from embeddings.store import gallery_embeddings, open_backend_store
    from sketch_env.schedule import make_schedule

    store_split = "test" if split == "test" else "train"
    net, ds, store = open_backend_store(
        checkpoint,
        store_split,
        steps=steps,
        schedule=schedule,
        dataset=dataset,
        root=kwargs["data_root"],
        scheme=scheme,
        device=backend_device,
        progress=progress,
    )
    photos = ds.photos(store_split)
    records = ds.sketches(store_split)
    if split == "test":
        keep = np.ones(len(photos), dtype=bool)
    else:
        if val_fraction is None:
            val_fraction = float((net.config.get("train_split") or {}).get("val_fraction", 0.05))
        from embeddings.train import validation_mask

        held_out = validation_mask([p.instance for p in photos], val_fraction)
        keep = held_out if split == "val" else ~held_out
    photo_ids = np.flatnonzero(keep)
    sketch_rows = np.flatnonzero(keep[store.photo_index])
    if len(sketch_rows) == 0:
        raise ValueError(
            f"split {split!r} of {ds.name} ({ds.scheme}) has no sketches: {len(photo_ids)} of "
            f"{len(photos)} photos selected (val_fraction={val_fraction})"
        )
    remap = np.full(len(photos), -1, dtype=np.int64)
    remap[photo_ids] = np.arange(len(photo_ids))
    gallery = [np.asarray(store.gallery)[photo_ids]]
    photo_records = [photos[i] for i in photo_ids]
    if distractors:
        others = np.flatnonzero(~keep)
        gallery.append(np.asarray(store.gallery)[others])
        photo_records += [photos[i] for i in others]
        other_split = "train" if store_split == "test" else "test"
        gallery.append(gallery_embeddings(net, ds, other_split, progress=progress))
        photo_records += list(ds.photos(other_split))
    data = RetrievalData(
        sketch_features=store.sketch_features,
        gallery=np.ascontiguousarray(np.concatenate(gallery), dtype=np.float32),
        photo_index=remap[store.photo_index[sketch_rows]],
        queries=store.queries,
        sketch_rows=sketch_rows,
        description=f"{ds.name}/{ds.scheme}/{split}{' +distractors' if distractors else ''} ({checkpoint})",
        dataset=ds,
        sketch_records=[records[i] for i in sketch_rows],
        photo_records=photo_records,
        schedule=make_schedule(schedule, steps),
        render_config=net.render_config,
        load_kwargs=kwargs,
        backend_checkpoint=str(checkpoint),
    )
    _MEMO[memo_key] = data
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return data


_ADAPT_KEYS = {"shots": 5, "steps": None, "category": None, "seed": 0, "split": "train"}


def adapted_checkpoint(checkpoint: str | Path, adapt: dict[str, Any], dataset: str | None = None,
                       data_root: str | None = None, scheme: str | None = None, device: str = "auto") -> Path:
    """The checkpoint of the meta backend ``checkpoint`` adapted to a support set, made on first use and
    cached (written atomically) under ``$SKETCH_ENV_CACHE/backends/adapted/``, keyed by the backend's
    fingerprint and ``adapt``.

    ``adapt``: ``shots`` (k, 5) support sketches of distinct photos, drawn by ``seed`` (0) from split
    ``split`` (``"train"`` or ``"test"``) among the sketches of ``category`` (None: of the whole split), as
    :func:`embeddings.meta_train.adaptation_tasks` draws them; the photos of that category (or split) are
    the unlabelled gallery of negatives; ``steps`` inner steps (None: the backend's ``inner_steps``).
    """
    from embeddings.base import load_backend
    from embeddings.meta import MetaBackend
    from embeddings.meta_train import adaptation_tasks
    from embeddings.train import resolve_device
    from sketch_env.cache import cache_dir, stable_hash
    from sketch_env.datasets import make_dataset
    from sketch_env.render import render_sketch

    unknown = set(adapt) - set(_ADAPT_KEYS)
    if unknown:
        raise ValueError(f"adapt: unknown key(s) {sorted(unknown)}; it takes {sorted(_ADAPT_KEYS)}")
    spec = {**_ADAPT_KEYS, **adapt}
    if spec["split"] not in ("train", "test"):
        raise ValueError(f"adapt: split must be 'train' or 'test', got {spec['split']!r}")
    net = load_backend(checkpoint, device=str(resolve_device(device)))
    if not isinstance(net, MetaBackend):
        raise ValueError(f"adapt= needs the meta backend; {checkpoint} holds {net.name!r}")
    ds = make_dataset(dataset or net.config["dataset"], root=data_root,
                      **({"scheme": scheme or net.config["scheme"]}))
    key = stable_hash({"backend": net.fingerprint(), "dataset": ds.name, "scheme": ds.scheme, "adapt": spec}, 16)
    out = cache_dir("backends") / "adapted" / key / "backend.pt"
    if out.is_file():
        return out
    level = "category" if spec["category"] is not None else "style"
    tasks = adaptation_tasks(ds, int(spec["shots"]), int(spec["seed"]), split=spec["split"], level=level)
    if spec["category"] is not None:
        tasks = [t for t in tasks if t.name == spec["category"]]
        if not tasks:
            cats = sorted({p.category for p in ds.photos(spec["split"])})
            raise ValueError(f"adapt: no category {spec['category']!r} in the {spec['split']} split of {ds.name} "
                             f"({ds.scheme}); it has {', '.join(cats[:20])}{' ...' if len(cats) > 20 else ''}")
    task = tasks[0]
    records = ds.sketches(spec["split"])
    photos = ds.photos(spec["split"])
    sketch_photo = ds.photo_index(spec["split"])
    rasters = np.stack([render_sketch(records[sid].sketch, net.render_config) for sid in task.support])
    support_photos = ds.load_photos([photos[i] for i in sketch_photo[task.support]], net.photo_size)
    gallery = ds.load_photos([photos[i] for i in task.gallery], net.photo_size)
    adapted = net.adapt((rasters, support_photos), steps=spec["steps"], gallery=gallery,
                        description=f"{ds.name}/{ds.scheme}/{spec['split']} {task.name}: {spec}")
    adapted.save(out, extra={"source_checkpoint": str(checkpoint)})
    return out
