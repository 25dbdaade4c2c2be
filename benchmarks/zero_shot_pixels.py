"""Zero-shot rows over a fixed, untrained "backbone": downsampled pixels (a diagnostic for the CVAE table).

    python -m benchmarks.zero_shot_pixels                 # kanji category split, 16 x 16 pixels, seeds 0 1 2
    python -m benchmarks.zero_shot_pixels --size 32 --seeds 0

The CVAE ranks photos in its backbone's photo feature space, so it can reach at most what the "generation
ceiling" (each sketch's own photo's feature as the query) reaches there. With the B1 backbone that ceiling
(0.270 P@200 on kanji) lies below the coarse-grained triplet row, which is why ``benchmarks/zero_shot.py``
cannot show the paper's order. This script asks the next question: in a feature space with *more* category
structure, does the CVAE get closer? The feature of a sketch raster or a photo (inverted grey) is the image
area-downsampled to ``--size`` x ``--size`` pixels, each vector centred on its mean: nothing is trained, so
nothing has seen an unseen category. Every row is then trained and scored exactly as in
``benchmarks/zero_shot.py`` (the same functions: :func:`embeddings.zero_shot.fit_category_head`,
:func:`~embeddings.zero_shot.fit_regression`, :func:`~embeddings.zero_shot.fit_cvae`; Adam 2e-4, beta_1
0.5, batches of 128, ``--epochs`` epochs; complete sketches; P@200 and the paper's mAP@200 over every photo
of the unseen categories, relevance = same category; mean ± 95 % t-interval over the seeds).

Writes ``README.md`` (the report: command, machine, date, the table), ``zero_shot_pixels.md`` and
``zero_shot_pixels.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import command_line, mean_ci, write_readme
from benchmarks.executor import GridRun, add_executor_args, executor_options, run_grid
from embeddings.base import l2_normalise
from embeddings.cvae import FeatureCVAE, layer_sizes, unit_rms
from embeddings.meta_train import split_rasters
from embeddings.triplet import default_config, preprocess_photos
from embeddings.zero_shot import fit_category_head, fit_cvae, fit_regression
from sketch_env.cache import atomic_path
from sketch_env.datasets import make_dataset
from sketch_env.metrics import category_retrieval_metrics
from sketch_env.render import RenderConfig

ROWS = {
    "baseline": "Baseline (pixel features)",
    "siamese": "Siamese (contrastive, categories)",
    "coarse": "Coarse-grained triplet",
    "regression": "Direct regression",
    "cvae": "CVAE",
    "cvae_l0": "CVAE without the regressor (lambda = 0)",
    "oracle": "Generation ceiling: the true photo's feature as query",
}
METRICS = ("P@200", "mAP@200 (ZS-SBIR)")


def pixel_features(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, size * size)`` float32: each image (grey, or RGB averaged to grey) area-downsampled to
    ``size`` x ``size`` and centred on its own mean."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images.mean(axis=-1)
    out = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA).ravel() for im in images])
    return out - out.mean(axis=1, keepdims=True)


def split_pixels(dataset, split: str, size: int) -> dict[str, np.ndarray]:
    """The split's complete sketches and its photos as pixel features, with the sketch -> photo index and
    both sides' category indices (categories numbered within the split)."""
    render = RenderConfig(**default_config("b1")["render"])
    photos = dataset.photos(split)
    categories = sorted({p.category for p in photos})
    index = {c: i for i, c in enumerate(categories)}
    return {
        "sketch": pixel_features(split_rasters(dataset, split, render), size),
        "photo": pixel_features(preprocess_photos(dataset.load_photos(photos, render.size), "invert"), size),
        "photo_index": np.asarray(dataset.photo_index(split)),
        "sketch_category": np.array([index[r.category] for r in dataset.sketches(split)]),
        "photo_category": np.array([index[p.category] for p in photos]),
    }


