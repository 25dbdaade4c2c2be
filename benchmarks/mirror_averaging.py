"""Test-time mirror averaging on trained backends: each checkpoint scored with it and without, same weights.

    python -m benchmarks.mirror_averaging --checkpoint 'RUNS/b1-s{seed}/backend.pt' --seeds 0 1 2 \\
        --root DIR [--steps 20] [--out DIR]

Mirror averaging embeds a raster and its mirror image and averages them (``flip_average``: the photo's
embedding is ``normalise(f(x) + f(flip x))``, a sketch's feature ``(g(s) + g(flip s)) / 2``). Each seed's
checkpoint (``{seed}`` in ``--checkpoint`` is replaced) is scored on the test split twice, with the
option off and on (:func:`embeddings.store.open_backend_store`), everything else as the checkpoint
records. The weights, the checkpoint choice and the data are the same in both, so the paired difference
``off - on`` is the averaging's alone. The report gives each setting's mean ± 95 % t-interval over the seeds,
the paired difference's, and every seed.

Writes to ``--out`` (default ``benchmarks/results/mirror_averaging-<dataset>``): ``mirror.csv`` (one row per
seed and setting, and per seed for ``off - on``) and ``README.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the middle of the table

from benchmarks.common import command_line, mean_ci, write_readme
from sketch_env.cache import write_csv
from sketch_env.errors import ArgumentError, SketchEnvError

COLUMNS = ("A@1", "A@5", "A@10", "m@A", "m@B")
LABELS = {"off": "mirror averaging off", "on": "mirror averaging on", "off - on": "difference off - on, paired"}


def score(checkpoint: str, root: str | None, steps: int, flip_average: bool, device: str) -> dict:
    """A@1/5/10, m@A, m@B (and the gallery size and the dataset's name) of ``checkpoint`` on its test split
    with mirror averaging ``flip_average``."""
    from embeddings.evaluate import evaluate_store
    from embeddings.store import open_backend_store

    _, dataset, store = open_backend_store(checkpoint, "test", steps=steps, root=root, device=device,
                                           progress=False, flip_average=flip_average)
    result = evaluate_store(store)
    return {c: float(result[c]) for c in COLUMNS} | {"gallery_size": int(result["gallery_size"]),
                                                     "dataset": dataset.name}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a backend.pt, {seed} replaced by each seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--root", default=None, help="the dataset's folder, for datasets read from your disk")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        return run(args, argv)
    except (SketchEnvError, FileNotFoundError) as exc:  # a bad checkpoint or data folder: one line, exit 2
        print(f"mirror_averaging: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Score every seed's checkpoint both ways, write ``mirror.csv`` and the report."""
    if len(args.seeds) > 1 and "{seed}" not in args.checkpoint:
        raise ArgumentError(f"--checkpoint {args.checkpoint!r} names one file for {len(args.seeds)} seeds: put "
                            "{seed} where the seed goes")
    t0 = time.perf_counter()
    rows: list[dict] = []
    for seed in args.seeds:
        path = args.checkpoint.replace("{seed}", str(seed))
        got = {name: score(path, args.root, args.steps, name == "on", args.device) for name in ("off", "on")}
        for name in ("off", "on"):
            rows.append({"variant": name, "seed": seed, **got[name], "checkpoint": path})
        rows.append({"variant": "off - on", "seed": seed, "gallery_size": got["off"]["gallery_size"],
                     **{c: got["off"][c] - got["on"][c] for c in COLUMNS}, "checkpoint": path})
        print(f"[s{seed}] " + "  ".join(f"{c} {got['off'][c]:.1f}/{got['on'][c]:.1f}" for c in COLUMNS)
              + " (off/on)", flush=True)
    dataset = rows[0]["dataset"]
    out = Path(args.out or f"benchmarks/results/mirror_averaging-{dataset}")
    out.mkdir(parents=True, exist_ok=True)
    fields = ["variant", "seed", "gallery_size", *COLUMNS, "checkpoint"]
    write_csv(out / "mirror.csv", [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                   for r in rows], header=fields)

    head = "| variant | " + " | ".join(COLUMNS) + " |"
    sep = "| --- |" + " ---: |" * len(COLUMNS)
    summary = [head, sep]
    for name, label in LABELS.items():
        mine = [r for r in rows if r["variant"] == name]
        cells = []
        for c in COLUMNS:
            mean, half = mean_ci([r[c] for r in mine])
            sign = "+" if name == "off - on" and mean > 0 else ""
            cells.append(f"{sign}{mean:.1f} ± {half:.1f}" if len(mine) > 1 else f"{sign}{mean:.1f}")
        summary.append(f"| {label} (`{name}`) | " + " | ".join(cells) + " |")
    each = ["| variant | seed | " + " | ".join(COLUMNS) + " |", "| --- | ---: |" + " ---: |" * len(COLUMNS)]
    for r in rows:
        form = "{:+.1f}" if r["variant"] == "off - on" else "{:.1f}"
        each.append(f"| `{r['variant']}` | {r['seed']} | " + " | ".join(form.format(r[c]) for c in COLUMNS) + " |")
    seeds = ", ".join(map(str, args.seeds))
    notes = (f"{len(args.seeds)} checkpoint(s) (seeds {seeds}), each scored twice on the {dataset} test split "
             f"({rows[0]['gallery_size']} photos, S = {args.steps} steps): mirror averaging off and on, the same "
             "weights. Mean ± 95 % t-interval over the seeds; the difference is paired, seed by seed.")
    body = "\n".join(summary) + "\n\nEach seed:\n\n" + "\n".join(each)
    write_readme(out, f"Test-time mirror averaging on {dataset}", command_line("mirror_averaging", argv), body,
                 seconds=time.perf_counter() - t0, notes=notes, files=["mirror.csv"])
    print("\n".join(summary))
    print(f"report: {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
