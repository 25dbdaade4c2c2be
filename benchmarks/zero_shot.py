"""The zero-shot SBIR table (Yelamarthi et al., ECCV 2018, Table 3) on a category split, over seeds.

    python -m benchmarks.zero_shot                         # kanji, 15 unseen radicals, seeds 0 1 2
    python -m benchmarks.zero_shot --dataset sketchy --root /data/Sketchy   # the 21 unseen Sketchy classes

For each seed: a B1 backbone trained on the split's training categories (reused when its run folder holds
a finished run; else trained, ``--backbone-epochs`` capped by ``--backbone-minutes``), its pooled features
of every train sketch and photo and of every test sketch at every step of a ``PointSchedule(--steps)``
(cached), then one model per row, all on the frozen backbone features and all trained the same way
(Adam 2e-4, beta_1 0.5, batches of 128, ``--epochs`` epochs, on the training categories only):

=========================  ==================================================================================
row                        query -> gallery
=========================  ==================================================================================
baseline                   the backbone's pooled sketch feature -> pooled photo features, cosine
Siamese                    a shared MLP head, contrastive loss on categories
coarse-grained triplet     an MLP head per domain, triplet loss with category-level positives
fine-grained triplet       the B1 backbone's own embedding (instance-level triplet; no head)
direct regression          an MLP regressing the photo feature from the sketch feature (MSE), cosine
CAAE, CVAE                 the generative backends (``embeddings.cvae``), the mean of ``--samples`` decoded
                           features; CVAE min-over-samples as an extra row
CVAE, lambda = 0           ablation: the CVAE trained without its regressor term
generation ceiling         diagnostic: each sketch's own photo feature as the query, the figure a perfect
                           generator of photo features would reach in this feature space
=========================  ==================================================================================

Scored on the complete test sketches against every photo of the unseen categories, relevance = same
category: P@200, mAP@200 as the paper defines it (divided by 200) and the standard mAP@200 (divided by
the relevant photos retrieved), mean and 95 % t-interval over the seeds. The "perfect ranking" row is the
ceiling the category sizes allow (a category with fewer than 200 photos cannot fill a top 200).

Also: P@200 against the share of the sketch drawn (the on-the-fly view) for CVAE, the fine-grained
triplet, Siamese and the baseline (``onthefly.csv``, ``onthefly.png``), and the CVAE's retrieval cost per
query with ``--samples`` samples, batched over all test queries and one query at a time.
Writes ``README.md`` (the report: command, machine, date, the tables, the plot), ``zero_shot.md``,
``zero_shot.csv``, ``onthefly.csv``, ``onthefly.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import command_line, mean_ci, write_readme
from benchmarks.executor import GridRun, add_executor_args, executor_options, run_grid
from embeddings.base import l2_normalise, load_backend
from embeddings.train import TrainConfig, train_backend
from embeddings.zero_shot import (
    ZeroShotTrainConfig,
    fit_category_head,
    fit_regression,
    split_features,
    train_zero_shot,
)
from sketch_env.cache import atomic_path, stable_hash, write_csv, write_text
from sketch_env.datasets import make_dataset
from sketch_env.metrics import (
    ap_at_k,
    ap_at_k_zs_sbir,
    category_retrieval_metrics,
    precision_at_k,
    top_k_relevance,
)

ROWS = ("baseline", "siamese", "coarse", "fine", "regression", "caae", "cvae", "cvae_min", "cvae_l0", "oracle")
LABELS = {
    "baseline": "Baseline (backbone features)",
    "siamese": "Siamese (contrastive, categories)",
    "coarse": "Coarse-grained triplet",
    "fine": "Fine-grained triplet (B1)",
    "regression": "Direct regression",
    "caae": "CAAE",
    "cvae": "CVAE",
    "cvae_min": "CVAE, min over samples",
    "cvae_l0": "CVAE without the regressor (lambda = 0)",
    "oracle": "Generation ceiling: the true photo's feature as query",
}
ONTHEFLY = ("cvae", "fine", "siamese", "baseline")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _backbone(args: argparse.Namespace, runs: Path, seed: int) -> Path:
    """The seed's backbone: ``--backbone`` (checked to be trained on this dataset's category split), else its B1
    checkpoint, reused when its run finished (history.json written), else trained."""
    if args.backbone:
        path = Path(args.backbone.replace("{seed}", str(seed)))
        if not path.is_file():
            raise SystemExit(f"--backbone: no checkpoint {path} for seed {seed}")
        config = load_backend(path).config
        trained_on = (config.get("dataset"), config.get("scheme"))
        if trained_on != (args.dataset, "category"):
            raise SystemExit(
                f"--backbone: {path} was trained on {trained_on[0]!r} with split scheme {trained_on[1]!r}; the "
                f"zero-shot table needs a backbone trained on {args.dataset!r}'s category split"
            )
        return path
    folder = runs / f"b1-s{seed}"
    if (folder / "backend.pt").is_file() and (folder / "history.json").is_file():
        return folder / "backend.pt"
    _log(
        f"[seed {seed}] training the backbone: B1, {args.backbone_epochs} epochs"
        + (f", at most {args.backbone_minutes:g} min" if args.backbone_minutes is not None else "") + f" -> {folder}"
    )
    cfg = TrainConfig(
        backend="b1",
        dataset=args.dataset,
        root=args.root,
        scheme="category",
        epochs=args.backbone_epochs,
        minutes=args.backbone_minutes,
        seed=seed,
        device="cpu",
        steps=args.steps,
        progress=False,
        out=str(folder),
    )
    return train_backend(cfg)


def _generative(
    args: argparse.Namespace, runs: Path, name: str, backbone: Path, seed: int, folder: str = "", **options
):
    """Train (or reuse, when its recorded training configuration is the same) a cvae / caae checkpoint."""
    cfg = ZeroShotTrainConfig(
        backend=name,
        backbone=str(backbone),
        root=args.root,
        out=str(runs / f"{folder or name}-s{seed}"),
        epochs=args.epochs,
        seed=seed,
        device="cpu",
        progress=False,
        threads=args.threads,
        backend_options={"samples": args.samples, "sample_seed": seed, **options},
    )
    history = Path(cfg.out) / "history.json"
    wanted = json.loads(json.dumps(asdict(cfg), default=str))
    fingerprint = load_backend(backbone).fingerprint()
    if history.is_file() and (Path(cfg.out) / "backend.pt").is_file():
        run = json.loads(history.read_text())
        if run.get("train") == wanted:
            model = load_backend(Path(cfg.out) / "backend.pt")
            if model.config["backbone_fingerprint"] == fingerprint:
                return model, run["train_seconds"]
    path = train_zero_shot(cfg)
    return load_backend(path), json.loads(history.read_text())["train_seconds"]


def _metrics_of_distances(
    distance_fn, n: int, q_labels: np.ndarray, g_labels: np.ndarray, k: int, chunk: int = 128
) -> dict[str, float]:
    """The same figures as ``category_retrieval_metrics`` from a distance function of query indices."""
    sums = np.zeros(3)
    for lo in range(0, n, chunk):
        idx = np.arange(lo, min(lo + chunk, n))
        rel = top_k_relevance(distance_fn(idx), q_labels[idx], g_labels, k)
        sums += [precision_at_k(rel, k).sum(), ap_at_k_zs_sbir(rel, k).sum(), ap_at_k(rel, k).sum()]
    return {f"P@{k}": sums[0] / n, f"mAP@{k} (ZS-SBIR)": sums[1] / n, f"mAP@{k}": sums[2] / n}


def _perfect(q_labels: np.ndarray, g_labels: np.ndarray, k: int) -> dict[str, float]:
    """The ceiling: every relevant photo first (the relevance list of a perfect ranking)."""
    counts = {c: int((g_labels == c).sum()) for c in np.unique(q_labels)}
    rel = np.array([np.arange(k) < counts[c] for c in q_labels])
    return {
        f"P@{k}": precision_at_k(rel, k).mean(),
        f"mAP@{k} (ZS-SBIR)": ap_at_k_zs_sbir(rel, k).mean(),
        f"mAP@{k}": ap_at_k(rel, k).mean(),
        "queries": len(q_labels),
        "gallery_size": len(g_labels),
    }


def seed_run(folder: Path, args: argparse.Namespace, seed: int) -> tuple[dict, dict, dict | None]:  # a grid run
    """One seed's rows, curves and CVAE retrieval cost (None when not measured), its runs in ``folder``."""
    torch.set_num_threads(args.threads)
    dataset = make_dataset(args.dataset, root=args.root, scheme="category")
    timing: dict = {}
    rows, curves = _seed_rows(args, dataset, folder, seed, timing)
    return rows, curves, timing.get(seed)


