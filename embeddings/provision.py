"""Provisioning: from an env spec's plain values to the data an environment runs on.

The environments (:mod:`sketch_env.envs`) step arrays: a :class:`~sketch_env.envs.data.RetrievalData` of
one split. This module makes one from names, which is what the registered ids and ``gym.make`` pass:
:func:`load_retrieval_data` finds the backend checkpoint (it never trains one), opens its feature store
(:func:`embeddings.store.open_backend_store`, built on first use with a progress bar), selects the split's
sketches and photos and adds distractor photos; :func:`adapted_checkpoint` adapts a meta backend to a
support set first. The registered ids' entry points are this module's factories
(:func:`make_retrieval_env`, :func:`make_retrieval_vector_env`, :func:`make_stroke_order_env`): they
provision the data, then build the env from it, so the env modules import only the backend interface and
the data object while env specs stay JSON.

Results are memoised per process, so the N single envs of a ``SyncVectorEnv`` load once.

**Backend checkpoints.** ``backend`` is a path (a ``backend.pt`` or the run folder holding it) or a
registry name (``ts``, ``b1``, ``b2``, ``b3``, ...) looked up, in order, as

1. the checkpoint the package ships (``embeddings/pretrained/<dataset>-<scheme>-<name>-s<seed>.pt``: the
   kanji instance-split B1 and B2, and the synthetic B1 of the tests);
2. the one ``sketch-env embed train`` writes by default, in the per-user data folder
   (``<data>/backends/<dataset>-<scheme>/<name>-s<seed>/backend.pt``, :func:`sketch_env.cache.data_dir`),
   once its training finished.

Never relative to the working directory, and never trained on first use: a missing backend is an error that
names the command training it.

**Splits.** ``"train"`` and ``"val"`` come from the dataset's training split: ``"val"`` is the part the
backend held out for validation (photos with ``stable_fraction(name, "val") < val_fraction``, the
backend's own ``val_fraction``; :func:`embeddings.train.validation_mask`) and their sketches, ``"train"``
the rest; so the backend never trained on ``"val"`` and agents can select checkpoints on it. ``"test"``
is the dataset's test split. The gallery holds the split's photos; ``distractors=True`` appends all other
photos of the dataset (the README's "all photos" gallery), so the true photo indices are unchanged.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import backend_names, load_backend, training_command
from sketch_env.cache import cache_dir, data_dir, stable_hash
from sketch_env.datasets import NEEDS_ROOT, make_dataset
from sketch_env.device import resolve_device
from sketch_env.envs.data import ENV_SPLITS, RetrievalData
from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv
from sketch_env.errors import ArgumentError

__all__ = ["load_retrieval_data", "resolve_backend_checkpoint", "adapted_checkpoint", "pretrained_checkpoint",
           "user_backend_dir",
           "DATA_ARGUMENTS", "make_retrieval_env", "make_retrieval_vector_env", "make_stroke_order_env",
           "env_argument_names", "check_env_kwargs", "check_data_arguments"]


_MEMO: OrderedDict[tuple, RetrievalData] = OrderedDict()
_MEMO_SIZE = 4


# ------------------------------------------------------------------------------------ checkpoints


def _is_path(backend: str) -> bool:
    return backend.lower() not in backend_names() or Path(backend).exists()


def pretrained_checkpoint(name: str, dataset: str, scheme: str, seed: int = 0) -> Path:
    """Where the package would ship backend ``name`` trained on ``dataset`` / ``scheme`` with ``seed``
    (``embeddings/pretrained/<dataset>-<scheme>-<name>-s<seed>.pt``; the model cards beside them)."""
    return Path(str(resources.files("embeddings").joinpath("pretrained"))) / f"{dataset}-{scheme}-{name}-s{seed}.pt"


def user_backend_dir(name: str, dataset: str, scheme: str, seed: int = 0) -> Path:
    """The run folder ``sketch-env embed train`` writes backend ``name`` to by default, in the per-user data
    folder (:func:`sketch_env.cache.data_dir`): ``backends/<dataset>-<scheme>/<name>-s<seed>``."""
    return data_dir("backends") / f"{dataset}-{scheme}" / f"{name}-s{seed}"


def resolve_backend_checkpoint(backend: str, dataset: str, scheme: str, root: str | None = None, seed: int = 0) -> Path:
    """The ``backend.pt`` a backend argument means (module docstring); nothing is ever trained here.

    A path (a ``backend.pt`` or its run folder) is that file. A registry name resolves to the checkpoint
    the package ships for ``dataset`` / ``scheme`` / ``seed``, else to the run folder ``sketch-env embed
    train`` writes by default (:func:`user_backend_dir`, once its training finished). Missing, it is a
    FileNotFoundError naming the command that trains it.
    """
    if _is_path(backend):
        path = Path(backend)
        path = path / "backend.pt" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"backend {backend!r}: no checkpoint at {path}; pass a registry name "
                f"({', '.join(backend_names())}) or the path of a backend.pt written by "
                "`sketch-env embed train`"
            )
        return path
    name = backend.lower()
    shipped = pretrained_checkpoint(name, dataset, scheme, seed)
    if shipped.is_file():
        return shipped
    trained = user_backend_dir(name, dataset, scheme, seed) / "backend.pt"
    if trained.is_file() and (trained.parent / "history.json").is_file():
        return trained
    unfinished = " (a training there has not finished: run the command again to resume it)" if trained.is_file() else ""
    command = training_command(name, dataset, scheme, root, f"--seed {seed}" if seed else "")
    raise FileNotFoundError(
        f"no trained {name!r} backend for dataset {dataset!r} (scheme {scheme!r}, seed {seed}): the package ships "
        f"none, and there is none at {trained}{unfinished}. Train it with `{command}`, which writes it there, "
        "or pass backend=PATH to a backend.pt"
    )


# ----------------------------------------------------------------------------------------- loading


def _split_selection(photo_names: list[str], store_photo_index: np.ndarray, split: str, val_fraction: float | None,
                     train_split: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, sketch_rows)``: which of the store's photos form the split's gallery (bool), and the store rows
    of the split's sketches (those of kept photos). ``"val"`` is what the backend held out (``train_split``,
    recorded in its checkpoint), unless ``val_fraction`` overrides its fraction."""
    if split == "test":
        keep = np.ones(len(photo_names), dtype=bool)
    else:
        from embeddings.train import validation_mask

        fraction = float(train_split.get("val_fraction", 0.05)) if val_fraction is None else val_fraction
        held_out = validation_mask(photo_names, fraction, int(train_split.get("val_min_photos", 0)))
        keep = held_out if split == "val" else ~held_out
    return keep, np.flatnonzero(keep[store_photo_index])


