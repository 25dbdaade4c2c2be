"""Training the triplet baselines from scratch.

Each batch holds distinct training photos, each with one of its sketches drawn at random, augmented (affine
and point jitter on the vector sketch before rendering, optionally a mirror and dropped strokes; a small
affine on the photo raster) and rendered complete (TS, B1) or cut at a random step of the schedule (B2,
B3). The loss is the in-batch batch-all triplet loss (:func:`embeddings.losses.batch_all_triplet_loss`).

**Length.** A run is defined by counts, never by minutes: ``gradient_steps`` optimizer updates (by default
192,000 training pairs divided by the batch size, the B3 models sharing them), or ``epochs`` passes over the
training photos. The learning rate
follows a cosine over the steps. ``minutes`` is only a cap: a run it cuts short says so (``history.json``'s
``cut_short``, a message), so its figures are not those of the full run.

**What the dataset's photos are** decides the photo preprocessing, the augmentation and the batch size (the dataset's
``photo_kind``, :data:`PHOTO_KINDS`): renderings (kanji glyphs, the synthetic figures) are inverted grey
rasters, real photos (QMUL, Sketchy) dilated Canny edge maps, which look like strokes. The choices are
recorded in the checkpoint (its configuration and ``extra["training"]``); explicit options win.

**Validation** uses a held-out part of the training photos, chosen by a hash of the photo name (so it
never touches the test split): ``val_fraction`` of them, but at least ``val_min_photos`` (a fraction of a
small dataset is too few photos to select a checkpoint with: 5 % of Chair-V2's 300 is 15). Every
``eval_every`` steps it scores m@B and A@1 of held-out sketches against the held-out photos; ``backend.pt``
keeps the evaluation with the best validation m@B, and ``last.pt`` (model, optimiser, RNG states, the
position in the epoch, history) is written atomically, so a run started again with the same folder and
configuration resumes exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from embeddings.base import load_backend, make_backend
from embeddings.configs import DEFAULT_TRAINING_PAIRS, TrainConfig
from embeddings.losses import HOLEFDistance, batch_all_triplet_loss
from embeddings.nets import raster_tensor
from embeddings.triplet import TripletBackend
from sketch_env.cache import atomic_path, write_json
from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.device import resolve_device
from sketch_env.errors import ArgumentError, ConfigError
from sketch_env.limits import load_torch_file
from sketch_env.log import logger
from sketch_env.metrics import m_at_b, ranks_from_embeddings
from sketch_env.render import render_progressive
from sketch_env.runs import check_resume, read_resume_file, run_lock
from sketch_env.schedule import PointSchedule
from sketch_env.sketch import Sketch
from sketch_env.threads import usable_cores

__all__ = ["TrainConfig", "TripletSampler", "train_backend", "resolve_device", "validation_mask", "validation_keys",
           "rng_state", "set_rng_state", "read_last", "PHOTO_KINDS", "resolve_training", "set_memory_format"]


#: what each kind of photo is trained with, unless set explicitly: backend options (``photo_preprocess``,
#: ``photo_size``, the size photos are loaded at, ``flip_average``) and TrainConfig fields (``flip``,
#: ``stroke_drop``, ``batch_size``, ``ema_horizon``). Renderings are inverted grey at the raster size, trained
#: without a weight average; real photos are edge maps found at 256 px, with mirrored training pairs, dropped
#: strokes and a weight average over the last fifth of the run (README, Chair-V2). Neither kind averages an
#: embedding with its mirror image's at test time: a fine-grained sketch is drawn facing the way its photo
#: faces, and the average throws that cue away (Chair-V2, 3 seeds' weights: m@B -1.2, A@5 -1.5 with it;
#: benchmarks/results/mirror_averaging-chairv2)
PHOTO_KINDS: dict[str, dict[str, Any]] = {
    "rendering": {"photo_preprocess": "invert", "photo_size": 64, "flip_average": False, "flip": False,
                  "stroke_drop": 0.0, "batch_size": 128, "ema_horizon": 0.0},
    "photo": {"photo_preprocess": "edges", "photo_size": 256, "flip_average": False, "flip": True,
              "stroke_drop": 0.15, "batch_size": 64, "ema_horizon": 0.2},
}
_BACKEND_CHOICES = ("photo_preprocess", "photo_size", "flip_average")


def validation_keys(instances: list[str]) -> np.ndarray:
    """The hash validation holds photos out by, ``stable_fraction(name, "val")`` of each: float64 in [0, 1);
    validation takes the lowest first."""
    return np.array([stable_fraction(name, "val") for name in instances], dtype=np.float64)


def validation_mask(instances: list[str], fraction: float, min_photos: int = 0) -> np.ndarray:
    """Which training photos are held out for validation: those with ``stable_fraction(name, "val") <
    fraction``, and if fewer than ``min_photos``, the ``min_photos`` lowest by that hash (at most half)."""
    keys = validation_keys(instances)
    mask = keys < fraction
    want = min(int(min_photos), len(instances) // 2)
    if mask.sum() < want:
        mask = np.zeros(len(instances), dtype=bool)
        mask[np.argsort(keys, kind="stable")[:want]] = True
    return mask


def resolve_training(cfg: TrainConfig, photo_kind: str) -> dict[str, Any]:
    """The augmentation and photo preprocessing a run uses: ``cfg``'s explicit choices, the rest from what
    the dataset's photos are (:data:`PHOTO_KINDS`)."""
    if photo_kind not in PHOTO_KINDS:
        raise ConfigError(f"photo kind {photo_kind!r} is not one of {sorted(PHOTO_KINDS)}")
    kind = PHOTO_KINDS[photo_kind]
    return {"photo_kind": photo_kind,
            **{k: cfg.backend_options.get(k, kind[k]) for k in _BACKEND_CHOICES},
            "flip": kind["flip"] if cfg.flip is None else cfg.flip,
            "stroke_drop": kind["stroke_drop"] if cfg.stroke_drop is None else cfg.stroke_drop,
            "batch_size": kind["batch_size"] if cfg.batch_size is None else cfg.batch_size,
            "ema_horizon": kind["ema_horizon"] if cfg.ema_horizon is None else cfg.ema_horizon}


