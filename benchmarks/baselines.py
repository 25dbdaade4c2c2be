"""The paper's main table (TS, B1, B2, B3, RL) on a dataset, trained from scratch here.

    python -m benchmarks.baselines                       # kanji, 10 minutes of training per row
    python -m benchmarks.baselines --minutes 2 --rows b1 b2
    python -m benchmarks.baselines --rows b1 rl --rl-minutes 15

Each row is trained with a wall-time budget (``--minutes``; B3's budget is shared by its per-step
models, which start from the B1 checkpoint), then its test features are cached and scored: A@1/5/10
on complete sketches, m@A and m@B over the S-step schedule, on the test gallery and, for kanji, on the
harder gallery with every train photo added as a distractor. Writes ``baselines.md``, ``baselines.csv``
and ``curves.png`` to ``--out`` and prints the table, each row's training time and the feature-caching
throughput (rasters per second, render + embed). The RL row trains the paper's final method
(``ppo-a-clip``, ``--rl-minutes``) from this run's B1 on the retrieval env (train split; the checkpoint kept
by validation m@B) and scores its mean action on the same test episodes and galleries. B2 (and B3) draw
the step a training sketch is cut at with ``P(t) ∝ t^p``, ``--step-power p`` (0.5 here; 0 is uniform).

Training resumes from the run folders, so a killed benchmark picks up where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch

from embeddings.base import load_backend
from embeddings.evaluate import evaluate_store, format_table, plot_curves, write_curves_csv
from embeddings.store import gallery_embeddings, open_feature_store
from embeddings.train import TrainConfig, train_backend
from sketch_env.datasets import make_dataset
from sketch_env.device import resolve_device
from sketch_env.schedule import PointSchedule

LABELS = {"ts": "TS (triplet Siamese)", "b1": "B1 (triplet + attention)", "b2": "B2 (B1 on partial sketches)",
          "b3": "B3 (one model per step group)", "rl": "RL (ppo-a-clip from B1)"}


def _write(rows: dict, curves: dict, args: argparse.Namespace, device: str, out: Path) -> None:
    cols = ("gallery_size", "A@1", "A@5", "A@10", "m@A", "m@B", "train_min")
    table = format_table(rows, columns=cols)
    print(table)
    (out / "baselines.md").write_text(
        f"`python -m benchmarks.baselines {' '.join(args.argv)}` "
        f"({platform.machine()}, device {device})\n\n{table}\n")
    with open(out / "baselines.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *cols])
        for label, r in rows.items():
            w.writerow([label, *[r[c] for c in cols]])
    plot_curves(curves, out / "curves.png", title=f"{args.dataset}: frozen baselines over the sketch")
    write_curves_csv(curves, out / "curves.csv")


def _rl_row(args: argparse.Namespace, runs: Path, rows: dict, curves: dict) -> dict:
    """Train the paper's final method (``ppo-a-clip``) from this run's B1 on the retrieval env (kept by
    validation m@B, resumable) and score its mean action on the test split, with the harder gallery too."""
    from agents.envs import evaluate_agent_ranks
    from agents.io import load_agent
    from agents.train import RLTrainConfig, train_agent
    from sketch_env.envs.registration import env_id_for_dataset
    from sketch_env.metrics import retrieval_curves, summarise

    env_id, env_kwargs = env_id_for_dataset(args.dataset, backend=str(runs / f"b1-s{args.seed}" / "backend.pt"),
                                            steps=args.steps, data_root=args.root)
    cfg = RLTrainConfig(algo="ppo-a-clip", env_id=env_id, env_kwargs=env_kwargs, minutes=args.rl_minutes,
                        timesteps=10**9, seed=args.seed, out=str(runs / f"rl-ppo-a-clip-s{args.seed}"), progress=False)
    t0 = time.perf_counter()
    best = train_agent(cfg)
    history = [json.loads(line) for line in (best.parent / "history.jsonl").read_text().splitlines() if line.strip()]
    train_seconds = history[-1]["elapsed"]
    print(f"[rl] trained {train_seconds:.0f} s, {history[-1]['timesteps']} env steps (this call "
          f"{time.perf_counter() - t0:.0f} s)")
    model = load_agent(best, device="cpu")
    label = LABELS["rl"]
    for distractors in (False, True) if args.dataset == "kanji" else (False,):
        ranks, gallery = evaluate_agent_ranks(model, env_id, env_kwargs | {"distractors": distractors}, split="test")
        name = f"{label}, all {gallery} photos" if distractors else label
        rows[name] = dict(summarise(ranks, gallery)) | {"train_min": train_seconds / 60}
        if not distractors:
            curves[name] = retrieval_curves(ranks, gallery)
    return {"train_seconds": train_seconds, "env_steps": history[-1]["timesteps"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji")
    p.add_argument("--root", default=None)
    p.add_argument("--rows", nargs="+", default=["ts", "b1", "b2", "b3", "rl"], choices=list(LABELS))
    p.add_argument("--rl-minutes", type=float, default=10.0, help="training budget of the RL row (ppo-a-clip)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per row")
    p.add_argument("--epochs", type=int, default=200, help="epoch cap (the budget usually ends training first)")
    p.add_argument("--b3-models", type=int, default=20, help="B3 models (S by default, one per step)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"), help="training forward pass")
    p.add_argument("--step-power", type=float, default=0.5,
                   help="B2/B3: a training sketch is cut at step t = 1..S with P(t) proportional to t^p (0: uniform; "
                        "0.5, the default here, was the best of 0 / 0.5 / 1 for the kanji B2, see the README)")
    p.add_argument("--runs", default="runs/benchmarks/baselines", help="run folders (checkpoints)")
    p.add_argument("--out", default="benchmarks/results/baselines")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    device = str(resolve_device(args.device))
    dataset = make_dataset(args.dataset, root=args.root)
    schedule = PointSchedule(args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs) / f"{args.dataset}-{dataset.scheme}"
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}; torch {torch.__version__}")

    rows, curves, timing = {}, {}, {}
    order = [r for r in ("b1", "b2", "b3", "ts") if r in args.rows]
    if ("b3" in args.rows or "rl" in args.rows) and "b1" not in order \
            and not (runs / f"b1-s{args.seed}" / "backend.pt").exists():
        order.insert(0, "b1")  # B3 and the RL row start from B1
    for name in order:
        options = {}
        if name == "b3":
            options = {"models": args.b3_models, "init_from": str(runs / f"b1-s{args.seed}" / "backend.pt")}
        cfg = TrainConfig(backend=name, dataset=args.dataset, root=args.root, minutes=args.minutes,
                          epochs=args.epochs, seed=args.seed, device=device, steps=args.steps, progress=False,
                          precision=args.precision,
                          step_power=args.step_power if name in ("b2", "b3") else 0.0,  # B1, TS: complete sketches
                          out=str(runs / f"{name}-s{args.seed}"), backend_options=options)
        t0 = time.perf_counter()
        checkpoint = train_backend(cfg)
        history = json.loads((Path(cfg.out) / "history.json").read_text())
        train_seconds = history[-1]["elapsed"]
        print(f"[{name}] trained {train_seconds:.0f} s over {len(history)} epochs "
              f"(this call {time.perf_counter() - t0:.0f} s)")
        backend = load_backend(checkpoint, device=device)
        test = open_feature_store(backend, dataset, "test", schedule)
        label = LABELS[name]
        result = evaluate_store(test)
        rows[label] = {**result, "train_min": train_seconds / 60}
        curves[label] = result["curves"]
        timing[label] = {"train_seconds": train_seconds, "epochs": len(history),
                         "cache_rasters_per_s": test.meta.get("rasters_per_second")}
        if args.dataset == "kanji":
            hard = evaluate_store(test, distractors=gallery_embeddings(backend, dataset, "train"))
            rows[f"{label}, all {hard['gallery_size']} photos"] = {**hard, "train_min": train_seconds / 60}
        _write(rows, curves, args, device, out)  # after every row, so a stopped run keeps its rows

    if "rl" in args.rows:
        timing[LABELS["rl"]] = _rl_row(args, runs, rows, curves)
        _write(rows, curves, args, device, out)

    print(json.dumps(timing, indent=1))
    print(f"wrote {out / 'baselines.md'}, {out / 'baselines.csv'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