#: the longest schedule an env may ask for (the feature store holds S rasters per sketch)
MAX_STEPS = 1000


def check_data_arguments(split: Any = "train", steps: Any = 20, schedule: Any = "points", val_fraction: Any = None,
                         backend_seed: Any = 0, distractors: Any = False, progress: Any = True,
                         **names: Any) -> None:
    """Types and ranges of the data arguments (:func:`load_retrieval_data`'s), before any work starts; the
    naming ones (``dataset``, ``backend``, ``data_root``, ...) are checked where they are resolved."""
    from sketch_env.envs.engine import is_count, is_real
    from sketch_env.schedule import SCHEDULES

    if split not in ENV_SPLITS:
        raise ArgumentError(f"split must be one of {ENV_SPLITS}, got {split!r}")
    if not is_count(steps) or steps > MAX_STEPS:
        raise ArgumentError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
    if schedule not in SCHEDULES:
        raise ArgumentError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if val_fraction is not None and not (is_real(val_fraction) and 0 < val_fraction < 1):
        raise ArgumentError(f"val_fraction must be None or a number in (0, 1), got {val_fraction!r}")
    if not is_count(backend_seed, 0):
        raise ArgumentError(f"backend_seed must be an integer >= 0, got {backend_seed!r}")
    for name, value in (("distractors", distractors), ("progress", progress)):
        if not isinstance(value, (bool, np.bool_)):
            raise ArgumentError(f"{name} must be True or False, got {value!r}")


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
    backend_device: str = "auto",
    progress: bool = True,
    adapt: dict[str, Any] | None = None,
    precompute: bool | None = None,
) -> RetrievalData:
    """The :class:`RetrievalData` of an env spec's values (the environment's Arguments; module docstring).

    ``dataset=None`` means the dataset (and split scheme) the checkpoint records when ``backend`` is a path,
    else kanji; a named dataset evaluates the checkpoint on that dataset.

    ``adapt`` (meta backend only) runs episodes on the backend adapted to a support set
    (:func:`adapted_checkpoint`): ``{"shots": k, "steps": K, "category": name or None, "seed": s,
    "split": "train" | "test"}``.

    ``precompute``: True computes the features of every (sketch, step) of the split now and caches them on
    disk (the feature store: what a training wants); False computes each sketch's on first use, in memory;
    None (default) uses the cached store if there is one, else computes on first use, so that making an env
    never waits for a whole split.

    Memoised per process on the arguments and the checkpoint file's size and modification time.
    """
    check_data_arguments(split, steps, schedule, val_fraction, backend_seed, distractors, progress)
    if precompute not in (None, True, False):
        raise ArgumentError(f"precompute must be None, True or False, got {precompute!r}")
    backend = str(backend)
    if dataset is None and not _is_path(backend):
        dataset = "kanji"
    if dataset is not None and dataset.lower() in NEEDS_ROOT and data_root is None:
        raise ArgumentError(
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
        backend_device=backend_device,
        progress=progress,
        adapt=None if adapt is None else dict(adapt),
        precompute=precompute,
    )

    if _is_path(backend):
        checkpoint = resolve_backend_checkpoint(backend, "", "")
    else:
        ds = make_dataset(dataset, root=data_root, **({"scheme": scheme} if scheme else {}))
        checkpoint = resolve_backend_checkpoint(backend, ds.name, ds.scheme, root=data_root, seed=backend_seed)
        dataset, scheme = ds.name, ds.scheme
    if adapt is not None:
        checkpoint = adapted_checkpoint(checkpoint, adapt, dataset=dataset, data_root=kwargs["data_root"],
                                        scheme=scheme, device=backend_device)
    checkpoint = checkpoint.resolve()
    stat = checkpoint.stat()
    memo_key = (str(checkpoint), stat.st_mtime_ns, stat.st_size, dataset, kwargs["data_root"], scheme, split,
                int(steps), schedule, bool(distractors), val_fraction, precompute)
    if memo_key in _MEMO:
        _MEMO.move_to_end(memo_key)
        return _MEMO[memo_key]
    data = _build_data(checkpoint, kwargs, dataset, scheme)
    _MEMO[memo_key] = data
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return data


