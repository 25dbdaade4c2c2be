"""Meta-training the ``meta`` backend, and the k-shot adaptation protocols it is scored on.

Meta-training (:func:`train_meta`; the objective is in :mod:`embeddings.meta`). Each outer step draws
``meta_batch`` tasks from the training split:

* ``task_level="category"`` (a category split, e.g. kanji ``scheme="category"``): a category with at least
  ``shots + 2`` photos; its gallery is up to ``gallery`` of its photos, drawn at random; the first ``shots``
  of them give the support pairs and the next ``queries`` the query pairs (one sketch each, drawn at random
  among the photo's sketches, augmented as in :mod:`embeddings.train`);
* ``task_level="style"`` (kanji ``scheme="style"``: the training split holds one drawing style, so a task
  stands in for a user by a random set of photos): the same with photos drawn from the whole split.

The outer optimiser is AdamW over everything (``F``, ``M``, the margin network, the per-step inner rates,
the regularisers), its learning rate on a cosine over ``max(step / outer_steps, elapsed / budget)``. A run
may start from a trained triplet checkpoint (``init_from``: its ``F`` and ``M``), as the papers' meta-training
does from a pre-trained model. There is no model selection (the unseen categories are never looked at): the
last model is kept. ``last.pt`` is written atomically every ``checkpoint_every`` outer steps and at the end,
and a run started again with the same folder and configuration resumes from it.

Protocols (:func:`adaptation_tasks`, :func:`evaluate_adaptation`), on the test split of the split scheme:

* category level: for every unseen category, ``k`` support sketches of distinct photos drawn at random
  (seeded) among its sketches, the queries are all its other sketches, the gallery is all its photos;
* style level: the test split's drawings (kanji: the Kaisho style) are one task: ``k`` support sketches,
  the other sketches are the queries, the gallery is every test photo.

Acc@1 / Acc@5 are scored on complete sketches (the paper's protocol; :func:`split_rasters` with a
``fraction`` scores the queries part-way through drawing) and averaged over tasks (x100).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from embeddings.base import EmbeddingBackend, load_backend, make_backend
from embeddings.configs import MetaTrainConfig
from embeddings.losses import gallery_triplet_loss
from embeddings.meta import MetaBackend
from embeddings.nets import raster_tensor
from embeddings.semantic import category_word_vectors
from embeddings.train import TrainConfig, TripletSampler, read_last, rng_state, set_rng_state
from embeddings.triplet import TripletBackend
from sketch_env.cache import atomic_path
from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import SketchDataset
from sketch_env.device import resolve_device
from sketch_env.errors import ArgumentError
from sketch_env.log import logger
from sketch_env.metrics import ranks_from_embeddings
from sketch_env.render import render_progressive
from sketch_env.runs import check_resume, read_resume_file, run_lock
from sketch_env.threads import usable_cores

__all__ = ["MetaTrainConfig", "train_meta", "task_pools", "AdaptationTask", "adaptation_tasks", "evaluate_adaptation",
           "split_rasters"]


def train_meta(cfg: MetaTrainConfig, stop_after_steps: int | None = None) -> Path:
    """Meta-train (or resume) a ``meta`` backend; returns the path of its ``backend.pt``.

    ``stop_after_steps`` ends the call after that many outer steps of this call (a stand-in for a kill,
    used by tests).
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(usable_cores())
    if cfg.shots < 1 or cfg.queries < 1 or cfg.gallery < cfg.shots + 1 or cfg.meta_batch < 1:
        raise ArgumentError(f"need shots >= 1, queries >= 1, gallery > shots, meta_batch >= 1; got shots={cfg.shots}, "
                         f"queries={cfg.queries}, gallery={cfg.gallery}, meta_batch={cfg.meta_batch}")
    dataset = make_dataset(cfg.dataset, root=cfg.root, scheme=cfg.scheme)
    out = cfg.output_dir(dataset.scheme)
    with run_lock(out):  # one meta-training per run folder
        return _train_meta_locked(cfg, dataset, out, device, stop_after_steps)


