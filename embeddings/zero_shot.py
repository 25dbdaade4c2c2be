"""Training for zero-shot SBIR over frozen backbone features: the CVAE / CAAE backends, and the small heads
behind the baseline rows of the paper's table.

Features. A split's pooled backbone features are computed once and cached: the sketches' through the
feature store (:func:`embeddings.store.open_feature_store` with the backbone, one array per step of a
``PointSchedule(steps)``; ``steps = 1`` is the complete sketch), the photos' with
:func:`embeddings.cvae.backbone_photo_features` into an ``.npz`` written atomically and keyed by the
backbone's fingerprint and the split's photo list (:func:`sketch_env.cache.cached_npz`).

Training pairs are (sketch feature, feature of its photo) from the training split, which under a
category split scheme holds none of the unseen categories; with ``steps = S`` every partial sketch of the
schedule is a pair of its own. Every model here trains the same way, the paper's CVAE settings: Adam
(lr 2e-4, beta_1 0.5), batches of 128, 25 epochs, no model selection (the test categories are never
looked at).

Heads behind the non-generative rows (each small, on the frozen features, so a table trains in minutes):

* :func:`fit_category_head` with ``loss="contrastive"``: **Siamese**, one MLP shared by both domains with
  the contrastive loss on categories, ``L = mean_pos d^2 + mean_neg max(0, m - d)^2`` (``m = 1``) over all
  sketch-photo pairs of a batch, a pair positive when the categories agree;
* ``loss="triplet"``: **coarse-grained triplet**, one MLP per domain, batch-all triplet loss with
  category-level positives, ``mean_active max(0, m + d(s, p+) - d(s, p-))`` (``m = 0.2``);
* :func:`fit_regression`: **direct regression**, an MLP F -> F/2 -> F from the sketch feature to its
  photo's feature, ``L = ||r(s) - x||^2``.

Batches for the category losses hold 32 categories x 4 sketches and 4 photos of each (drawn with
replacement from the category's items).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embeddings.base import BackendMismatchError, load_backend, make_backend
from embeddings.cvae import CVAEBackend, backbone_photo_features, unit_rms
from embeddings.losses import category_triplet_loss, contrastive_loss
from embeddings.store import open_feature_store
from embeddings.triplet import TripletBackend
from sketch_env.cache import cache_dir, cached_npz, stable_hash, write_json
from sketch_env.config import check_config
from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import SketchDataset
from sketch_env.errors import ArgumentError
from sketch_env.log import logger
from sketch_env.runs import run_lock
from sketch_env.schedule import PointSchedule

__all__ = [
    "SplitFeatures",
    "split_features",
    "ZeroShotTrainConfig",
    "fit_cvae",
    "train_zero_shot",
    "EmbeddingHead",
    "fit_category_head",
    "fit_regression",
]


# ----------------------------------------------------------------------------- features


@dataclass
class SplitFeatures:
    """A split's frozen backbone features.

    Attributes:
        sketch: float32 ``(n, S, F)`` pooled sketch features per step (a read-only memory map).
        photo: float32 ``(P, F)`` pooled photo features.
        photo_index: int64 ``(n,)`` each sketch's photo.
        sketch_category, photo_category: int64 ``(n,)`` / ``(P,)`` indices into ``categories``.
        categories: the category names.
        fg_queries, fg_gallery: the backbone's own queries ``(n, S, d)`` and gallery ``(P, d)`` (its
            fine-grained triplet embedding), from the same feature store.
    """

    sketch: np.ndarray
    photo: np.ndarray
    photo_index: np.ndarray
    sketch_category: np.ndarray
    photo_category: np.ndarray
    categories: list[str]
    fg_queries: np.ndarray
    fg_gallery: np.ndarray


def split_features(
    backbone: TripletBackend, dataset: SketchDataset, split: str, steps: int = 1, progress: bool = True
) -> SplitFeatures:
    """The pooled backbone features of ``split`` (cached; see the module docstring)."""
    store = open_feature_store(backbone, dataset, split, PointSchedule(steps), progress=progress)
    photos = dataset.photos(split)
    key = stable_hash(
        {
            "v": 1,
            "backbone": backbone.fingerprint(),
            "dataset": dataset.name,
            "scheme": dataset.scheme,
            "root": str(getattr(dataset, "root", None)),
            "split": split,
            "size": backbone.photo_size,
            "photos": [f"{p.instance}\x00{p.source}" for p in photos],
        }
    )

    def build() -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        out = np.empty((len(photos), backbone.feature_dim), dtype=np.float32)
        for lo in tqdm(
            range(0, len(photos), 512), desc=f"photo features {dataset.name}/{split}", disable=not progress, leave=False
        ):
            images = dataset.load_photos(photos[lo : lo + 512], backbone.photo_size)
            out[lo : lo + len(images)] = backbone_photo_features(backbone, images)
        return {"photo": out}

    photo = cached_npz(cache_dir("zero_shot") / f"photo-features-{key}.npz", key, build, required=("photo",))["photo"]
    categories = sorted({p.category for p in photos} | {r.category for r in dataset.sketches(split)})
    index = {c: i for i, c in enumerate(categories)}
    return SplitFeatures(
        sketch=store.sketch_features,
        photo=photo,
        photo_index=np.asarray(store.photo_index),
        sketch_category=np.array([index[r.category] for r in dataset.sketches(split)], dtype=np.int64),
        photo_category=np.array([index[p.category] for p in photos], dtype=np.int64),
        categories=categories,
        fg_queries=store.queries,
        fg_gallery=store.gallery,
    )


def _pairs(feats: SplitFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs: every (sketch, step) feature with its photo's feature, both ``(n S, F)``."""
    n, steps, dim = feats.sketch.shape
    sketch = np.asarray(feats.sketch, dtype=np.float32).reshape(n * steps, dim)
    photo = feats.photo[np.repeat(feats.photo_index, steps)]
    return sketch, photo