class TripletSampler:
    """Batches of (sketch raster, photo raster) for one training run: each of a batch's distinct photos with
    one of its sketches drawn at random, augmented, rendered complete or cut at a step of the schedule."""

    def __init__(self, cfg: TrainConfig, backend: TripletBackend, photo_rasters: np.ndarray,
                 sketch_groups: list[list[int]], records: list, flip: bool = False, stroke_drop: float = 0.0) -> None:
        self.cfg = cfg
        self.flip = bool(flip and cfg.augment)
        self.stroke_drop = float(stroke_drop) if cfg.augment else 0.0
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
        out = Sketch(np.clip(pts, 0.0, 1.0), sketch.stroke_ends)
        if self.stroke_drop > 0 and out.num_strokes > 1:  # a sketch missing a few strokes still shows its photo
            keep = rng.random(out.num_strokes) >= self.stroke_drop
            if not keep.any():
                keep[rng.integers(out.num_strokes)] = True
            parts = [out.points[a:b] for a, b, k in zip(out.stroke_starts, out.stroke_ends, keep) if k]
            out = Sketch(np.concatenate(parts), np.cumsum([len(q) for q in parts]))
        return out

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
        if self.flip:  # mirror the pair together: a mirrored sketch depicts the mirrored photo
            mirrored = rng.random(len(photo_ids)) < 0.5
            sk[mirrored] = sk[mirrored][:, :, ::-1]
            ph[mirrored] = ph[mirrored][:, :, ::-1]
        return sk, ph


class WeightAverage:
    """An exponential moving average of a backend's weights (buffers, such as batch-norm statistics, are the
    live ones): ``w_avg <- d w_avg + (1 - d) w`` after every step, ``d = 1 - 1 / horizon_steps``.
    :meth:`swapped` puts the averaged weights in place for an evaluation or a save."""

    def __init__(self, params: list[torch.nn.Parameter], horizon_steps: float) -> None:
        self.params = params
        self.decay = 1.0 - 1.0 / max(horizon_steps, 1.0)
        self.average = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for avg, p in zip(self.average, self.params):
            avg.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def commit(self) -> None:
        """Put the averaged weights in place for good (a B3 model whose training is over)."""
        for p, avg in zip(self.params, self.average):
            p.copy_(avg)

    @contextlib.contextmanager
    def swapped(self):
        live = [p.detach().clone() for p in self.params]
        self.commit()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, live):
                    p.copy_(w)