def _cvae_queries(train: dict, test: dict, regression_weight: float, epochs: int, seed: int) -> np.ndarray:
    """Train a CVAE (the ``cvae`` backend's network and losses) on the pixel pairs; the mean of 100 decoded
    samples per test sketch, normalised."""
    dim = train["sketch"].shape[1]
    hidden, latent = layer_sizes(dim)
    torch.manual_seed(seed)
    model = FeatureCVAE(dim, hidden, latent)
    trainee = types.SimpleNamespace(model=model, device=torch.device("cpu"), name="cvae",
                                    config={"regression_weight": regression_weight, "prior_weight": 1.0})
    fit_cvae(trainee, train["sketch"], train["photo"][train["photo_index"]], epochs=epochs, seed=seed, progress=False)
    model.eval()
    codes = torch.randn(100, latent, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        generated = model.generate_mean(torch.from_numpy(unit_rms(test["sketch"])), codes).numpy()
    return l2_normalise(generated)


def seed_rows(train: dict, test: dict, seed: int, epochs: int) -> dict[str, dict[str, float]]:
    labels = (test["sketch_category"], test["photo_category"])
    photo_unit = l2_normalise(test["photo"])
    results: dict[str, dict[str, float]] = {}

    def score(name: str, queries: np.ndarray, gallery: np.ndarray, t0: float) -> None:
        m = category_retrieval_metrics(queries, gallery, *labels, k=200)
        results[name] = {c: float(m[c]) for c in METRICS} | {"train_s": time.perf_counter() - t0}
        print(f"[seed {seed}] {ROWS[name]:55s} P@200 {m['P@200']:.3f}  mAP@200 (ZS-SBIR) "
              f"{m['mAP@200 (ZS-SBIR)']:.3f}  ({results[name]['train_s']:.0f} s)", flush=True)

    t = time.perf_counter()
    score("baseline", l2_normalise(test["sketch"]), photo_unit, t)
    for name, loss in (("siamese", "contrastive"), ("coarse", "triplet")):
        t = time.perf_counter()
        s_head, p_head = fit_category_head(loss, train["sketch"], train["photo"], train["sketch_category"],
                                           train["photo_category"], embed_dim=64, epochs=epochs, seed=seed,
                                           progress=False)
        score(name, s_head.embed(test["sketch"]), p_head.embed(test["photo"]), t)
    t = time.perf_counter()
    head = fit_regression(train["sketch"], train["photo"][train["photo_index"]], epochs=epochs, seed=seed,
                          progress=False)
    score("regression", head.embed(test["sketch"]), photo_unit, t)
    for name, weight in (("cvae", 10.0), ("cvae_l0", 0.0)):
        t = time.perf_counter()
        score(name, _cvae_queries(train, test, weight, epochs, seed), photo_unit, t)
    t = time.perf_counter()
    score("oracle", photo_unit[test["photo_index"]], photo_unit, t)
    return results


def pixel_seed_run(folder: Path, args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:  # a grid run
    """One seed's rows, the pixel features made here from the dataset (no checkpoint: nothing to resume)."""
    torch.set_num_threads(args.threads)
    dataset = make_dataset(args.dataset, root=args.root, scheme="category")
    train, test = split_pixels(dataset, "train", args.size), split_pixels(dataset, "test", args.size)
    return seed_rows(train, test, seed, args.epochs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji", help="a dataset with a category split scheme")
    p.add_argument("--root", default=None)
    p.add_argument("--size", type=int, default=16, help="features are size x size pixels")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/zero_shot_pixels")
    p.add_argument("--runs", default="runs/benchmarks/zero_shot_pixels", help="one folder per seed (its result)")
    add_executor_args(p, "seeds at once (worker processes)")
    args = p.parse_args(argv)
    if args.size < 2:
        p.error(f"--size must be >= 2, got {args.size}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = make_dataset(args.dataset, root=args.root, scheme="category")
    grid = [GridRun(key=f"s{s}", folder=Path(args.runs).resolve() / f"{args.dataset}-{args.size}px" / f"s{s}",
                    fn=pixel_seed_run, kwargs={"args": args, "seed": s}, cpus=args.threads) for s in args.seeds]
    per_seed = dict(zip(args.seeds, run_grid(grid, executor_options(args, processes=True))))
    lines = ["| method | P@200 | mAP@200 (ZS-SBIR) | train (s) |", "| --- | ---: | ---: | ---: |"]
    for name, label in ROWS.items():
        cells = []
        for c in (*METRICS, "train_s"):
            mean, half = mean_ci([per_seed[s][name][c] for s in args.seeds])
            cells.append(f"{mean:.0f}" if c == "train_s" else f"{mean:.3f} ± {half:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    command = command_line("zero_shot_pixels", argv)
    body = (f"{len(dataset.sketches('test'))} complete test sketches against all {len(dataset.photos('test'))} photos "
            "of the unseen "
            f"categories; features: {args.size} x {args.size} pixels (F = {args.size ** 2}), untrained.\n\n"
            + "\n".join(lines) + "\n")
    text = (f"`{command}` ({platform.machine()}, CPU, {args.threads} torch thread(s), {os.cpu_count()} CPUs; seeds "
            f"{args.seeds}; {(time.perf_counter() - start) / 60:.1f} min)\n\n" + body)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "zero_shot_pixels.md") as tmp:
        tmp.write_text(text)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", *METRICS, "train_s"])
    for s in args.seeds:
        for name, label in ROWS.items():
            r = per_seed[s][name]
            w.writerow([label, s, *(f"{r[c]:.6f}" for c in METRICS), f"{r['train_s']:.2f}"])
    with atomic_path(out / "zero_shot_pixels.csv") as tmp:
        tmp.write_text(buf.getvalue())
    write_readme(out, f"Zero-shot rows over {args.size} x {args.size} pixel features on {args.dataset}", command, body,
                 seconds=time.perf_counter() - start,
                 notes=f"CPU, {args.threads} torch thread(s); seeds {args.seeds}; every head trained {args.epochs} "
                 "epochs; mean ± 95 % t-interval over the seeds.",
                 files=["zero_shot_pixels.md", "zero_shot_pixels.csv"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
