"""Which choices of the backend's training recipe move the figures: the default B1, then one choice undone
at a time, trained and scored side by side (same data, seeds and machine).

    python -m benchmarks.dev_split --root ../shared/data/chairv2-train --out runs/chairv2-dev
    python -m benchmarks.recipe --dataset chairv2 --root runs/chairv2-dev --seeds 0 --jobs 2
    python -m benchmarks.recipe --dataset kanji --variants default "photos as edge maps"

Each row is the library's default B1 training (``embeddings.train``, the dataset's photo kind deciding the
photo preprocessing and augmentation) with one thing changed; the frozen backend is scored on the test split
(A@1/5/10 on complete sketches, m@A and m@B over S = 20 steps), and the table gives each row's change
against the default row of the same seeds. The larger-input rows (128 px rasters, a wider backbone) train for
as many gradient steps as take about as long as the default's (by their steps' measured cost): the question
they answer is whether the same time is better spent on larger inputs.

Writes ``README.md`` (command, machine, table) and ``recipe.csv`` (one row per variant and seed) to
``--out`` (default ``benchmarks/results/recipe-<dataset>``); run folders under ``--runs`` make it resumable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import score_backend, train_row
from benchmarks.common import command_line, mean_ci, runs_folder, thread_env, write_readme
from benchmarks.executor import GridRun, add_executor_args, executor_options, run_grid
from sketch_env.cache import write_csv

__all__ = ["VARIANTS", "main"]

COLUMNS = ("A@1", "A@5", "A@10", "m@A", "m@B")
#: the figures whose change from the default a row reports (the paper's targets)
DELTAS = ("A@5", "A@10", "m@A", "m@B")

#: row -> (what it changes: TrainConfig fields, ``backend_options`` merged into the backend's)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "photos as inverted grey": {"backend_options": {"photo_preprocess": "invert", "photo_size": 64}},
    "photos as edge maps": {"backend_options": {"photo_preprocess": "edges", "photo_size": 256}},
    "edges found at 64 px": {"backend_options": {"photo_preprocess": "canny", "photo_size": 64}},
    "no mirrored pairs": {"flip": False},
    "mirrored pairs": {"flip": True},
    "no dropped strokes": {"stroke_drop": 0.0},
    "dropped strokes (0.15)": {"stroke_drop": 0.15},
    "no mirror averaging": {"backend_options": {"flip_average": False}},
    "mirror averaging": {"backend_options": {"flip_average": True}},
    "no weight average": {"ema_horizon": 0.0},
    "weight average": {"ema_horizon": 0.2},
    # the same training in less time: another memory layout, or bfloat16 autocast (same weights and loss)
    "channels-last training": {"channels_last": True},
    "contiguous training": {"channels_last": False},
    "bf16 autocast": {"precision": "bf16"},
    "validation 5 % of photos, no minimum": {"val_min_photos": 0},
    "validation of at least 30 photos": {"val_min_photos": 30},
    "128 px rasters, 800 steps": {"gradient_steps": 800,
                                  "backend_options": {"render": {"size": 128, "line_width": 3}}},
    "wider backbone (48-96-192-192), 1500 steps": {"gradient_steps": 1500,
                                                   "backend_options": {"channels": [48, 96, 192, 192]}},
    # the same two at the default's training time, by their steps' measured cost on the Chair-V2 dev split
    # (benchmarks/results/recipe-chairv2: 0.55 s a step at 64 px and for the wider backbone, 1.37 s at 128 px)
    "128 px rasters, 1200 steps": {"gradient_steps": 1200,
                                   "backend_options": {"render": {"size": 128, "line_width": 3}}},
    "wider backbone (48-96-192-192), 3000 steps": {"gradient_steps": 3000,
                                                   "backend_options": {"channels": [48, 96, 192, 192]}},
}
#: the rows that undo one choice of each photo kind's recipe (the others add one: for the other kind)
DEFAULT_VARIANTS = {
    "photo": ["default", "validation of at least 30 photos", "validation 5 % of photos, no minimum",
              "photos as inverted grey", "edges found at 64 px", "no mirrored pairs", "no dropped strokes",
              "mirror averaging", "no weight average", "128 px rasters, 1200 steps",
              "wider backbone (48-96-192-192), 3000 steps"],
    "rendering": ["default", "photos as edge maps", "mirrored pairs", "dropped strokes (0.15)", "mirror averaging",
                  "weight average"],
}


def _merge(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with a ``render`` option completed from the backend's default render settings."""
    from embeddings.triplet import default_config

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in overrides.items()}
    options = out.get("backend_options", {})
    if "render" in options:
        options["render"] = default_config("b1")["render"] | options["render"]
    return out