def _seed_rows(args, dataset, runs: Path, seed: int, timing: dict) -> tuple[dict, dict]:
    """Every row's metrics (complete sketches) and the on-the-fly P@k curves for one seed."""
    k, steps = args.k, args.steps
    t0 = time.perf_counter()
    backbone_path = _backbone(args, runs, seed)
    backbone = load_backend(backbone_path)
    train = split_features(backbone, dataset, "train", steps=1, progress=args.progress)
    test = split_features(backbone, dataset, "test", steps=steps, progress=args.progress)
    _log(
        f"[seed {seed}] backbone {backbone_path} ({backbone.fingerprint()}); features ready in "
        f"{time.perf_counter() - t0:.0f} s: train {train.sketch.shape[0]} sketches / {len(train.photo)} photos "
        f"({len(train.categories)} categories), test {test.sketch.shape[0]} / {len(test.photo)} "
        f"({len(test.categories)} categories), F = {train.photo.shape[1]}"
    )
    s_train = np.asarray(train.sketch[:, 0])
    x_train = train.photo[train.photo_index]
    n, _, dim = test.sketch.shape
    all_steps = np.asarray(test.sketch).reshape(n * steps, dim)
    complete = np.asarray(test.sketch[:, -1])
    q_labels = np.array(test.categories)[test.sketch_category]
    g_labels = np.array(test.categories)[test.photo_category]
    photo_unit = l2_normalise(test.photo)
    results: dict[str, dict] = {}
    curves: dict[str, np.ndarray] = {}

    def score(name: str, queries_complete, gallery, seconds: float, queries_all=None) -> None:
        m = category_retrieval_metrics(queries_complete, gallery, q_labels, g_labels, k)
        results[name] = {**m, "train_s": seconds}
        if queries_all is not None:
            q_all = np.asarray(queries_all).reshape(n, steps, -1)
            curves[name] = np.array(
                [
                    category_retrieval_metrics(q_all[:, t], gallery, q_labels, g_labels, k)[f"P@{k}"]
                    for t in range(steps)
                ]
            )
        _log(
            f"[seed {seed}] {LABELS[name]:34s} P@{k} {m[f'P@{k}']:.3f}  mAP@{k} (ZS-SBIR) "
            f"{m[f'mAP@{k} (ZS-SBIR)']:.3f}  mAP@{k} {m[f'mAP@{k}']:.3f}  (trained {seconds:.0f} s)"
        )

    rows = args.rows
    if "baseline" in rows:
        score("baseline", l2_normalise(complete), photo_unit, 0.0, l2_normalise(all_steps))
    if "fine" in rows:
        score("fine", np.asarray(test.fg_queries[:, -1]), test.fg_gallery, 0.0, test.fg_queries)
    for name, loss in (("siamese", "contrastive"), ("coarse", "triplet")):
        if name in rows:
            t = time.perf_counter()
            s_head, p_head = fit_category_head(
                loss,
                s_train,
                train.photo,
                train.sketch_category,
                train.photo_category,
                embed_dim=backbone.embed_dim,
                epochs=args.epochs,
                seed=seed,
                progress=args.progress,
            )
            seconds = time.perf_counter() - t
            score(
                name,
                s_head.embed(complete),
                p_head.embed(test.photo),
                seconds,
                s_head.embed(all_steps) if name in ONTHEFLY else None,
            )
    if "regression" in rows:
        t = time.perf_counter()
        head = fit_regression(s_train, x_train, epochs=args.epochs, seed=seed, progress=args.progress)
        score("regression", head.embed(complete), photo_unit, time.perf_counter() - t)
    for name in ("caae", "cvae"):
        if name not in rows and not (name == "cvae" and "cvae_min" in rows):
            continue
        model, seconds = _generative(args, runs, name, backbone_path, seed)
        if name in rows:
            score(
                name,
                model.queries(complete),
                photo_unit,
                seconds,
                model.queries(all_steps) if name in ONTHEFLY else None,
            )
        if name == "cvae":
            timing[seed] = _cost(model, complete, photo_unit)
            _log(f"[seed {seed}] CVAE retrieval cost: {json.dumps(timing[seed])}")
        if name == "cvae" and "cvae_min" in rows:
            t = time.perf_counter()
            m = _metrics_of_distances(
                lambda idx, model=model: model.sample_distance(complete[idx], photo_unit), n, q_labels, g_labels, k
            )
            results["cvae_min"] = {**m, "train_s": seconds, "queries": n, "gallery_size": len(photo_unit)}
            _log(
                f"[seed {seed}] {LABELS['cvae_min']:34s} P@{k} {m[f'P@{k}']:.3f}  mAP@{k} (ZS-SBIR) "
                f"{m[f'mAP@{k} (ZS-SBIR)']:.3f}  mAP@{k} {m[f'mAP@{k}']:.3f}  ({time.perf_counter() - t:.0f} s)"
            )
    if "cvae_l0" in rows:
        model, seconds = _generative(args, runs, "cvae", backbone_path, seed, folder="cvae-l0", regression_weight=0.0)
        score("cvae_l0", model.queries(complete), photo_unit, seconds)
    if "oracle" in rows:  # what a perfect generator of photo features would reach in this feature space
        score("oracle", photo_unit[test.photo_index], photo_unit, 0.0)
    results["perfect"] = _perfect(q_labels, g_labels, k)
    return results, curves