# ----------------------------------------------------------------------------- CVAE / CAAE


@dataclass
class ZeroShotTrainConfig:
    """Options of ``sketch-env embed train-zs`` (each also a CLI flag)."""

    backend: str = "cvae"
    """cvae | caae"""
    backbone: str = ""
    """the frozen backbone checkpoint (trained on the same dataset and scheme, without the unseen categories)"""
    root: str | None = None
    """data folder for datasets read from disk (the dataset and scheme are the backbone's)"""
    out: str | None = None
    """output folder (default: beside the backbone's, <backend>-s<seed>-<backbone folder>)"""
    epochs: int = 25
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    device: str = "auto"
    steps: int = 1
    """training sketches: 1 = complete only (the paper); S = every step of an S-step schedule"""
    progress: bool = True
    threads: int | None = None
    """torch CPU threads (None: torch's default); 1 is fastest for these small models on a busy CPU"""
    backend_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the backend's configuration (e.g. {"regression_weight": 0}, {"samples": 50})"""

    def __post_init__(self) -> None:
        check_config(self, {"epochs": (1, 10**6), "batch_size": (2, 1 << 16), "lr": (0, 10), "beta1": (0, 1),
                            "seed": (0, None), "steps": (1, 1000), "threads": (1, 1024)})

    def output_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        folder = Path(self.backbone).resolve().parent
        return folder.parent / f"{self.backend}-s{self.seed}-{folder.name}"


def _adam(params, lr: float, beta1: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))