def _train_meta_locked(cfg: MetaTrainConfig, dataset: SketchDataset, out: Path, device: torch.device,
                       stop_after_steps: int | None) -> Path:

    records = dataset.sketches("train")
    photos = dataset.photos("train")
    sketch_photo = dataset.photo_index("train")
    categories = sorted({p.category for p in photos})
    options = dict(cfg.backend_options)
    options.setdefault("task_level", "style" if dataset.scheme == "style" else "category")
    options.update(categories=categories, dataset=dataset.name, scheme=dataset.scheme,
                   train_split={"split": "train", "val_fraction": 0.0, "val_salt": "val"})
    backend = make_backend("meta", **options)
    assert isinstance(backend, MetaBackend)
    if cfg.init_from:
        source = load_backend(cfg.init_from, expect={"dataset": dataset.name, "scheme": dataset.scheme})
        if not isinstance(source, TripletBackend) or source.per_step:
            raise ArgumentError(f"{cfg.init_from}: init_from must be a one-model triplet backend (ts, b1, b2), "
                             f"not {source.name!r}")
        backend.network.load_state_dict(source.sketch_branches[0].state_dict())
    backend.to(device)
    level = backend.config["task_level"]

    photos_rgb = dataset.load_photos(photos, backend.photo_size)
    photo_rasters = backend.preprocess(photos_rgb)
    groups, category_of, pools = task_pools(photos, sketch_photo, categories, cfg.shots, level)
    if not pools:
        raise ArgumentError(f"{dataset.name} ({dataset.scheme}): no training category has {cfg.shots + 2} photos "
                         f"with sketches; lower shots")
    word_vectors = torch.from_numpy(category_word_vectors(categories, backend.config["semantic_dim"],
                                                          backend.config["semantic_vectors"])).to(device)
    if word_vectors.shape[1] != backend.decoder[-1].out_features:
        raise ArgumentError(f"semantic_vectors={backend.config['semantic_vectors']!r} gives {word_vectors.shape[1]}-d "
                         f"vectors but semantic_dim is {backend.decoder[-1].out_features}: set semantic_dim to "
                         f"{word_vectors.shape[1]} (or None, the vectors' own size)")
    sampler = TripletSampler(TrainConfig(augment=cfg.augment, steps=1), backend, photo_rasters, groups, records)

    optimizer = torch.optim.AdamW(list(backend.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "history": []}
    run_config = json.loads(json.dumps({"train": asdict(cfg) | {"out": str(out)}, "backend": backend.config},
                                       default=str))
    last = out / "last.pt"
    ckpt = read_resume_file(last, read_last)
    if ckpt is not None:
        check_resume(last, json.loads(ckpt["run_config"]), run_config)
        backend.load_state_dict(ckpt["backend"])
        backend.to(device)
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(rng, ckpt["rng"])
        state = json.loads(ckpt["state"])
        logger.info(f"resuming {out} at outer step {state['step']}")

    def save() -> None:
        backend.save(out / "backend.pt", extra={"history": json.dumps(state["history"][-200:])})
        payload = {"backend": backend.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(rng),
                   "state": json.dumps(state), "run_config": json.dumps(run_config)}
        with atomic_path(last) as tmp:
            torch.save(payload, tmp)

    budget = None if cfg.minutes is None else cfg.minutes * 60.0
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.outer_steps, initial=state["step"], desc=f"meta ({backend.config['inner']})",
               disable=not cfg.progress, unit="step")
    steps_this_call = 0
    window: list[dict[str, float]] = []
    backend.train()
    while state["step"] < cfg.outer_steps and (budget is None or state["elapsed"] < budget):
        t0 = time.perf_counter()
        frac = max(state["step"] / cfg.outer_steps, 0.0 if budget is None else state["elapsed"] / budget)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        parts = outer_step(backend, cfg, sampler, pools, category_of, word_vectors, rng, device)
        optimizer.zero_grad(set_to_none=True)
        parts.pop("loss_tensor").backward()
        optimizer.step()
        state["elapsed"] += time.perf_counter() - t0
        state["step"] += 1
        steps_this_call += 1
        window.append(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", margin=f"{parts['margin_mean']:.3f}")
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] >= cfg.outer_steps:
            row = {k: round(float(np.mean([w[k] for w in window])), 5) for k in window[0]}
            row.update(step=state["step"], elapsed=round(state["elapsed"], 1),
                       seconds_per_step=round(state["elapsed"] / max(state["step"], 1), 3),
                       inner_lrs=[round(float(v), 4) for v in backend.inner_lrs.detach().exp().cpu()])
            if device.type == "cuda":
                row["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            state["history"].append(row)
            window = []
            if not cfg.progress:
                logger.info(json.dumps(row))
            save()
        if stop_after_steps is not None and steps_this_call >= stop_after_steps:
            break
    bar.close()
    if window:
        row = {k: round(float(np.mean([w[k] for w in window])), 5) for k in window[0]}
        row.update(step=state["step"], elapsed=round(state["elapsed"], 1))
        state["history"].append(row)
    save()
    if state["step"] >= cfg.outer_steps or (budget is not None and state["elapsed"] >= budget):
        with atomic_path(out / "history.json") as tmp:
            tmp.write_text(json.dumps(state["history"], indent=1))
    if state["step"] < cfg.outer_steps and budget is not None and state["elapsed"] >= budget:
        logger.warning(f"the --minutes {cfg.minutes:g} cap cut this meta-training short at {state['step']} of "
                       f"{cfg.outer_steps} outer steps: its figures are not those of the full run")
    backend.eval()
    return out / "backend.pt"


def task_pools(photos: list, sketch_photo: np.ndarray, categories: list[str], shots: int, level: str
               ) -> tuple[list[list[int]], np.ndarray, list[np.ndarray]]:
    """What training tasks are drawn from: each photo's sketch indices, each photo's category index, and the
    pools of photo indices a task's gallery is drawn from (module docstring): per category with at least
    ``shots + 2`` photos that have sketches (``level="category"``), or all such photos (``"style"``)."""
    groups: list[list[int]] = [[] for _ in photos]
    for sid, pid in enumerate(sketch_photo):
        groups[pid].append(sid)
    with_sketch = np.array([len(g) > 0 for g in groups])
    category_of = np.array([categories.index(p.category) for p in photos])
    if level == "category":
        pools = [np.flatnonzero(with_sketch & (category_of == c)) for c in range(len(categories))]
        pools = [p for p in pools if len(p) >= shots + 2]
    else:
        pools = [np.flatnonzero(with_sketch)]
    return groups, category_of, pools


def outer_step(backend: MetaBackend, cfg: MetaTrainConfig, sampler: TripletSampler, pools: list[np.ndarray],
                category_of: np.ndarray, word_vectors: torch.Tensor, rng: np.random.Generator,
                device: torch.device) -> dict[str, Any]:
    """One outer step's loss over ``meta_batch`` tasks (module docstrings); returns the loss tensor and
    its logged parts."""
    c = backend.config
    tasks = []
    for _ in range(cfg.meta_batch):
        pool = pools[rng.integers(len(pools))]
        ids = rng.permutation(pool)[: cfg.gallery]
        tasks.append((ids, min(cfg.queries, len(ids) - cfg.shots)))
    all_ids = np.concatenate([t[0] for t in tasks])
    sk, ph = sampler.batch(all_ids, rng, None)
    # sketches of the support and query photos only (the other gallery photos are negatives)
    keep = np.concatenate([np.arange(len(ids)) < cfg.shots + nq for ids, nq in tasks])
    x_sk = raster_tensor(sk[keep], device)
    x_ph = raster_tensor(ph, device)
    f_sk = backend.network.features(x_sk)
    f_ph = backend.network.features(x_ph)
    create_graph = not c["first_order"]
    fixed_margin = float(c["margin"])
    query_losses, margins, inter_losses = [], [], []
    s_off = g_off = 0
    for ids, nq in tasks:
        k, g = cfg.shots, len(ids)
        fs, fg = f_sk[s_off : s_off + k + nq], f_ph[g_off : g_off + g]
        positive = torch.arange(k + nq, device=device)
        margin = backend.task_margin(fs[:k], fg[:k])
        margins.append(float(margin.detach()))
        if c["inner"] == "head":
            weight, bias = backend.adapt_head(fs[:k], fg, positive[:k], margin, create_graph=create_graph)
            zq = F.normalize(F.linear(fs[k:], weight, bias), dim=-1)
            zg = F.normalize(F.linear(fg, weight, bias), dim=-1)
        else:
            from torch.func import functional_call

            xs, xg = x_sk[s_off : s_off + k], x_ph[g_off : g_off + g]
            params = backend.adapt_all(xs, xg, positive[:k], margin, create_graph=create_graph)
            buffers = dict(backend.network.named_buffers())
            zq = functional_call(backend.network, {**params, **buffers}, (x_sk[s_off + k : s_off + k + nq],))
            zg = functional_call(backend.network, {**params, **buffers}, (xg,))
        query_losses.append(gallery_triplet_loss(zq, zg, positive[k:], fixed_margin))
        if c["task_level"] == "style" and c["intermediate_weight"] > 0:
            inter_losses.append(gallery_triplet_loss(F.normalize(fs, dim=-1), F.normalize(fg, dim=-1), positive,
                                                     fixed_margin))
        s_off += k + nq
        g_off += g
    loss = torch.stack(query_losses).mean()
    parts: dict[str, Any] = {"query_loss": loss.item()}
    if c["domain_weight"] > 0:
        l_d = backend.discriminator_loss(f_sk, f_ph)
        loss = loss + c["domain_weight"] * l_d
        parts["L_D"] = l_d.item()
    sketch_cats = torch.as_tensor(category_of[all_ids[keep]], device=device)
    photo_cats = torch.as_tensor(category_of[all_ids], device=device)
    if c["task_level"] == "category" and c["category_weight"] > 0:
        l_c = F.cross_entropy(backend.classifier(torch.cat([f_sk, f_ph])), torch.cat([sketch_cats, photo_cats]))
        loss = loss + c["category_weight"] * l_c
        parts["L_C"] = l_c.item()
    if inter_losses:
        l_ud = torch.stack(inter_losses).mean()
        loss = loss + c["intermediate_weight"] * l_ud
        parts["L_ud"] = l_ud.item()
    if c["semantic_weight"] > 0:
        l_s = backend.semantic_loss(torch.cat([f_sk, f_ph]), word_vectors[torch.cat([sketch_cats, photo_cats])])
        loss = loss + c["semantic_weight"] * l_s
        parts["L_S"] = l_s.item()
    parts.update(loss=loss.item(), margin_mean=float(np.mean(margins)), margin_min=float(np.min(margins)),
                 margin_max=float(np.max(margins)), loss_tensor=loss)
    return parts


# -- protocols ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptationTask:
    """One k-shot task of a protocol: indices into the split's sketches and photos."""

    name: str
    gallery: np.ndarray
    support: np.ndarray
    queries: np.ndarray


def adaptation_tasks(dataset: SketchDataset, shots: int, seed: int, split: str = "test",
                     level: str | None = None) -> list[AdaptationTask]:
    """The tasks of the category-level (one per test category) or style-level (the whole test split)
    protocol (module docstring), with ``shots`` support sketches of distinct photos drawn by ``seed``."""
    level = level or ("style" if dataset.scheme == "style" else "category")
    photos = dataset.photos(split)
    sketch_photo = dataset.photo_index(split)
    if level == "category":
        cats = sorted({p.category for p in photos})
        groups = [(c, np.flatnonzero([p.category == c for p in photos])) for c in cats]
    elif level == "style":
        groups = [(f"{dataset.name}-{dataset.scheme}-{split}", np.arange(len(photos)))]
    else:
        raise ArgumentError(f"level must be 'category' or 'style', got {level!r}")
    tasks = []
    for name, gallery in groups:
        in_task = np.isin(sketch_photo, gallery)
        sketch_ids = np.flatnonzero(in_task)
        rng = np.random.default_rng([seed, int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")])
        order = rng.permutation(sketch_ids)
        support, seen = [], set()
        for sid in order:  # k sketches of k distinct photos
            if int(sketch_photo[sid]) not in seen:
                support.append(int(sid))
                seen.add(int(sketch_photo[sid]))
            if len(support) == shots:
                break
        queries = np.setdiff1d(sketch_ids, support)
        if len(support) < shots or not len(queries):
            raise ArgumentError(f"{dataset.name} ({dataset.scheme}) {split}: task {name!r} has too few sketches for "
                             f"{shots} support pairs and a query ({len(sketch_ids)} sketches of {len(gallery)} photos)")
        tasks.append(AdaptationTask(name, gallery, np.asarray(support), queries))
    return tasks


def split_rasters(dataset: SketchDataset, split: str, render_config, fraction: float = 1.0) -> np.ndarray:
    """Every sketch of ``split`` rendered with its first ``ceil(fraction * points)`` points (1.0: complete,
    as the paper scores; less: the sketch part-way, as on the fly): uint8 ``(N, H, W)``."""
    if not 0 < fraction <= 1:
        raise ArgumentError(f"fraction must be in (0, 1], got {fraction}")
    records = dataset.sketches(split)
    out = np.empty((len(records), render_config.size, render_config.size), dtype=np.uint8)
    for i, rec in enumerate(records):
        cut = max(1, math.ceil(fraction * rec.sketch.num_points))
        render_progressive(rec.sketch, np.array([cut]), render_config, out=out[i : i + 1])
    return out


Adapter = Callable[[EmbeddingBackend, np.ndarray, np.ndarray, np.ndarray], EmbeddingBackend]


def evaluate_adaptation(backend: EmbeddingBackend, adapter: Adapter | None, tasks: list[AdaptationTask],
                        rasters: np.ndarray, photos_rgb: np.ndarray, sketch_photo: np.ndarray,
                        query_rasters: np.ndarray | None = None) -> dict[str, Any]:
    """Acc@1 / Acc@5 (x100, mean over tasks) of the queries of each task against its gallery, after
    ``adapter(backend, support_rasters, support_photos, gallery_photos)`` (None: no adaptation). The support
    set is taken from ``rasters`` (complete sketches), the queries from ``query_rasters`` (default: the same;
    pass partial sketches to score part-way through drawing)."""
    query_rasters = rasters if query_rasters is None else query_rasters
    acc1, acc5, per_task = [], [], {}
    for task in tasks:
        model = backend
        if adapter is not None:
            model = adapter(backend, rasters[task.support], photos_rgb[sketch_photo[task.support]],
                            photos_rgb[task.gallery])
        gallery = model.photo_embeddings(photos_rgb[task.gallery])
        queries = model.queries(model.sketch_features(query_rasters[task.queries]))
        lookup = np.full(len(photos_rgb), -1)
        lookup[task.gallery] = np.arange(len(task.gallery))
        ranks = ranks_from_embeddings(queries, gallery, lookup[sketch_photo[task.queries]])
        a1, a5 = 100 * float((ranks <= 1).mean()), 100 * float((ranks <= 5).mean())
        acc1.append(a1)
        acc5.append(a5)
        per_task[task.name] = {"A@1": a1, "A@5": a5, "queries": int(len(task.queries)),
                               "gallery": int(len(task.gallery))}
    return {"A@1": float(np.mean(acc1)), "A@5": float(np.mean(acc5)), "tasks": per_task}
