"""Training the triplet baselines from scratch.

One epoch is one pass over the training photos; each batch holds distinct photos, each with one of its
sketches drawn at random, augmented (affine + point jitter on the vector sketch before rendering, a
small affine on the photo raster), and rendered complete (TS, B1) or cut at a random step of the
schedule (B2, B3). The loss is the in-batch batch-all triplet loss (:func:`embeddings.losses.batch_all_triplet_loss`).

Validation uses a held-out part of the training photos (``val_fraction``, chosen by a hash of the photo
name, so it never touches the test split): after every epoch, m@B and A@1 of the held-out sketches
against the held-out photos; ``backend.pt`` keeps the epoch with the best validation m@B.

Every epoch writes ``last.pt`` (model, optimiser, RNG states, history) atomically; a run started again
with the same output folder and configuration resumes from it. ``minutes`` bounds the wall time of
training (validation excluded): the learning rate follows a cosine over ``max(step / total_steps,
elapsed / budget)``, so a time-bounded run still anneals.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from embeddings.base import load_backend, make_backend
from embeddings.losses import HOLEFDistance, batch_all_triplet_loss
from embeddings.nets import raster_tensor
from embeddings.triplet import TripletBackend, preprocess_photos
from sketch_env.cache import atomic_path
from sketch_env.config import check_config
from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.device import resolve_device
from sketch_env.errors import ArgumentError
from sketch_env.metrics import m_at_b, ranks_from_embeddings
from sketch_env.render import render_progressive
from sketch_env.runs import check_resume, read_resume_file, run_lock
from sketch_env.schedule import PointSchedule
from sketch_env.sketch import Sketch

__all__ = ["TrainConfig", "TripletSampler", "train_backend", "resolve_device", "validation_mask", "rng_state",
           "set_rng_state", "read_last"]


def validation_mask(instances: list[str], fraction: float) -> np.ndarray:
    """Which training photos are held out for validation: ``stable_fraction(name, "val") < fraction``."""
    return np.array([stable_fraction(name, "val") < fraction for name in instances], dtype=bool)


@dataclass
class TrainConfig:
    """Options of ``sketch-env embed train`` (each also a CLI flag)."""

    backend: str = "b1"
    """registry name: ts, b1, b2, b3"""
    dataset: str = "kanji"
    root: str | None = None
    """data folder for datasets read from disk"""
    scheme: str | None = None
    """split scheme (None: the dataset's default)"""
    out: str | None = None
    """run folder (default ``<data>/backends/<dataset>-<scheme>/<backend>-s<seed>``, where backend names are looked
    up: :func:`embeddings.provision.user_backend_dir`)"""
    epochs: int = 30
    minutes: float | None = None
    """wall-time budget of training (all B3 models together); None: run all epochs"""
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.05
    val_sketches: int = 300
    """at most this many held-out sketches are scored each epoch"""
    steps: int = 20
    """schedule length S (partial training and validation)"""
    jitter: float = 0.004
    """std of the point jitter, in units of the frame"""
    rotate_deg: float = 8.0
    scale: float = 0.08
    shift: float = 0.04
    augment: bool = True
    step_power: float = 0.0
    """which schedule step a partial-sketch training item (B2, B3) is cut at: step t = 1..S with
    ``P(t) = t^p / sum_u u^p``. ``p = 0`` draws every step alike; ``p > 0`` draws later steps, where 1/rank
    and A@q are earned, more often (``p = 1``: the complete sketch 2/(S+1) of the time instead of 1/S), at
    the cost of the first steps, which m@A weighs (README, baselines)"""
    precision: str = "fp32"
    """precision of the forward pass: ``fp32``, ``bf16`` (bfloat16 autocast; weights, optimiser state and
    the loss stay float32) or ``auto`` (bf16 where the processor computes bfloat16 natively: a CPU with
    AVX512-BF16, a CUDA GPU with bf16; else fp32). On this project's 2-core CPU bf16 made a B2 epoch 1.35x
    faster (82 epochs in 10 minutes instead of 56) but did not raise its test figures, so fp32 is the
    default (README, baselines)"""
    progress: bool = True
    backend_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the backend's configuration (e.g. {"loss": "holef"}, {"models": 5})"""

    def __post_init__(self) -> None:
        check_config(self, {"epochs": (1, 10**7), "minutes": (0, None), "batch_size": (2, 1 << 16),
                            "lr": (0, 10), "weight_decay": (0, 10), "seed": (0, None), "val_fraction": (0, 0.9),
                            "val_sketches": (1, None), "steps": (1, 1000), "jitter": (0, 1), "rotate_deg": (0, 180),
                            "scale": (0, 0.9), "shift": (0, 0.5), "step_power": (0, 100)})

    def output_dir(self, scheme: str) -> Path:
        if self.out:
            return Path(self.out)
        from embeddings.provision import user_backend_dir

        return user_backend_dir(self.backend, self.dataset, scheme, self.seed)


class TripletSampler:
    """Batches of (sketch raster, photo raster) for one training run: each of a batch's distinct photos with
    one of its sketches drawn at random, augmented, rendered complete or cut at a step of the schedule."""

    def __init__(self, cfg: TrainConfig, backend: TripletBackend,
                 photo_rasters: np.ndarray, sketch_groups: list[list[int]], records: list) -> None:
        self.cfg = cfg
        self.render = backend.render_config
        self.partial = bool(backend.config["partial"])
        self.schedule = PointSchedule(cfg.steps)
        self.photos = photo_rasters
        self.groups = sketch_groups
        self.records = records

    @staticmethod
    def step_probabilities(allowed: np.ndarray, power: float) -> np.ndarray:
        """``P(t) ∝ (t + 1)^power`` over the 0-based step indices ``allowed``."""
        weights = (np.asarray(allowed, dtype=np.float64) + 1.0) ** power
        return weights / weights.sum()

    def _augment_sketch(self, sketch: Sketch, rng: np.random.Generator) -> Sketch:
        if not self.cfg.augment:
            return sketch
        c = self.cfg
        theta = np.deg2rad(rng.uniform(-c.rotate_deg, c.rotate_deg))
        s = 1.0 + rng.uniform(-c.scale, c.scale)
        rot = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = (sketch.points - 0.5) @ rot.T + 0.5 + rng.uniform(-c.shift, c.shift, size=2)
        pts = pts + rng.normal(0.0, c.jitter, size=pts.shape)
        return Sketch(np.clip(pts, 0.0, 1.0), sketch.stroke_ends)

    def _augment_photo(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.cfg.augment:
            return img
        size = img.shape[0]
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-4, 4), 1.0 + rng.uniform(-0.05, 0.05))
        m[:, 2] += rng.uniform(-0.03, 0.03, size=2) * size
        return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)

    def batch(self, photo_ids: np.ndarray, rng: np.random.Generator,
              steps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        size = self.render.size
        sk = np.empty((len(photo_ids), size, size), dtype=np.uint8)
        ph = np.empty((len(photo_ids), *self.photos.shape[1:]), dtype=np.uint8)
        for i, pid in enumerate(photo_ids):
            group = self.groups[pid]
            rec = self.records[group[rng.integers(len(group))]]
            sketch = self._augment_sketch(rec.sketch, rng)
            cut = sketch.num_points
            if self.partial:
                if self.cfg.step_power == 0:  # (kept as first written: the same RNG stream as before)
                    t = rng.choice(steps) if steps is not None else rng.integers(self.cfg.steps)
                else:
                    allowed = steps if steps is not None else np.arange(self.cfg.steps)
                    t = rng.choice(allowed, p=self.step_probabilities(allowed, self.cfg.step_power))
                cut = int(self.schedule.cuts(sketch)[t])
            render_progressive(sketch, np.array([cut]), self.render, out=sk[i : i + 1])
            ph[i] = self._augment_photo(self.photos[pid], rng)
        return sk, ph


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.precision`` on ``device`` (None: float32, no autocast)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ArgumentError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        # bf16 autocast is only faster where the CPU has bf16 dot products; elsewhere it is emulated
        isa = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return torch.bfloat16 if native and isa.startswith("AVX512") else None
    return None


def _validate(backend: TripletBackend, records: list, val_sketch_ids: np.ndarray, sketch_photo: np.ndarray,
              val_photo_ids: np.ndarray, photo_rasters_rgb: np.ndarray, steps: int) -> dict[str, float]:
    schedule = PointSchedule(steps)
    render = backend.render_config
    rasters = np.empty((len(val_sketch_ids), steps, render.size, render.size), dtype=np.uint8)
    for i, sid in enumerate(val_sketch_ids):
        render_progressive(records[sid].sketch, schedule, render, out=rasters[i])
    feats = backend.sketch_features(rasters.reshape(-1, render.size, render.size),
                                    step=np.tile(np.arange(steps), len(val_sketch_ids)))
    queries = backend.queries(feats, step=np.tile(np.arange(steps), len(val_sketch_ids)))
    gallery = backend.photo_embeddings(photo_rasters_rgb[val_photo_ids])
    lookup = {int(p): j for j, p in enumerate(val_photo_ids)}
    true = np.repeat([lookup[int(sketch_photo[s])] for s in val_sketch_ids], steps)
    ranks = ranks_from_embeddings(queries, gallery, true).reshape(len(val_sketch_ids), steps)
    return {"val_m@B": 100 * m_at_b(ranks), "val_A@1": 100 * float((ranks[:, -1] <= 1).mean()),
            "val_gallery": len(val_photo_ids)}


def rng_state(rng: np.random.Generator) -> dict:
    """A run's random state (its NumPy generator and torch's global one), for a checkpoint."""
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])