def _build_data(checkpoint: Path, kwargs: dict[str, Any], dataset: str | None, scheme: str | None) -> RetrievalData:
    """Open the feature store of ``checkpoint`` and cut the split's arrays out of it."""
    from types import SimpleNamespace

    from embeddings.store import (
        LazyFeatures,
        backend_and_dataset,
        cached_feature_store,
        gallery_embeddings,
        open_feature_store,
    )
    from sketch_env.schedule import make_schedule

    split, steps, schedule = kwargs["split"], kwargs["steps"], kwargs["schedule"]
    store_split = "test" if split == "test" else "train"
    net, ds = backend_and_dataset(checkpoint, dataset, kwargs["data_root"], scheme, kwargs["backend_device"])
    sched = make_schedule(schedule, steps)
    photos = ds.photos(store_split)
    records = ds.sketches(store_split)
    precompute = kwargs["precompute"]
    store = None if precompute else cached_feature_store(net, ds, store_split, sched)
    if store is None and precompute is False or store is None and precompute is None:
        # no store on disk: features computed per sketch on first use (the env starts at once)
        lazy = LazyFeatures(net, [r.sketch for r in records], sched, progress=kwargs["progress"])
        store = SimpleNamespace(sketch_features=lazy.sketch_features, queries=lazy.queries,
                                gallery=gallery_embeddings(net, ds, store_split, progress=kwargs["progress"]),
                                photo_index=np.asarray(ds.photo_index(store_split), dtype=np.int64))
    elif store is None:  # precompute=True: every feature computed now and cached on disk
        store = open_feature_store(net, ds, store_split, sched, progress=kwargs["progress"])
    train_split = dict(net.config.get("train_split") or {})
    keep, sketch_rows = _split_selection([p.instance for p in photos], store.photo_index, split,
                                         kwargs["val_fraction"], train_split)
    photo_ids = np.flatnonzero(keep)
    if len(sketch_rows) == 0:
        raise ArgumentError(
            f"split {split!r} of {ds.name} ({ds.scheme}) has no sketches: {len(photo_ids)} of "
            f"{len(photos)} photos selected (the backend's held-out photos: {train_split})"
        )
    remap = np.full(len(photos), -1, dtype=np.int64)
    remap[photo_ids] = np.arange(len(photo_ids))
    gallery = [np.asarray(store.gallery)[photo_ids]]
    photo_records = [photos[i] for i in photo_ids]
    if kwargs["distractors"]:
        others = np.flatnonzero(~keep)
        gallery.append(np.asarray(store.gallery)[others])
        photo_records += [photos[i] for i in others]
        other_split = "train" if store_split == "test" else "test"
        gallery.append(gallery_embeddings(net, ds, other_split, progress=kwargs["progress"]))
        photo_records += list(ds.photos(other_split))
    return RetrievalData(
        sketch_features=store.sketch_features,
        gallery=np.ascontiguousarray(np.concatenate(gallery), dtype=np.float32),
        photo_index=remap[store.photo_index[sketch_rows]],
        queries=store.queries,
        sketch_rows=sketch_rows,
        description=f"{ds.name}/{ds.scheme}/{split}{' +distractors' if kwargs['distractors'] else ''} ({checkpoint})",
        dataset=ds,
        sketch_records=[records[i] for i in sketch_rows],
        photo_records=photo_records,
        schedule=sched,
        render_config=net.render_config,
        load_kwargs=kwargs,
        loader=load_retrieval_data,
        backend_checkpoint=str(checkpoint),
        backend=net,
    )


