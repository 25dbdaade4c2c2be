"""The main job, ``sketch-env run``: the whole pipeline on one dataset, start to finish.

A contact sheet of progressive sketches; the embedding backend trained (or resumed) in the run folder; its
test-split table and curves (the frozen backend); then the paper's final RL method trained from the frozen
backend's query layer, checkpoint kept by validation m@B, and scored against the frozen backend on the test
split. It sits in the top layer because it uses both the embedding layer and the agents.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sketch_env.cache import read_json, write_json

__all__ = ["run_main_job", "add_run_command"]


def run_main_job(args: argparse.Namespace) -> int:
    """The main job: contact sheet, train B1 (or resume), cache test features, evaluate and plot; then train
    the paper's final RL method (``ppo-a-clip``) from the frozen backend and evaluate it against B1."""
    from embeddings.cli import evaluate_checkpoint
    from embeddings.train import TrainConfig, train_backend
    from sketch_env.datasets import make_dataset
    from sketch_env.viz import contact_sheet, write_png

    if args.rl_algo != "none":  # a bad RL method must fail now, not after the backend stage
        from agents.config import check_rl_target
        from sketch_env.envs.registration import env_id_for_dataset

        check_rl_target(args.rl_algo, env_id_for_dataset(args.dataset)[0], {}, {})
    t0 = time.perf_counter()
    out = Path(args.out).resolve()  # run folders record absolute paths: a later process may start elsewhere
    dataset = make_dataset(args.dataset, root=args.root)
    cfg = TrainConfig(backend=args.backend, dataset=args.dataset, root=args.root, gradient_steps=args.gradient_steps,
                      minutes=args.minutes, seed=args.seed, device=args.device,
                      out=str(out / "embeddings" / f"{args.dataset}-{dataset.scheme}" / f"{args.backend}-s{args.seed}"))
    sheet = write_png(out / f"{args.dataset}_contact_sheet.png", contact_sheet(dataset))
    print(f"contact sheet: {sheet}")
    checkpoint = train_backend(cfg)
    ns = argparse.Namespace(checkpoint=str(checkpoint), dataset=args.dataset, root=args.root, scheme=None,
                            split="test", steps=args.steps, batch_size=64, device=args.device,
                            distractors=args.distractors, out=str(out / "eval"), flip_average=None)
    frozen = evaluate_checkpoint(ns, name=f"frozen {args.backend.upper()}")
    record = read_json(Path(cfg.out) / "history.json")
    summary = {"command": "sketch-env " + " ".join(getattr(args, "argv", None) or ["run"]),
               "dataset": args.dataset, "root": args.root, "backend": args.backend, "seed": args.seed,
               "machine": _machine(),
               "backend_training": record["training"] | {"cut_short": record["cut_short"],
                                                          "seconds": record["history"][-1]["elapsed"]},
               "backend_checkpoint": str(checkpoint),
               "rows": {k: _figures(v) for k, v in frozen.items()},
               "minutes": {"backend_stage": round((time.perf_counter() - t0) / 60, 2)}}
    print(f"[run] backend stage done at {summary['minutes']['backend_stage']:.1f} min")
    if args.rl_algo != "none":
        _run_rl_stage(args, checkpoint, out, summary)
    summary["minutes"]["total"] = round((time.perf_counter() - t0) / 60, 2)
    write_json(out / "summary.json", summary)
    print(f"[run] total {summary['minutes']['total']:.1f} min; summary: {out / 'summary.json'}")
    return 0


def _machine() -> dict:
    """Where the run ran: the same seed repeats its figures bit for bit on one machine, not always on another."""
    import os
    import platform

    import numpy as np
    import torch

    from sketch_env.device import machine_name

    return {"processor": machine_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__}


def _figures(row: dict) -> dict:
    """The table's figures of an evaluation row (no curves or ranks)."""
    return {k: float(row[k]) for k in ("gallery_size", "A@1", "A@5", "A@10", "m@A", "m@B") if k in row}