def _folder(variant: str, seed: int) -> str:
    return "b1-" + "".join(c if c.isalnum() else "-" for c in variant.lower()).strip("-") + f"-s{seed}"


def variant_run(folder: Path, args: argparse.Namespace, variant: str, seed: int) -> list[dict]:  # a grid run
    """Train (or resume) one row's B1 in ``folder`` and score it."""
    os.environ.update(thread_env(args.threads))
    trained = train_row(args, "b1", seed, folder.parent, overrides=_merge(VARIANTS[variant]), out=folder)
    return [r | {"variant": variant} for r in score_backend(args, variant, seed, trained)][:1]


def write_report(rows: list[dict], args: argparse.Namespace, out: Path, seconds: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "recipe.csv", [[r["variant"], r["seed"], r["result"]["gallery_size"],
                                    *[round(float(r["result"][c]), 4) for c in COLUMNS],
                                    r["training"]["gradient_steps"], round(r["train_seconds"], 1)] for r in rows],
              header=["variant", "seed", "gallery_size", *COLUMNS, "gradient_steps", "train_seconds"])
    by = {(r["variant"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| row | " + " | ".join(COLUMNS) + " | " + " | ".join(f"Δ {c}" for c in DELTAS) + " | steps | train min |",
             "| --- |" + " ---: |" * (len(COLUMNS) + len(DELTAS) + 2)]

    def cell(values: list[float], signed: bool = False) -> str:
        """The mean, and its 95 % t-interval where there is more than one value."""
        mean, half = mean_ci(values)
        number = f"{mean:+.1f}" if signed else f"{mean:.1f}"
        return f"{number} ± {half:.1f}" if len(values) > 1 else number

    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [by[(variant, s)] for s in seeds if (variant, s) in by]
        cells = [cell([float(r["result"][c]) for r in mine]) for c in COLUMNS]
        deltas = []
        for c in DELTAS:  # paired by seed: the seeds' spread is common to both rows and cancels
            diffs = [float(r["result"][c]) - float(by[("default", r["seed"])]["result"][c]) for r in mine
                     if ("default", r["seed"]) in by]
            deltas.append("" if variant == "default" or not diffs else cell(diffs, signed=True))
        minutes = np.mean([r["train_seconds"] for r in mine]) / 60
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {' | '.join(deltas)} | "
                     f"{mine[0]['training']['gradient_steps']} | {minutes:.1f} |")
    table = "\n".join(lines)
    notes = (f"{args.jobs} run(s) at a time; {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), mean ± 95 % "
             f"t-interval over seeds where more than one. Frozen B1 on the test split "
             f"({rows[0]['result']['gallery_size']} photos), S = {args.steps} steps; Δ = the row minus the default "
             "row, seed by seed (mean ± 95 % t-interval of those differences where more than one); train min = "
             "training time per run, validation excluded, with the runs sharing the machine as stated. "
             "`recipe.csv` has one row per variant and seed.")
    write_readme(out, f"The training recipe on {args.dataset}: one choice at a time",
                 command_line("recipe", args.argv), table, seconds=seconds, notes=notes, files=["recipe.csv"])
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="chairv2")
    p.add_argument("--root", default=None)
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help="rows (default: those that undo one choice of the dataset's photo kind)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--gradient-steps", type=int, default=None, help="default rows' length (the library's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    add_executor_args(p)
    p.add_argument("--runs", default="runs/benchmarks/recipe", help="run folders (checkpoints)")
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results/recipe-<dataset>)")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    args.step_power, args.b3_models = 0.0, 1  # train_row's fields for B2/B3, unused by B1
    from sketch_env.datasets import make_dataset

    dataset = make_dataset(args.dataset, root=args.root)
    variants = args.variants or DEFAULT_VARIANTS[dataset.photo_kind]
    runs = runs_folder(args.runs, dataset, args.root)
    out = Path(args.out or f"benchmarks/results/recipe-{args.dataset}")
    t0 = time.perf_counter()
    grid = [GridRun(key=_folder(v, s), folder=runs / _folder(v, s), fn=variant_run,
                    kwargs={"args": args, "variant": v, "seed": s}, cpus=args.threads)
            for s in args.seeds for v in variants]
    rows = [r for item_rows in run_grid(grid, executor_options(args, processes=True)) for r in item_rows]
    table = write_report(rows, args, out, time.perf_counter() - t0)
    print(table)
    print(f"wrote {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