#: the arguments that say which data an env reads (:func:`load_retrieval_data`)
DATA_ARGUMENTS = tuple(inspect.signature(load_retrieval_data).parameters)

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
    from embeddings.meta_train import adaptation_tasks
    from sketch_env.render import render_sketch

    unknown = set(adapt) - set(_ADAPT_KEYS)
    if unknown:
        raise ArgumentError(f"adapt: unknown key(s) {sorted(unknown)}; it takes {sorted(_ADAPT_KEYS)}")
    spec = {**_ADAPT_KEYS, **adapt}
    if spec["split"] not in ("train", "test"):
        raise ArgumentError(f"adapt: split must be 'train' or 'test', got {spec['split']!r}")
    net = load_backend(checkpoint, device=str(resolve_device(device)))
    if not callable(getattr(net, "adapt", None)):
        raise ArgumentError(f"adapt= needs a backend that adapts to a support set (the meta backend); "
                         f"{checkpoint} holds {net.name!r}")
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
            raise ArgumentError(f"adapt: no category {spec['category']!r} in the {spec['split']} split of {ds.name} "
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


# --------------------------------------------------------------------------------- env factories

#: arguments that would start work (training a backend), which older versions took; a file may not ask for them
_WORK_ARGUMENTS = ("train_if_missing", "train_options")


def env_argument_names() -> tuple[str, ...]:
    """Every keyword a retrieval env id takes: the data arguments and the single and batched envs' own."""
    from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv
    from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv

    names = dict.fromkeys((*DATA_ARGUMENTS, *OnTheFlyRetrievalEnv.argument_names(),
                           *OnTheFlyRetrievalVectorEnv.argument_names()))
    return tuple(n for n in names if n != "data")


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return not isinstance(value, float) or np.isfinite(value)
    if isinstance(value, list):
        return len(value) <= 1000 and all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def check_env_kwargs(kwargs: Any, from_file: bool = False) -> dict[str, Any]:
    """``kwargs`` if they are keyword arguments a retrieval env id takes, as plain JSON values; else an
    :class:`ArgumentError` naming the offending ones (arguments that would start work, such as training a
    backend, first). ``from_file``: they were read from a file someone else may have made (an agent zip)."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ArgumentError(f"env arguments must be a mapping of names, got {type(kwargs).__name__}")
    work = sorted(set(kwargs) & set(_WORK_ARGUMENTS))
    if work:
        raise ArgumentError(f"env argument(s) {work} would start work (training a backend): an env never trains; "
                            "train the backend with its command (sketch-env embed train) and pass backend=NAME or PATH")
    unknown = sorted(set(kwargs) - set(env_argument_names()))
    if unknown:
        raise ArgumentError(f"unknown env argument(s) {unknown}; the env takes {', '.join(env_argument_names())}")
    bad = sorted(k for k, v in kwargs.items() if not _plain(v))
    if bad:
        raise ArgumentError(f"env argument(s) {bad} are not plain JSON values (names, numbers, lists, mappings)")
    return kwargs


def _split_env_kwargs(kwargs: dict[str, Any], option_names: tuple[str, ...], what: str
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data kwargs, env kwargs)``; an argument of neither kind is a TypeError listing both."""
    unknown = set(kwargs) - set(DATA_ARGUMENTS) - set(option_names)
    if unknown:
        known = sorted(set(DATA_ARGUMENTS) | set(option_names))
        raise ArgumentError(f"unknown argument(s) {sorted(unknown)}; the {what} takes {', '.join(known)}")
    data = {k: v for k, v in kwargs.items() if k in DATA_ARGUMENTS}
    return data, {k: v for k, v in kwargs.items() if k not in DATA_ARGUMENTS}


def make_retrieval_env(**kwargs: Any):
    """The entry point of the ``SketchEnv/OnTheFly-*`` ids: provision the data (:func:`load_retrieval_data`)
    and build :class:`~sketch_env.envs.retrieval.OnTheFlyRetrievalEnv` from it (the env's Arguments)."""
    if kwargs.get("data") is not None:
        return OnTheFlyRetrievalEnv(**kwargs)
    data_kwargs, env_kwargs = _split_env_kwargs(kwargs, OnTheFlyRetrievalEnv.argument_names(), "retrieval env")
    return OnTheFlyRetrievalEnv(data=load_retrieval_data(**data_kwargs), **env_kwargs)


make_retrieval_env.metadata = OnTheFlyRetrievalEnv.metadata  # what gym.make reads (render modes)


def make_retrieval_vector_env(num_envs: int = 1, **kwargs: Any):
    """The vector entry point of the ids: the data, then
    :class:`~sketch_env.envs.vector.OnTheFlyRetrievalVectorEnv` of ``num_envs`` envs."""
    from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv

    if kwargs.get("data") is not None:
        return OnTheFlyRetrievalVectorEnv(num_envs, **kwargs)
    data_kwargs, env_kwargs = _split_env_kwargs(kwargs, OnTheFlyRetrievalVectorEnv.argument_names(),
                                                "batched retrieval env")
    return OnTheFlyRetrievalVectorEnv(num_envs, data=load_retrieval_data(**data_kwargs), **env_kwargs)


def make_stroke_order_env(**kwargs: Any):
    """The stroke-order game (:class:`~sketch_env.envs.stroke_order.StrokeOrderParallelEnv`) on the data of
    the single env's data arguments; only the gallery, the split's records and the backend are read."""
    from sketch_env.envs.stroke_order import StrokeOrderParallelEnv

    if kwargs.get("data") is not None:
        return StrokeOrderParallelEnv(**kwargs)
    data_kwargs, env_kwargs = _split_env_kwargs(kwargs, StrokeOrderParallelEnv.argument_names(), "stroke-order env")
    data_kwargs["steps"] = 1  # features of arbitrary stroke subsets are computed on the fly, not read
    return StrokeOrderParallelEnv(data=load_retrieval_data(**data_kwargs), **env_kwargs)