def set_memory_format(backend: TripletBackend, layout: torch.memory_format) -> None:
    """Put every convolution weight of ``backend`` (its sketch branches and photo branch) in ``layout``, in
    place: ``torch.channels_last`` or ``torch.contiguous_format``. A state dict saved from either layout loads
    into either."""
    for module in [*backend.sketch_branches, backend.photo_branch]:
        module.to(memory_format=layout)


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


def _validation_rasters(backend: TripletBackend, records: list, val_sketch_ids: np.ndarray,
                        steps: int) -> np.ndarray:
    """The validation sketches drawn to each of the ``steps`` steps, rendered once for every evaluation:
    uint8 ``(n * steps, size, size)``, sketch-major."""
    render = backend.render_config
    rasters = np.empty((len(val_sketch_ids), steps, render.size, render.size), dtype=np.uint8)
    schedule = PointSchedule(steps)
    for i, sid in enumerate(val_sketch_ids):
        render_progressive(records[sid].sketch, schedule, render, out=rasters[i])
    return rasters.reshape(-1, render.size, render.size)


def _validate(backend: TripletBackend, rasters: np.ndarray, steps: int, true: np.ndarray, gallery: np.ndarray,
              kept: dict[Any, np.ndarray], current: int) -> dict[str, float]:
    """Validation m@B (and complete-sketch A@1) of the validation sketches against the validation photos.

    ``rasters`` from :func:`_validation_rasters`; ``gallery``: the validation photos as
    :meth:`~embeddings.triplet.TripletBackend.preprocess` made them; ``true``: each row's photo in it. A
    per-step backend (B3) re-embeds only the rows of model ``current``, the one in training: the other models
    and the frozen photo branch stay as they are meanwhile, so ``kept`` holds their outputs (model -> its
    rows' queries, ``"gallery"`` -> the photo embeddings) from one evaluation to the next.
    """
    step = np.tile(np.arange(steps), len(rasters) // steps)
    if backend.per_step:
        served = backend.model_of_step(step)
        models = np.unique(served).tolist()
        for k in models:
            if k == current or k not in kept:
                rows = served == k
                kept[k] = backend.queries(backend.sketch_features(rasters[rows], step=step[rows]), step=step[rows])
        queries = np.empty((len(rasters), kept[current].shape[1]), dtype=np.float32)
        for k in models:
            queries[served == k] = kept[k]
        if "gallery" not in kept:
            kept["gallery"] = backend.photo_raster_embeddings(gallery)
        embedded = kept["gallery"]
    else:
        queries = backend.queries(backend.sketch_features(rasters, step=step), step=step)
        embedded = backend.photo_raster_embeddings(gallery)
    ranks = ranks_from_embeddings(queries, embedded, true).reshape(-1, steps)
    return {"val_m@B": 100 * m_at_b(ranks), "val_A@1": 100 * float((ranks[:, -1] <= 1).mean()),
            "val_gallery": len(gallery)}


def _model_average(stored: list[torch.Tensor], averaged: WeightAverage, backend: TripletBackend,
                   path: Path) -> list[torch.Tensor]:
    """The weight average a resumed run continues: ``stored`` as ``last.pt`` has it, or, for a B3 run
    stored when one average spanned every parameter, that average's entries for the model in training."""
    if len(stored) == len(averaged.params):
        return stored
    position = {id(p): i for i, p in enumerate(backend.parameters())}
    if len(stored) != len(position) or any(id(p) not in position for p in averaged.params):
        raise ArgumentError(f"{path}: its weight average has {len(stored)} tensors, this backend's model "
                            f"{len(averaged.params)}")
    logger.warning(f"{path}: stored when B3's weight average spanned all its models; the models trained before "
                   "this one keep their raw weights")
    return [stored[position[id(p)]] for p in averaged.params]


def rng_state(rng: np.random.Generator) -> dict:
    """A run's random state (its NumPy generator and torch's global one), for a checkpoint."""
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])


def read_last(path: Path) -> dict:
    """A run's ``last.pt`` (``torch.load(weights_only=True)``), with the entries a resume needs."""
    ckpt = load_torch_file(path)
    missing = {"backend", "optimizer", "rng", "state", "run_config"} - set(ckpt if isinstance(ckpt, dict) else ())
    if missing:
        raise ArgumentError(f"not a training checkpoint of this package (missing {sorted(missing)})")
    return ckpt


