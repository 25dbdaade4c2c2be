"""The paper's main table (TS, B1, B2, B3, RL) on a dataset, trained from scratch here, over seeds.

    python -m benchmarks.baselines                                    # kanji, 3 seeds, every row
    python -m benchmarks.baselines --dataset chairv2 --root DIR --jobs 2
    python -m benchmarks.baselines --rows b1 rl --seeds 0

Every row is trained with the library's defaults (``embeddings.train``: 192,000 training pairs, batches by
photo kind; B3's per-step models start from the seed's B1 and share the steps), then its test features are
cached and scored: A@1/5/10 on complete sketches, m@A and m@B over the S-step schedule, on the test gallery
and, for kanji, on the harder gallery with every train photo added as a distractor. The RL row trains the
paper's final method
(``ppo-a-clip``, its hyper-parameter file's env steps) from the seed's B1 on the retrieval env (checkpoint
kept by validation m@B) and scores its mean action on the same test episodes. B2 (and B3) draw the step a
training sketch is cut at with ``P(t) ∝ t^p``, ``--step-power p`` (0.5 here; 0 is uniform).

Writes to ``--out``: ``README.md`` (the report: command, machine, table with 95 % t-intervals over seeds,
plot), ``baselines.csv`` (one row per method and seed), ``episodes.csv`` (one row per test sketch, method and
seed), ``curves.csv`` / ``curves.png``. Every run has its own folder under ``--runs``, so a stopped benchmark
resumes where it stopped and a finished run is only scored again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import command_line, mean_ci, runs_folder, thread_env, write_readme
from benchmarks.executor import GridRun, add_executor_args, executor_options, run_grid
from sketch_env.cache import write_csv

LABELS = {"ts": "TS (triplet Siamese)", "b1": "B1 (triplet + attention)", "b2": "B2 (B1 on partial sketches)",
          "b3": "B3 (one model per step group)", "rl": "RL (ppo-a-clip from B1)"}
COLUMNS = ("A@1", "A@5", "A@10", "m@A", "m@B")


def train_row(args: argparse.Namespace, name: str, seed: int, runs: Path, folder: str | None = None,
              overrides: dict[str, Any] | None = None, out: Path | None = None) -> dict[str, Any]:
    """Train (or resume) backend ``name`` for one seed in ``runs/<folder or name>-s<seed>`` (or ``out``) with the
    library's defaults, less ``overrides`` (TrainConfig fields; ``backend_options`` merged); returns the
    checkpoint and the training record. ``args``: ``dataset``, ``root``, ``gradient_steps``, ``device``,
    ``steps``, ``step_power``, ``b3_models``, ``threads``."""
    import torch

    from embeddings.train import TrainConfig, train_backend

    torch.set_num_threads(args.threads)
    overrides = dict(overrides or {})
    options = dict(overrides.pop("backend_options", {}))
    if name == "b3":
        options |= {"models": args.b3_models, "init_from": str(runs / f"b1-s{seed}" / "backend.pt")}
    fields = {"gradient_steps": args.gradient_steps,
              "step_power": args.step_power if name in ("b2", "b3") else 0.0}  # B1, TS: complete sketches
    cfg = TrainConfig(backend=name, dataset=args.dataset, root=args.root, seed=seed, device=args.device,
                      steps=args.steps, progress=False, out=str(out or runs / f"{folder or name}-s{seed}"),
                      backend_options=options, **(fields | overrides))
    t0 = time.perf_counter()
    checkpoint = train_backend(cfg)
    record = json.loads((Path(cfg.out) / "history.json").read_text())
    print(f"[{folder or name} s{seed}] {record['training']['gradient_steps']} steps, "
          f"{record['history'][-1]['elapsed']:.0f} s of training (this call {time.perf_counter() - t0:.0f} s)",
          flush=True)
    return {"checkpoint": str(checkpoint), "train_seconds": record["history"][-1]["elapsed"],
            "training": record["training"], "cut_short": record["cut_short"]}


def score_backend(args: argparse.Namespace, label: str, seed: int, trained: dict[str, Any]) -> list[dict]:
    """The frozen backend of ``trained`` (from :func:`train_row`) scored on the test split (and, for kanji,
    with the train photos as distractors): one result row each, ``method`` = ``label``."""
    from embeddings.base import load_backend
    from embeddings.evaluate import evaluate_store
    from embeddings.store import gallery_embeddings, open_feature_store
    from sketch_env.datasets import make_dataset
    from sketch_env.schedule import PointSchedule

    dataset = make_dataset(args.dataset, root=args.root)
    backend = load_backend(trained["checkpoint"], device=args.device)
    test = open_feature_store(backend, dataset, "test", PointSchedule(args.steps), progress=False)
    out = [{"method": label, "seed": seed, "result": evaluate_store(test), **trained}]
    if args.dataset == "kanji":
        hard = evaluate_store(test, distractors=gallery_embeddings(backend, dataset, "train"))
        out.append({"method": f"{label}, all {hard['gallery_size']} photos", "seed": seed, "result": hard,
                    **trained})
    return out


def _rl_row(args: argparse.Namespace, seed: int, runs: Path) -> list[dict]:
    """Train the paper's final method (``ppo-a-clip``) from the seed's B1 (kept by validation m@B,
    resumable) and score its mean action on the test split."""
    from agents.envs import evaluate_agent_ranks
    from agents.io import load_agent
    from agents.train import RLTrainConfig, train_agent
    from sketch_env.envs.registration import env_id_for_dataset
    from sketch_env.metrics import retrieval_curves, summarise

    env_id, env_kwargs = env_id_for_dataset(args.dataset, backend=str(runs / f"b1-s{seed}" / "backend.pt"),
                                            steps=args.steps, data_root=args.root)
    cfg = RLTrainConfig(algo="ppo-a-clip", env_id=env_id, env_kwargs=env_kwargs, timesteps=args.rl_timesteps,
                        seed=seed, out=str(runs / f"rl-ppo-a-clip-s{seed}"), progress=False)
    best = train_agent(cfg)
    history = [json.loads(line) for line in (best.parent / "history.jsonl").read_text().splitlines() if line.strip()]
    model = load_agent(best, device="cpu")
    rows = []
    for distractors in (False, True) if args.dataset == "kanji" else (False,):
        ranks, gallery = evaluate_agent_ranks(model, env_id, env_kwargs | {"distractors": distractors}, split="test")
        result = dict(summarise(ranks, gallery)) | {"ranks": ranks, "curves": retrieval_curves(ranks, gallery)}
        name = f"{LABELS['rl']}, all {gallery} photos" if distractors else LABELS["rl"]
        rows.append({"method": name, "seed": seed, "result": result, "train_seconds": history[-1]["elapsed"],
                     "training": {"env_steps": history[-1]["timesteps"]}, "cut_short": False})
    print(f"[rl s{seed}] {history[-1]['timesteps']} env steps, {history[-1]['elapsed']:.0f} s", flush=True)
    return rows


def seed_run(runs: Path, args: argparse.Namespace, seed: int) -> list[dict]:  # one run of the grid
    """Every row of one seed, in order (B3 and RL need the seed's B1), in this worker's threads, in the seed's
    folder ``runs``."""
    os.environ.update(thread_env(args.threads))
    order = [r for r in ("b1", "b2", "b3", "ts") if r in args.rows]
    if ("b3" in args.rows or "rl" in args.rows) and "b1" not in order:
        order.insert(0, "b1")
    rows = []
    for name in order:
        trained = train_row(args, name, seed, runs)
        if name in args.rows:
            rows += score_backend(args, LABELS[name], seed, trained)
    if "rl" in args.rows:
        rows += _rl_row(args, seed, runs)
    return rows


def write_report(rows: list[dict], args: argparse.Namespace, out: Path, seconds: float) -> str:
    """``README.md``, ``baselines.csv``, ``episodes.csv``, ``curves.csv`` / ``curves.png`` in ``out``."""
    from embeddings.evaluate import episode_rows, plot_curves, write_curves_csv, write_episodes_csv

    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    write_csv(out / "baselines.csv", [[r["method"], r["seed"], r["result"]["gallery_size"],
                                       *[round(float(r["result"][c]), 4) for c in COLUMNS],
                                       round(r["train_seconds"], 1), r["cut_short"]] for r in rows],
              header=["method", "seed", "gallery_size", *COLUMNS, "train_seconds", "cut_short"])
    write_episodes_csv([e for r in rows for e in episode_rows(r["method"], r["seed"], r["result"]["ranks"],
                                                               r["result"]["gallery_size"])], out / "episodes.csv")
    curves, per_seed = {}, {}
    for m in methods:
        mine = [r["result"]["curves"] for r in rows if r["method"] == m]
        curves[m] = {k: np.mean([c[k] for c in mine], axis=0) for k in ("percent", "ranking_percentile",
                                                                          "inverse_rank")}
        per_seed[m] = mine
    plot_curves(curves, out / "curves.png", title=f"{args.dataset}: the main table's rows over the sketch (band: "
                "the seeds' range)", per_seed=per_seed)
    write_curves_csv(curves, out / "curves.csv")
    head = "| method | gallery | " + " | ".join(COLUMNS) + " | train min |"
    lines = [head, "| --- | ---: |" + " ---: |" * (len(COLUMNS) + 1)]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        cells = []
        for c in COLUMNS:
            mean, half = mean_ci([float(r["result"][c]) for r in mine])
            cells.append(f"{mean:.1f} ± {half:.1f}" if len(mine) > 1 else f"{mean:.1f}")
        minutes = np.mean([r["train_seconds"] for r in mine]) / 60
        lines.append(f"| {m} | {mine[0]['result']['gallery_size']} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    table = "\n".join(lines)
    cut = [f"{r['method']} s{r['seed']}" for r in rows if r["cut_short"]]
    notes = (f"Device {args.device}; {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), mean ± 95 % t-interval "
             f"over seeds. Test split, S = {args.steps} steps; train min = training time per run (validation "
             "excluded). `baselines.csv` has one row per method and seed, `episodes.csv` one row per test sketch, "
             "method and seed (its first and complete ranks, its mean ranking percentile and 1/rank)."
             + (f"\n\nCut short by a time cap (not full runs): {', '.join(cut)}." if cut else ""))
    write_readme(out, f"The main table on {args.dataset}", command_line("baselines", args.argv), table,
                 seconds=seconds, notes=notes, plots=["curves.png"],
                 files=["baselines.csv", "episodes.csv", "curves.csv"])
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji")
    p.add_argument("--root", default=None)
    p.add_argument("--rows", nargs="+", default=["ts", "b1", "b2", "b3", "rl"], choices=list(LABELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--gradient-steps", type=int, default=None, help="per backend row (default: the library's)")
    p.add_argument("--rl-timesteps", type=int, default=None, help="env steps of the RL row (default: its YAML's)")
    p.add_argument("--b3-models", type=int, default=20, help="B3 models (S by default, one per step)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--step-power", type=float, default=0.5,
                   help="B2/B3: a training sketch is cut at step t = 1..S with P(t) proportional to t^p (0: uniform)")
    add_executor_args(p, "seeds run at once (each in its own threads)")
    p.add_argument("--runs", default="runs/benchmarks/baselines", help="run folders (checkpoints)")
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results/baselines-<dataset>)")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    from sketch_env.datasets import make_dataset

    dataset = make_dataset(args.dataset, root=args.root)
    runs = runs_folder(args.runs, dataset, args.root)
    out = Path(args.out or f"benchmarks/results/baselines-{args.dataset}")
    t0 = time.perf_counter()
    grid = [GridRun(key=f"s{seed}", folder=runs / f"s{seed}", fn=seed_run, kwargs={"args": args, "seed": seed},
                    cpus=args.threads) for seed in args.seeds]
    rows = [r for seed_rows in run_grid(grid, executor_options(args, processes=True)) for r in seed_rows]
    table = write_report(rows, args, out, time.perf_counter() - t0)
    print(table)
    print(f"wrote {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