def _run_rl_stage(args: argparse.Namespace, checkpoint: Path, out: Path, summary: dict) -> None:
    """Train ``args.rl_algo`` on the retrieval env of the frozen ``checkpoint`` (validation-selected), then
    score it and the frozen backend on the test split: table printed, curves written."""
    from agents.evaluate import COLUMNS, evaluate_model
    from agents.io import read_meta
    from agents.train import RLTrainConfig, train_agent
    from embeddings.evaluate import format_table
    from sketch_env.envs.registration import env_id_for_dataset

    env_id, env_kwargs = env_id_for_dataset(args.dataset, backend=str(checkpoint), steps=args.steps,
                                            data_root=args.root)
    run_dir = out / "agents" / f"{args.dataset}-{args.backend}" / f"{args.rl_algo}-s{args.seed}"
    rl = RLTrainConfig(algo=args.rl_algo, env_id=env_id, env_kwargs=env_kwargs, minutes=args.rl_minutes,
                       timesteps=args.rl_timesteps, seed=args.seed, eval_every=args.rl_eval_every, out=str(run_dir))
    best = train_agent(rl)
    rows = evaluate_model(best, split="test", out=out / "eval-rl", label=f"RL ({args.rl_algo})")
    rows = {f"frozen {args.backend.upper()}" if k == "frozen backend" else k: v for k, v in rows.items()}
    print(f"\n{args.dataset} test split, frozen {args.backend.upper()} against {args.rl_algo} started from it "
          f"(mean action; curves: {out / 'eval-rl' / 'curves.png'}):")
    print(format_table(rows, columns=COLUMNS))
    history = [json.loads(line) for line in (best.parent / "history.jsonl").read_text().splitlines() if line]
    summary["rows"].update({k: _figures(v) for k, v in rows.items()})
    state = read_meta(best.parent / "last.zip").get("train_state", {})
    summary["rl_training"] = {"algo": args.rl_algo, "env_steps": history[-1]["timesteps"],
                              "seconds": history[-1]["elapsed"], "cut_short": bool(state.get("cut_short")),
                              "agent": str(best)}


def add_run_command(sub: argparse._SubParsersAction) -> None:
    """The ``run`` command."""
    run = sub.add_parser("run", help="the main job: contact sheet, train B1, cache features, evaluate, train PPO "
                                     "from it, compare")
    run.add_argument("--dataset", default="kanji", help="dataset name (default: kanji)")
    run.add_argument("--root", default=None, help="data folder, for the datasets read from your disk")
    run.add_argument("--backend", default="b1", help="the backend trained and frozen (default: b1)")
    run.add_argument("--gradient-steps", type=int, default=None,
                     help="the backend's training length (default: embeddings.train's, 3000)")
    run.add_argument("--minutes", type=float, default=None,
                     help="an optional cap on the backend's training time (a run it cuts short says so)")
    run.add_argument("--steps", type=int, default=20, help="schedule length S (default: 20)")
    run.add_argument("--seed", type=int, default=0, help="seed of the backend and the agent (default: 0)")
    run.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda (default: auto)")
    run.add_argument("--distractors", action=argparse.BooleanOptionalAction, default=True,
                     help="also evaluate with the train photos added to the gallery (default: on)")
    run.add_argument("--rl-algo", default="ppo-a-clip",
                     help="RL method trained from the frozen backend, `none` to stop after the backend "
                          "(default: ppo-a-clip)")
    run.add_argument("--rl-timesteps", type=int, default=None,
                     help="env steps of RL training (default: the method's hyper-parameter file, 1,000,000)")
    run.add_argument("--rl-minutes", type=float, default=None,
                     help="an optional cap on the RL training time (a run it cuts short says so)")
    run.add_argument("--rl-eval-every", type=int, default=100_000,
                     help="env steps between validation evaluations (default: 100000)")
    run.add_argument("--out", default="runs", help="output folder (default: runs)")
    run.set_defaults(func=run_main_job)