def _cost(model, features: np.ndarray, gallery: np.ndarray, single: int = 100) -> dict[str, float]:
    """Milliseconds per query of the CVAE query (M decoded samples averaged), batched over every query and
    one query at a time, and of ranking the gallery with it."""
    model.queries(features[:8])  # warm-up
    t = time.perf_counter()
    q = model.queries(features)
    batched = (time.perf_counter() - t) / len(features)
    picks = features[: min(single, len(features))]
    t = time.perf_counter()
    for f in picks:
        model.queries(f[None])
    one = (time.perf_counter() - t) / len(picks)
    t = time.perf_counter()
    np.argsort(-(q @ gallery.T), axis=1)
    rank = (time.perf_counter() - t) / len(q)
    return {
        "samples": int(model.config["samples"]),
        "queries": len(features),
        "gallery": len(gallery),
        "query_ms_batched": 1e3 * batched,
        "query_ms_one_at_a_time": 1e3 * one,
        "rank_ms": 1e3 * rank,
    }


def _table(summary: dict, k: int, seeds: list[int]) -> str:
    cols = (f"P@{k}", f"mAP@{k} (ZS-SBIR)", f"mAP@{k}")
    lines = ["| method | " + " | ".join(cols) + " | train (s) |", "| --- | " + "---: | " * (len(cols) + 1)]
    for name, row in summary.items():
        cells = []
        for c in cols:
            mean, half = row[c]
            cells.append(f"{mean:.3f} ± {half:.3f}" if len(seeds) > 1 and name != "perfect" else f"{mean:.3f}")
        train = row.get("train_s")
        cells.append("-" if train is None else f"{train[0]:.0f}")
        lines.append(f"| {LABELS.get(name, 'Perfect ranking (ceiling)')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(curves: dict[str, np.ndarray], path: Path, k: int, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, per_seed in curves.items():
        steps = per_seed.shape[1]
        pct = 100.0 * np.arange(1, steps + 1) / steps
        mean = per_seed.mean(axis=0)
        ax.plot(pct, mean, marker=".", label=LABELS[name])
        if len(per_seed) > 1:
            ax.fill_between(pct, per_seed.min(axis=0), per_seed.max(axis=0), alpha=0.15)
    ax.set_xlabel("% of sketch drawn")
    ax.set_ylabel(f"P@{k}")
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji", help="kanji (15 unseen radicals) | sketchy (21 unseen classes)")
    p.add_argument("--root", default=None, help="data folder (sketchy)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--epochs", type=int, default=25, help="epochs of every head and generative model")
    p.add_argument("--samples", type=int, default=100, help="M: decoded samples per CVAE / CAAE query")
    p.add_argument("--k", type=int, default=200, help="top k scored (P@k, mAP@k)")
    p.add_argument("--steps", type=int, default=20, help="schedule length S of the on-the-fly view")
    p.add_argument("--backbone-epochs", type=int, default=30)
    p.add_argument("--backbone-minutes", type=float, default=None,
                   help="an optional cap on each backbone's training time (a run it cuts short says so)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for these small models on a busy CPU)"
    )
    p.add_argument(
        "--backbone",
        default=None,
        metavar="PATH",
        help="every seed's frozen backbone from this checkpoint instead of a B1 trained here ('{seed}' in PATH is "
        "replaced by the seed), e.g. a meta backend whose F learnt a category classifier (L_C) on the seen categories; "
        "its heads and generative models go to a run folder of their own",
    )
    p.add_argument("--runs", default="runs/benchmarks/zero_shot", help="run folders (checkpoints)")
    add_executor_args(p, "seeds at once (worker processes)")
    p.add_argument("--out", default="benchmarks/results/zero_shot")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    dataset = make_dataset(args.dataset, root=args.root, scheme="category")
    runs = Path(args.runs) / f"{args.dataset}-category"
    if args.backbone:  # not the B1 runs' folder: their CVAEs would be retrained over another backbone
        runs = runs.with_name(f"{runs.name}-backbone-{stable_hash(args.backbone)[:10]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _log(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
        f"{args.threads} torch threads; torch {torch.__version__}"
    )
    _log(f"{args.dataset} category split: test categories {sorted({r.category for r in dataset.photos('test')})}")

    per_seed, curves, timing = {}, {}, {}
    grid = [GridRun(key=f"s{seed}", folder=runs.resolve() / f"s{seed}", fn=seed_run, cpus=args.threads,
                    kwargs={"args": args, "seed": seed}) for seed in args.seeds]
    for seed, (rows, seed_curves, cost) in zip(args.seeds, run_grid(grid, executor_options(args, processes=True))):
        per_seed[seed] = rows
        if cost is not None:
            timing[seed] = cost
        for name, curve in seed_curves.items():
            curves.setdefault(name, []).append(curve)
    elapsed = time.perf_counter() - start

    k = args.k
    order = [r for r in ROWS if r in args.rows] + ["perfect"]
    summary = {}
    for name in order:
        row = {
            c: mean_ci([per_seed[s][name][c] for s in args.seeds])
            for c in (f"P@{k}", f"mAP@{k} (ZS-SBIR)", f"mAP@{k}")
        }
        if name != "perfect":
            row["train_s"] = mean_ci([per_seed[s][name]["train_s"] for s in args.seeds])
        summary[name] = row
    table = _table(summary, k, args.seeds)
    ex = per_seed[args.seeds[0]]["perfect"]
    cost = (
        {key: float(np.mean([timing[s][key] for s in timing])) for key in next(iter(timing.values()))} if timing else {}
    )
    command = command_line("zero_shot", argv)
    notes = [
        f"`{command}` ({platform.machine()}, CPU, {args.threads} torch thread(s); seeds {args.seeds}; "
        f"{elapsed / 60:.1f} min in this call, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        f"{ex.get('queries', '?')} complete test sketches of the unseen categories against all "
        f"{ex.get('gallery_size', '?')} of their photos; relevant = same category. Mean ± 95 % t-interval over the "
        f"seeds (each seed: its own backbone and its own heads)"
        + (f"; backbone: `{args.backbone}`." if args.backbone else "."),
        "",
        table,
    ]
    if cost:
        notes += [
            "",
            f"CVAE retrieval cost, M = {cost['samples']:.0f} samples, mean over seeds: "
            f"{cost['query_ms_batched']:.3f} ms per query batched over {cost['queries']:.0f} queries, "
            f"{cost['query_ms_one_at_a_time']:.2f} ms one query at a time; ranking "
            f"{cost['gallery']:.0f} photos {cost['rank_ms']:.3f} ms per query.",
        ]
    text = "\n".join(notes) + "\n"
    print(text)
    write_text(out / "zero_shot.md", text)
    write_csv(out / "zero_shot.csv",
              [[LABELS.get(name, "Perfect ranking (ceiling)"), s, f"{r[f'P@{k}']:.6f}",
                f"{r[f'mAP@{k} (ZS-SBIR)']:.6f}", f"{r[f'mAP@{k}']:.6f}", f"{r.get('train_s', 0.0):.2f}"]
               for s in args.seeds for name in order for r in [per_seed[s][name]]],
              header=["method", "seed", f"P@{k}", f"mAP@{k} (ZS-SBIR)", f"mAP@{k}", "train_s"])
    if curves:
        arrays = {name: np.stack(c) for name, c in curves.items()}
        write_csv(out / "onthefly.csv",
                  [[LABELS[name], s, f"{100 * (t + 1) / per.shape[1]:.4g}", f"{per[i, t]:.6f}"]
                   for name, per in arrays.items() for i, s in enumerate(args.seeds) for t in range(per.shape[1])],
                  header=["method", "seed", "percent", f"P@{k}"])
        _plot(arrays, out / "onthefly.png", k, f"{args.dataset}: unseen categories, P@{k} over the sketch")
        percents = (25, 50, 75, 100)
        flines = [f"P@{k} against the share of the sketch drawn (`onthefly.csv`), mean of the {len(args.seeds)} "
                  "seed(s):", "", "| % of the sketch | " + " | ".join(map(str, percents)) + " |",
                  "| --- |" + " ---: |" * len(percents)]
        for name, per in arrays.items():
            marks = {pct: per[:, int(round(pct / 100 * per.shape[1])) - 1].mean() for pct in percents}
            _log(f"on-the-fly {LABELS[name]:34s} " + "  ".join(f"{p}%: {v:.3f}" for p, v in marks.items()))
            flines.append(f"| {LABELS[name]} | " + " | ".join(f"{v:.3f}" for v in marks.values()) + " |")
        notes += ["", *flines]
    write_readme(out, f"Zero-shot SBIR on {args.dataset}: unseen categories", command, "\n".join(notes[2:]),
                 seconds=time.perf_counter() - start,
                 notes=f"CPU, {args.threads} torch thread(s); seeds {args.seeds}; heads trained {args.epochs} epochs, "
                 f"M = {args.samples} samples per CVAE / CAAE query.",
                 plots=["onthefly.png"] if curves else [],
                 files=["zero_shot.md", "zero_shot.csv", *(["onthefly.csv", "onthefly.png"] if curves else [])])
    _log(f"wrote {out / 'README.md'}, {out / 'zero_shot.md'}, {out / 'zero_shot.csv'}, {out / 'onthefly.csv'}, "
         f"{out / 'onthefly.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