def read_last(path: Path) -> dict:
    """A run's ``last.pt`` (``torch.load(weights_only=True)``), with the entries a resume needs."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"backend", "optimizer", "rng", "state", "run_config"} - set(ckpt if isinstance(ckpt, dict) else ())
    if missing:
        raise ArgumentError(f"not a training checkpoint of this package (missing {sorted(missing)})")
    return ckpt


def train_backend(cfg: TrainConfig, stop_after_epochs: int | None = None) -> Path:
    """Train (or resume) a backend; returns the path of ``backend.pt``.

    ``stop_after_epochs`` ends the call after that many epochs of this call (a stand-in for a kill, used
    by tests); the run resumes from ``last.pt`` when called again.
    """
    if not (math.isfinite(cfg.step_power) and cfg.step_power >= 0):
        raise ArgumentError(f"step_power must be a finite number >= 0, not {cfg.step_power!r}")
    device = resolve_device(cfg.device)
    dataset = make_dataset(cfg.dataset, root=cfg.root, **({"scheme": cfg.scheme} if cfg.scheme else {}))
    out = cfg.output_dir(dataset.scheme)
    with run_lock(out):  # one training per run folder
        return _train_locked(cfg, dataset, out, device, stop_after_epochs)


def _train_locked(cfg: TrainConfig, dataset: Any, out: Path, device: torch.device,
                  stop_after_epochs: int | None) -> Path:
    torch.manual_seed(cfg.seed)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count wins
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    # the backend and the data it is trained on
    options = dict(cfg.backend_options)
    options.setdefault("steps", cfg.steps)
    options.update(dataset=dataset.name, scheme=dataset.scheme,
                   train_split={"split": "train", "val_fraction": cfg.val_fraction, "val_salt": "val"})
    backend = make_backend(cfg.backend, **options)
    init_from = backend.config.get("init_from")
    if init_from:  # B3: every model starts from the trained B1 (its photo branch stays frozen)
        source = load_backend(init_from, expect={"dataset": dataset.name, "scheme": dataset.scheme})
        for branch in backend.sketch_branches:
            branch.load_state_dict(source.sketch_branches[0].state_dict())
        backend.photo_branch.load_state_dict(source.photo_branch.state_dict())
    elif backend.per_step:
        raise ArgumentError("B3 trains its per-step models from a B1 checkpoint: pass backend option init_from=PATH")
    backend.to(device)

    records = dataset.sketches("train")
    photos = dataset.photos("train")
    sketch_photo = dataset.photo_index("train")
    photos_rgb = dataset.load_photos(photos, backend.photo_size)
    photo_rasters = preprocess_photos(photos_rgb, backend.config["photo_preprocess"])
    val_photo = validation_mask([p.instance for p in photos], cfg.val_fraction)
    groups: list[list[int]] = [[] for _ in photos]
    for sid, pid in enumerate(sketch_photo):
        groups[pid].append(sid)
    train_photo_ids = np.flatnonzero(~val_photo & np.array([len(g) > 0 for g in groups]))
    val_photo_ids = np.flatnonzero(val_photo)
    val_sketch_ids = np.flatnonzero(val_photo[sketch_photo])
    val_sketch_ids = val_sketch_ids[np.linspace(0, len(val_sketch_ids) - 1,
                                                min(cfg.val_sketches, len(val_sketch_ids))).astype(int)] \
        if len(val_sketch_ids) else val_sketch_ids
    if len(train_photo_ids) < 2:
        raise ArgumentError(f"dataset {dataset.name!r} has too few training photos ({len(train_photo_ids)})")
    sampler = TripletSampler(cfg, backend, photo_rasters, groups, records)

    models = backend.config["models"]
    per_model_steps = [np.flatnonzero(backend.model_of_step(np.arange(cfg.steps)) == k) for k in range(models)]
    batch = min(cfg.batch_size, len(train_photo_ids))
    steps_per_epoch = max(1, len(train_photo_ids) // batch)
    holef = HOLEFDistance(backend.embed_dim).to(device) if backend.config["loss"] == "holef" else None
    autocast = resolve_precision(cfg.precision, device)

    rng = np.random.default_rng(cfg.seed)
    state = {"model": 0, "epoch": 0, "elapsed": 0.0, "history": [], "best": -1.0}
    run_config = {"train": asdict(cfg) | {"out": str(out)}, "backend": backend.config}
    last = out / "last.pt"

    def make_optimizer(k: int) -> torch.optim.Optimizer:
        params = list(backend.sketch_branches[k].parameters()) if backend.per_step else list(backend.parameters())
        if holef is not None:
            params += list(holef.parameters())
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    optimizer = make_optimizer(0)
    ckpt = read_resume_file(last, read_last)
    if ckpt is not None:
        check_resume(last, json.loads(ckpt["run_config"]), run_config, defaults={"train": asdict(TrainConfig())})
        backend.load_state_dict(ckpt["backend"])
        state = json.loads(ckpt["state"])
        optimizer = make_optimizer(state["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if holef is not None:
            holef.load_state_dict(ckpt["holef"])
        set_rng_state(rng, ckpt["rng"])
        backend.to(device)
        print(f"resuming {out} at model {state['model']} epoch {state['epoch']}")

    budget = None if cfg.minutes is None else cfg.minutes * 60.0 / models
    epochs_this_call = 0
    from tqdm.auto import tqdm

    while state["model"] < models:
        k = state["model"]
        model_elapsed = state.get("model_elapsed", 0.0)
        if state["epoch"] >= cfg.epochs or (budget is not None and model_elapsed >= budget):
            state.update(model=k + 1, epoch=0, model_elapsed=0.0)
            if state["model"] < models:
                optimizer = make_optimizer(state["model"])
            continue
        backend.train()
        if backend.per_step:  # the shared photo branch is frozen for B3
            backend.photo_branch.eval()
        order = rng.permutation(train_photo_ids)
        t0 = time.perf_counter()
        losses, actives = [], []
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.backend} m{k} ep{state['epoch'] + 1}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False, unit="batch")
        for i in bar:
            frac = max((state["epoch"] * steps_per_epoch + i) / (cfg.epochs * steps_per_epoch),
                       0.0 if budget is None else (model_elapsed + time.perf_counter() - t0) / budget)
            if frac >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
            ids = order[i * batch : (i + 1) * batch]
            sk, ph = sampler.batch(ids, rng, per_model_steps[k] if backend.per_step else None)
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                s_emb = backend.sketch_branches[k](raster_tensor(sk, device))
                if backend.per_step:
                    with torch.no_grad():
                        p_emb = backend.photo_branch(raster_tensor(ph, device))
                else:
                    p_emb = backend.photo_branch(raster_tensor(ph, device))
            # the loss in float32: the triplet distances are differences of nearby numbers
            loss, active = batch_all_triplet_loss(s_emb.float(), p_emb.float(), backend.config["margin"], holef)
            if holef is not None:
                loss = loss + holef.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            actives.append(active)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", active=f"{np.mean(actives[-20:]):.2f}")
        bar.close()
        train_seconds = time.perf_counter() - t0
        model_elapsed += train_seconds
        state["elapsed"] += train_seconds
        state["epoch"] += 1
        state["model_elapsed"] = model_elapsed
        row: dict[str, Any] = {"model": k, "epoch": state["epoch"], "loss": float(np.mean(losses)) if losses else None,
                               "active": float(np.mean(actives)) if actives else None,
                               "train_seconds": round(train_seconds, 2), "elapsed": round(state["elapsed"], 2),
                               "batches": len(losses)}
        if len(val_sketch_ids):
            row.update(_validate(backend, records, val_sketch_ids, sketch_photo, val_photo_ids, photos_rgb, cfg.steps))
        state["history"].append(row)
        print(json.dumps(row))
        # the model is "best" at its best validation m@B; for B3 the models are kept as trained
        score = row.get("val_m@B", -float(state["epoch"]))
        if backend.per_step or score >= state["best"] or not len(val_sketch_ids):
            state["best"] = score
            backend.save(out / "backend.pt", extra={"history": json.dumps(state["history"])})
        payload = {"backend": backend.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(rng),
                   "state": json.dumps(state), "run_config": json.dumps(run_config, default=str)}
        if holef is not None:
            payload["holef"] = holef.state_dict()
        with atomic_path(last) as tmp:
            torch.save(payload, tmp)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return out / "backend.pt"
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps(state["history"], indent=1))
    return out / "backend.pt"