def fit_cvae(
    backend: CVAEBackend,
    sketch: np.ndarray,
    photo: np.ndarray,
    epochs: int = 25,
    batch_size: int = 128,
    lr: float = 2e-4,
    beta1: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``backend.model`` on paired raw features ``sketch``, ``photo`` ``(N, F)`` (scaled by
    :func:`~embeddings.cvae.unit_rms` here); returns one row of mean loss terms per epoch.

    The CAAE alternates a discriminator step and an autoencoder step on every batch.
    """
    from tqdm.auto import tqdm

    if len(sketch) != len(photo) or len(sketch) < 2:
        raise ArgumentError(f"need >= 2 paired features, got {len(sketch)} sketches and {len(photo)} photos")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, device, cfg = backend.model, backend.device, backend.config
    s_all = torch.from_numpy(unit_rms(sketch)).to(device)
    x_all = torch.from_numpy(unit_rms(photo)).to(device)
    disc = model.discriminator
    main_params = [p for name, p in model.named_parameters() if not name.startswith("discriminator.")]
    opt = _adam(main_params, lr, beta1)
    opt_d = _adam(disc.parameters(), lr, beta1) if disc is not None else None
    batch = min(batch_size, len(sketch))
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(sketch))).to(device)
        sums: dict[str, float] = {}
        n_batches = max(1, len(sketch) // batch)  # full batches only: BatchNorm needs > 1 sample
        bar = tqdm(
            range(n_batches),
            desc=f"{backend.name} ep{epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        for i in bar:
            ids = order[i * batch : (i + 1) * batch]
            terms = model.losses(x_all[ids], s_all[ids], cfg["regression_weight"], cfg["prior_weight"])
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            if opt_d is not None:
                d_loss = model.discriminator_loss(terms["z"])
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                terms["discriminator"] = d_loss
            for k, v in terms.items():
                if k != "z":
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{sums['total'] / (i + 1):.3f}")
        history.append({"epoch": epoch + 1, **{k: v / n_batches for k, v in sums.items()}})
    model.eval()
    return history


def train_zero_shot(cfg: ZeroShotTrainConfig) -> Path:
    """Train a ``cvae`` / ``caae`` backend on the backbone's training split; returns ``<out>/backend.pt``.

    The dataset and split scheme are the backbone's (``dataset``, ``scheme`` of its configuration), so the
    generative model never sees a category the backbone did not. Training takes a minute or two on a CPU
    and is not resumable; the checkpoint and ``history.json`` are written atomically at the end.
    """
    from sketch_env.device import resolve_device

    if cfg.backend not in ("cvae", "caae"):
        raise ArgumentError(f"train-zs trains 'cvae' or 'caae', got {cfg.backend!r}")
    if not cfg.backbone:
        raise ArgumentError("train-zs needs --backbone PATH, the frozen backbone checkpoint")
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(max(1, cfg.threads))
    backbone = load_backend(cfg.backbone)
    ds_name, scheme = backbone.config.get("dataset"), backbone.config.get("scheme")
    if not ds_name:
        raise BackendMismatchError(f"{cfg.backbone}: the checkpoint does not record the dataset it was trained on")
    dataset = make_dataset(ds_name, root=cfg.root, **({"scheme": scheme} if scheme else {}))
    options = dict(cfg.backend_options)
    options.update(
        backbone=cfg.backbone,
        dataset=dataset.name,
        scheme=dataset.scheme,
        train_split={"split": "train", "steps": cfg.steps},
    )
    backend = make_backend(cfg.backend, **options)
    backend.to(device)
    with run_lock(cfg.output_dir()) as out:  # one training per run folder
        t0 = time.perf_counter()
        feats = split_features(backend.backbone, dataset, "train", steps=cfg.steps, progress=cfg.progress)
        sketch, photo = _pairs(feats)
        t1 = time.perf_counter()
        history = fit_cvae(backend, sketch, photo, cfg.epochs, cfg.batch_size, cfg.lr, cfg.beta1, cfg.seed,
                           cfg.progress)
        seconds = {"feature_seconds": round(t1 - t0, 2), "train_seconds": round(time.perf_counter() - t1, 2)}
        logger.info(json.dumps(history[-1] | seconds))
        run = {"train": asdict(cfg), "history": history, **seconds}
        path = backend.save(out / "backend.pt", extra={"run": json.dumps(run, default=str)})
        write_json(out / "history.json", run)
    return path


# ----------------------------------------------------------------------------- baseline heads


class EmbeddingHead(nn.Module):
    """``normalise(W_2 relu(BN(W_1 f')) + b_2)`` of a unit-RMS feature ``f' = u(f)``: F -> F/2 -> d."""

    def __init__(self, feature_dim: int, embed_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(1, feature_dim // 2)
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(unit_rms(f)), dim=-1)

    def embed(self, features: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Embeddings of raw features ``(B, F)``, float32 ``(B, d)``, in eval mode."""
        self.eval()
        f = np.array(features, dtype=np.float32)  # a writable copy (features may be a memory map)
        with torch.inference_mode():
            out = [self(torch.from_numpy(f[i : i + batch])).numpy() for i in range(0, len(f), batch)]
        return np.concatenate(out) if out else np.empty((0, self.net[-1].out_features), np.float32)


def _category_batches(
    sketch_cat: np.ndarray,
    photo_cat: np.ndarray,
    n_batches: int,
    rng: np.random.Generator,
    classes: int = 32,
    per_class: int = 4,
):
    """``n_batches`` of (sketch ids, photo ids, their categories): ``classes`` categories with ``per_class``
    sketches and photos each, drawn with replacement."""
    by_sketch = {c: np.flatnonzero(sketch_cat == c) for c in np.unique(sketch_cat)}
    by_photo = {c: np.flatnonzero(photo_cat == c) for c in np.unique(photo_cat)}
    usable = np.array(sorted(set(by_sketch) & set(by_photo)))
    if len(usable) < 2:
        raise ArgumentError(f"category losses need >= 2 categories with both sketches and photos, got {len(usable)}")
    for _ in range(n_batches):
        cats = rng.choice(usable, size=min(classes, len(usable)), replace=False)
        s = np.concatenate([rng.choice(by_sketch[c], per_class) for c in cats])
        p = np.concatenate([rng.choice(by_photo[c], per_class) for c in cats])
        yield s, p, np.repeat(cats, per_class)


def fit_category_head(
    loss: str,
    sketch: np.ndarray,
    photo: np.ndarray,
    sketch_cat: np.ndarray,
    photo_cat: np.ndarray,
    embed_dim: int = 64,
    epochs: int = 25,
    lr: float = 2e-4,
    beta1: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> tuple[EmbeddingHead, EmbeddingHead]:
    """Siamese (``loss="contrastive"``, one head for both domains) or coarse-grained triplet
    (``loss="triplet"``, a head per domain) on raw features ``sketch`` ``(N, F)`` and ``photo`` ``(P, F)``
    with category labels; an epoch is ``N / 128`` batches. Returns ``(sketch head, photo head)``."""
    from tqdm.auto import tqdm

    if loss not in ("contrastive", "triplet"):
        raise ArgumentError(f"loss must be 'contrastive' (Siamese) or 'triplet' (coarse-grained), got {loss!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dim = sketch.shape[1]
    s_head = EmbeddingHead(dim, embed_dim)
    p_head = s_head if loss == "contrastive" else EmbeddingHead(dim, embed_dim)
    params = list({id(p): p for h in (s_head, p_head) for p in h.parameters()}.values())
    opt = _adam(params, lr, beta1)
    s_all, p_all = torch.from_numpy(np.array(sketch, np.float32)), torch.from_numpy(np.array(photo, np.float32))
    fn = contrastive_loss if loss == "contrastive" else category_triplet_loss
    n_batches = max(1, len(sketch) // 128)
    for _ in tqdm(range(epochs), desc=f"{loss} head", disable=not progress, leave=False):
        s_head.train()
        p_head.train()
        for s_ids, p_ids, cats in _category_batches(sketch_cat, photo_cat, n_batches, rng):
            c = torch.from_numpy(cats)
            value = fn(s_head(s_all[s_ids]), p_head(p_all[p_ids]), c[:, None] == c[None, :])
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
    s_head.eval()
    p_head.eval()
    return s_head, p_head


class RegressionHead(nn.Module):
    """``W_2 relu(W_1 u(s) + b_1) + b_2``: F -> F/2 -> F, the predicted (unit-RMS) photo feature."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        hidden = max(1, feature_dim // 2)
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, feature_dim))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(unit_rms(f))

    def embed(self, features: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Normalised predictions of raw features ``(B, F)``: the direct-regression query ``(B, F)``."""
        self.eval()
        f = np.array(features, dtype=np.float32)  # a writable copy (features may be a memory map)
        with torch.inference_mode():
            out = [
                F.normalize(self(torch.from_numpy(f[i : i + batch])), dim=-1).numpy() for i in range(0, len(f), batch)
            ]
        return np.concatenate(out) if out else np.empty((0, f.shape[1]), np.float32)


def fit_regression(
    sketch: np.ndarray,
    photo: np.ndarray,
    epochs: int = 25,
    batch_size: int = 128,
    lr: float = 2e-4,
    beta1: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> RegressionHead:
    """Direct regression: :class:`RegressionHead` trained with ``||r(s) - u(x)||^2`` on paired raw features."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = RegressionHead(sketch.shape[1])
    opt = _adam(head.parameters(), lr, beta1)
    s_all = torch.from_numpy(np.array(sketch, np.float32))
    x_all = torch.from_numpy(unit_rms(photo))
    batch = min(batch_size, len(sketch))
    for _ in tqdm(range(epochs), desc="regression head", disable=not progress, leave=False):
        head.train()
        order = rng.permutation(len(sketch))
        for i in range(max(1, len(sketch) // batch)):
            ids = order[i * batch : (i + 1) * batch]
            value = (head(s_all[ids]) - x_all[ids]).pow(2).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
    head.eval()
    return head