def train_backend(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Train (or resume) a backend; returns the path of ``backend.pt``.

    ``stop_after`` ends the call after that many evaluations of this call (a stand-in for a kill, used by
    tests); the run resumes from ``last.pt`` when called again.
    """
    device = resolve_device(cfg.device)
    dataset = make_dataset(cfg.dataset, root=cfg.root, **({"scheme": cfg.scheme} if cfg.scheme else {}))
    out = cfg.output_dir(dataset.scheme)
    with run_lock(out):  # one training per run folder
        return _train_locked(cfg, dataset, out, device, stop_after)


class _Board:
    """TensorBoard scalars of a training's evaluations (``<run folder>/tb``): train/loss, train/active (the
    share of triplets inside the margin), train/lr, and the validation figures."""

    KEYS = {"loss": "train/loss", "active": "train/active", "lr": "train/lr", "val_m@B": "val/m@B",
            "val_A@1": "val/A@1"}

    def __init__(self, folder: Path) -> None:
        self.folder, self._writer = folder, None

    def write(self, row: dict[str, Any], step: int) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        for key, tag in self.KEYS.items():
            if row.get(key) is not None:
                self._writer.add_scalar(tag, float(row[key]), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _cosine_lr(base: float, frac: float) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * min(max(frac, 0.0), 1.0)))


def _train_locked(cfg: TrainConfig, dataset: Any, out: Path, device: torch.device, stop_after: int | None) -> Path:
    torch.manual_seed(cfg.seed)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count wins
        torch.set_num_threads(usable_cores())
    chosen = resolve_training(cfg, dataset.photo_kind)

    # the backend and the data it is trained on
    options = dict(cfg.backend_options)
    options.setdefault("steps", cfg.steps)
    options.update({k: chosen[k] for k in _BACKEND_CHOICES})
    options.update(dataset=dataset.name, scheme=dataset.scheme,
                   train_split={"split": "train", "val_fraction": cfg.val_fraction, "val_salt": "val",
                                "val_min_photos": cfg.val_min_photos})
    backend = make_backend(cfg.backend, **options)
    init_from = backend.config.get("init_from")
    if init_from:  # B3: every model starts from the trained B1 (its photo branch stays frozen)
        source = load_backend(init_from, expect={"dataset": dataset.name, "scheme": dataset.scheme})
        for branch in backend.sketch_branches:
            branch.load_state_dict(source.sketch_branches[0].state_dict())
        backend.photo_branch.load_state_dict(source.photo_branch.state_dict())
    elif backend.per_step:
        raise ConfigError("B3 trains its per-step models from a B1 checkpoint: pass backend option init_from=PATH")
    backend.to(device)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    set_memory_format(backend, layout)

    records = dataset.sketches("train")
    photos = dataset.photos("train")
    sketch_photo = dataset.photo_index("train")
    photos_rgb = dataset.load_photos(photos, backend.photo_size)
    photo_rasters = backend.preprocess(photos_rgb)
    val_photo = validation_mask([p.instance for p in photos], cfg.val_fraction, cfg.val_min_photos)
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
    sampler = TripletSampler(cfg, backend, photo_rasters, groups, records, chosen["flip"], chosen["stroke_drop"])

    models = backend.config["models"]
    per_model_steps = [np.flatnonzero(backend.model_of_step(np.arange(cfg.steps)) == k) for k in range(models)]
    batch = min(chosen["batch_size"], len(train_photo_ids))
    steps_per_epoch = max(1, len(train_photo_ids) // batch)
    # the default length is counted in pairs of the configured batch (not the one a tiny dataset clips it to)
    total = cfg.epochs * steps_per_epoch if cfg.epochs is not None else (
        cfg.gradient_steps or max(1, DEFAULT_TRAINING_PAIRS // chosen["batch_size"]))
    per_model = max(1, total // models)
    eval_every = cfg.eval_every or (steps_per_epoch if cfg.epochs is not None else max(1, per_model // 20))
    holef = HOLEFDistance(backend.embed_dim).to(device) if backend.config["loss"] == "holef" else None
    autocast = resolve_precision(cfg.precision, device)
    training = chosen | {"channels_last": cfg.channels_last, "gradient_steps": per_model * models, "batch_size": batch,
                         "steps_per_epoch": steps_per_epoch,
                         "epochs": round(per_model * batch / len(train_photo_ids), 2), "eval_every": eval_every,
                         "train_photos": len(train_photo_ids), "val_photos": len(val_photo_ids)}

    rng = np.random.default_rng(cfg.seed)
    # step: updates done by the current model; order/position: the epoch's photo permutation and where in it
    state: dict[str, Any] = {"model": 0, "step": 0, "epoch": 0, "elapsed": 0.0, "history": [], "best": -1.0,
                             "order": None, "position": 0, "cut_short": False}
    # the weight average as resolved: a run stored with the value its photo kind now gives by default resumes
    run_config = {"train": asdict(cfg) | {"out": str(out), "ema_horizon": chosen["ema_horizon"]},
                  "backend": backend.config}
    last = out / "last.pt"

    def model_params(k: int) -> list[torch.nn.Parameter]:
        """What model ``k``'s training updates: B3 its own sketch branch, the other backends everything."""
        return list(backend.sketch_branches[k].parameters()) if backend.per_step else list(backend.parameters())

    def make_optimizer(k: int) -> torch.optim.Optimizer:
        params = model_params(k) + (list(holef.parameters()) if holef is not None else [])
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    ema = chosen["ema_horizon"]

    def make_average(k: int) -> WeightAverage | None:
        # each B3 model averages its own training only; committed when it ends (see the model switch)
        return WeightAverage(model_params(k), ema * per_model) if ema else None

    optimizer, averaged = make_optimizer(0), make_average(0)
    ckpt = read_resume_file(last, read_last)
    if ckpt is not None:
        # a key missing from the stored run counts as its default then; runs stored before the weight
        # average existed trained the raw weights (0.0), not "by photo kind" (None). The memory layout is how
        # the same computation runs, like the machine: a run may resume in the other one (runs stored before
        # the option existed trained contiguous)
        check_resume(last, json.loads(ckpt["run_config"]), run_config,
                     defaults={"train": asdict(TrainConfig()) | {"ema_horizon": 0.0}},
                     ignore=("train.minutes", "train.progress", "train.channels_last"))  # and another cap
        backend.load_state_dict(ckpt["backend"])
        state = json.loads(ckpt["state"])
        state["cut_short"] = False  # this call may finish it
        optimizer = make_optimizer(state["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if holef is not None:
            holef.load_state_dict(ckpt["holef"])
        set_rng_state(rng, ckpt["rng"])
        backend.to(device)
        set_memory_format(backend, layout)
        averaged = make_average(state["model"])
        if averaged is not None:
            averaged.average = [t.to(device) for t in _model_average(ckpt["average"], averaged, backend, last)]
        logger.info(f"resuming {out} at model {state['model']} step {state['step']} of {per_model}")

    from tqdm.auto import tqdm

    budget = None if cfg.minutes is None else cfg.minutes * 60.0
    evaluations = 0
    bar = tqdm(total=per_model * models, initial=state["model"] * per_model + state["step"], unit="step",
               desc=f"{cfg.backend} {dataset.name}", disable=not cfg.progress)
    losses: list[float] = []
    actives: list[float] = []

    board = _Board(out / "tb")
    if len(val_sketch_ids):
        val_rasters = _validation_rasters(backend, records, val_sketch_ids, cfg.steps)
        lookup = {int(p): j for j, p in enumerate(val_photo_ids)}
        val_true = np.repeat([lookup[int(sketch_photo[s])] for s in val_sketch_ids], cfg.steps)
        val_gallery = photo_rasters[val_photo_ids]  # preprocessed once, above
    val_kept: dict[Any, np.ndarray] = {}  # B3: what the models not in training and the photo branch give

    def evaluate_and_save(k: int) -> None:
        """An evaluation: validation, the best checkpoint, last.pt (the clock stopped meanwhile)."""
        nonlocal losses, actives
        state["epoch"] = state["step"] // steps_per_epoch  # passes over the training photos so far
        row: dict[str, Any] = {"model": k, "step": state["step"], "epoch": state["step"] // steps_per_epoch,
                               "loss": float(np.mean(losses)) if losses else None,
                               "active": float(np.mean(actives)) if actives else None,
                               "lr": _cosine_lr(cfg.lr, state["step"] / per_model),
                               "elapsed": round(state["elapsed"], 2)}
        losses, actives = [], []
        with averaged.swapped() if averaged is not None else contextlib.nullcontext():  # the averaged weights
            if len(val_sketch_ids):
                row.update(_validate(backend, val_rasters, cfg.steps, val_true, val_gallery, val_kept, k))
            state["history"].append(row)
            board.write(row, k * per_model + state["step"])
            if not cfg.progress:
                logger.info(json.dumps(row))
            # the model is "best" at its best validation m@B; B3's models are kept as trained, so its
            # backend.pt is written when a model is done (or the cap stops it), and last.pt serves a resume
            score = row.get("val_m@B", float(state["step"]))
            if (state["step"] == per_model or state["cut_short"]) if backend.per_step else (
                    score >= state["best"] or not len(val_sketch_ids)):
                state["best"] = score
                backend.save(out / "backend.pt", extra={"history": json.dumps(state["history"]),
                                                        "training": training})
        payload = {"backend": backend.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(rng),
                   "state": json.dumps(state), "run_config": json.dumps(run_config, default=str)}
        if averaged is not None:
            payload["average"] = [t.detach().cpu() for t in averaged.average]
        if holef is not None:
            payload["holef"] = holef.state_dict()
        with atomic_path(last) as tmp:
            torch.save(payload, tmp)

    t0 = time.perf_counter()
    while state["model"] < models:
        k = state["model"]
        if state["step"] >= per_model:
            if averaged is not None:
                averaged.commit()  # model k keeps its averaged weights, the ones its last evaluation saved
            val_kept.pop(k, None)
            state.update(model=k + 1, step=0)
            if state["model"] < models:
                optimizer, averaged = make_optimizer(state["model"]), make_average(state["model"])
            continue
        if budget is not None and state["elapsed"] + time.perf_counter() - t0 >= budget:
            state["cut_short"] = True
            state["elapsed"] += time.perf_counter() - t0
            if state["step"] and (not state["history"] or state["history"][-1]["step"] != state["step"]):
                evaluate_and_save(k)  # the weights it stopped at: scored and saved
            break
        backend.train()
        if backend.per_step:  # the shared photo branch is frozen for B3
            backend.photo_branch.eval()
        if state["order"] is None or state["position"] + batch > len(state["order"]):
            state["order"], state["position"] = rng.permutation(train_photo_ids).tolist(), 0
        ids = np.asarray(state["order"][state["position"] : state["position"] + batch])
        state["position"] += batch
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(cfg.lr, state["step"] / per_model)
        sk, ph = sampler.batch(ids, rng, per_model_steps[k] if backend.per_step else None)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            s_emb = backend.sketch_branches[k](raster_tensor(sk, device).contiguous(memory_format=layout))
            ph_in = raster_tensor(ph, device).contiguous(memory_format=layout)
            if backend.per_step:
                with torch.no_grad():
                    p_emb = backend.photo_branch(ph_in)
            else:
                p_emb = backend.photo_branch(ph_in)
        # the loss in float32: the triplet distances are differences of nearby numbers
        loss, active = batch_all_triplet_loss(s_emb.float(), p_emb.float(), backend.config["margin"], holef)
        if holef is not None:
            loss = loss + holef.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update()
        losses.append(loss.item())
        actives.append(active)
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", active=f"{np.mean(actives[-20:]):.2f}")
        if state["step"] % eval_every and state["step"] != per_model:
            continue
        state["elapsed"] += time.perf_counter() - t0
        evaluate_and_save(k)
        t0 = time.perf_counter()
        evaluations += 1
        if stop_after is not None and evaluations >= stop_after:
            bar.close()
            board.close()
            return out / "backend.pt"
    bar.close()
    board.close()
    if state["cut_short"]:
        done = state["model"] * per_model + state["step"]
        logger.warning(f"the --minutes {cfg.minutes:g} cap cut this training short at {done} of "
                       f"{per_model * models} gradient steps: its figures are not those of the full run; run the same "
                       "command again without the cap (or a larger one) to finish it")
    write_json(out / "history.json", {"history": state["history"], "cut_short": state["cut_short"],
                                      "training": training})
    return out / "backend.pt"
