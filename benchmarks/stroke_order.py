"""The stroke-order table: how many strokes each order needs before the true photo reaches the top.

    python -m benchmarks.stroke_order --backend runs/benchmarks/baselines/kanji-instance/b1-s0/backend.pt \\
        --rl-model runs/benchmarks/rl_methods/kanji/b1-s0/ppo-a-clip-s0/best.zip
    python -m benchmarks.stroke_order --backend B.pt --timesteps 20000 --seeds 0 --eval-sketches 200  # a quick look

Orders (:mod:`agents.stroke_order`): the human order (the dataset's), a random order, a greedy one-step
look-ahead (the stroke whose canvas ranks the true photo best; it peeks at the rank, so it is an upper
reference), the rule "longest stroke first" (a fixed reference from the stroke descriptors) and the learned
sketcher: ``MaskablePPO`` (sb3-contrib) with ``--policy`` (default ``strokes``: one network scores every
stroke slot, :class:`agents.stroke_order.StrokeScoringPolicy`; ``mlp``: SB3's flat MLP), trained as an
independent learner against the retriever it is scored with (so ``--rl-model`` trains a second set of
sketchers, against the RL retriever) on the train split's sketches (:class:`agents.stroke_order.SketcherGymEnv`),
``--timesteps`` env steps per seed, the game's ``--reward`` scheme as the shared reward (default
``top5``: +1 for every canvas whose rank is within 5, so the return counts the canvases already in the
top 5 and is largest when the top 5 is reached early).

Each order is scored with the frozen retriever (the backend's own query) and, with ``--rl-model``, with
a trained RL retriever (its mean action), on the test split's sketches (``--eval-sketches`` of them,
spread evenly; default all): strokes on the canvas when the true photo first ranks within the top 1 / 5 /
10 (``n + 1`` if never), the same as % of the sketch's strokes, and m@B over the canvases (mean over
sketches of the mean over k = 1..n of 1 / rank after k strokes). Random and learned orders are mean ±
95 % interval over seeds, and the learned sketcher's difference to the human order is computed per seed.
The cost of a game step (render + embed a canvas, rank, reward) and the canvas cache's hit rate are printed.

Writes ``README.md`` (the report: command, machine, date, the table), ``stroke_order.md`` and
``stroke_order.csv`` to ``--out``. Sketcher policies are saved as
``state_dict`` files (``torch.load(weights_only=True)``), so a killed benchmark resumes with the seeds it has,
and a sketcher killed mid-training resumes from its last PPO update (``checkpoint.pt``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.stroke_order import (
    SKETCHER_POLICIES,
    SketcherTrainConfig,
    frozen_retriever,
    greedy_chooser,
    human_chooser,
    load_sketcher,
    longest_first_chooser,
    play_episode,
    policy_chooser,
    policy_retriever,
    random_chooser,
    strokes_to_top,
    train_sketcher,
)
from benchmarks.common import add_root_arg, command_line, mean_ci, write_readme
from sketch_env import stroke_order_v0
from sketch_env.cache import write_csv, write_text
from sketch_env.device import machine_name
from sketch_env.envs.stroke_order import StrokeOrderParallelEnv

TOPS = (1, 5, 10)


def make_game(args: argparse.Namespace, split: str, **kw) -> StrokeOrderParallelEnv:
    data = {"dataset": args.dataset, "data_root": args.data_root} if args.dataset else {}
    return stroke_order_v0.parallel_env(backend=args.backend, split=split, progress=False,
                                        max_strokes=args.max_strokes, action=args.action, **data, **kw)


def _train_games(args: argparse.Namespace):
    """The factory of a sketcher's training games."""
    return lambda: make_game(args, "train", reward=args.reward)


def _sketcher_config(args: argparse.Namespace, seed: int, rname: str) -> SketcherTrainConfig:
    return SketcherTrainConfig(out=str(Path(args.runs) / f"sketcher-{args.policy}-{rname.lower()}-s{seed}"),
                               seed=seed, timesteps=args.timesteps, reward=args.reward, n_envs=args.n_envs,
                               policy=args.policy, progress=not args.no_progress,
                               label=f"sketcher ({rname}) s{seed}")


def sketcher_run(folder: Path, args: argparse.Namespace, seed: int, rname: str, backend: Path,
                 rl_model: Path | None = None) -> str:
    """One grid run: the sketcher of (retriever ``rname``, ``seed``) trained in ``folder``; the retriever is
    rebuilt here (an SB3 model does not travel between processes). ``backend`` and ``rl_model`` are this
    machine's copies of the checkpoints. Returns the best model's path in the folder."""
    from dataclasses import replace

    if args.jobs > 1:
        torch.set_num_threads(1)
    args = argparse.Namespace(**{**vars(args), "backend": str(backend),
                                 "rl_model": None if rl_model is None else str(rl_model)})
    retriever = None
    if rname == "RL":
        from agents.io import load_agent

        retriever = policy_retriever(load_agent(args.rl_model, device="cpu"))
    best = train_sketcher(replace(_sketcher_config(args, seed, rname), out=str(folder)), _train_games(args), retriever)
    return Path(best).resolve().relative_to(folder.resolve()).as_posix()


def train_all(args: argparse.Namespace, retrievers: dict) -> dict[tuple[str, str], Path]:
    """Every (retriever, seed) sketcher, a grid run each (``--jobs`` at a time in worker processes, or on Ray)."""
    from benchmarks.executor import GridRun, Input, executor_options, run_grid

    quiet = argparse.Namespace(**{**vars(args), "no_progress": args.no_progress or args.jobs > 1})  # bars interleave
    inputs = {"backend": Input(str(Path(args.backend).resolve()))}
    if args.rl_model:
        inputs["rl_model"] = Input(str(Path(args.rl_model).resolve()))
    grid = [GridRun(key=f"{r}-s{s}", folder=Path(_sketcher_config(args, s, r).out).resolve(), fn=sketcher_run,
                    kwargs={"args": quiet, "seed": s, "rname": r, **inputs})
            for r in retrievers for s in args.seeds]
    names = run_grid(grid, executor_options(args, processes=True))
    return {(run.kwargs["rname"], run.kwargs["seed"]): run.folder / name for run, name in zip(grid, names)}


def score(game: StrokeOrderParallelEnv, chooser, retriever, sketches: np.ndarray, desc: str | None = None
          ) -> dict[str, float]:
    strokes = {k: [] for k in TOPS}
    share = {k: [] for k in TOPS}
    inv = []
    for i in tqdm(sketches, desc=desc, unit="sketch", mininterval=2.0, disable=desc is None):
        ranks, _ = play_episode(game, chooser, retriever, int(i))
        n = len(ranks)
        for k in TOPS:
            s = strokes_to_top(ranks, k)
            strokes[k].append(s)
            share[k].append(100.0 * s / n)
        inv.append(float(np.mean(1.0 / ranks)))
    out = {f"strokes@top{k}": float(np.mean(strokes[k])) for k in TOPS}
    out |= {f"%strokes@top{k}": float(np.mean(share[k])) for k in TOPS}
    out["m@B"] = 100.0 * float(np.mean(inv))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", required=True, help="backend checkpoint (a one-model backend: ts, b1, b2, meta)")
    p.add_argument("--rl-model", default=None, help="a trained RL retriever (agent .zip) to score the orders with too")
    p.add_argument("--dataset", default=None, help="default: the backend's")
    add_root_arg(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=100_000, help="sketcher training steps per seed")
    p.add_argument("--n-envs", type=int, default=8)
    from benchmarks.executor import add_executor_args

    add_executor_args(p, "sketchers trained at once (worker processes, 1 thread each)")
    p.add_argument("--policy", default="strokes", choices=SKETCHER_POLICIES,
                   help="the sketcher's policy: a stroke-scoring head shared by every stroke slot, or a flat MLP")
    p.add_argument("--reward", default="top5", help="the game's reward scheme for the sketcher's training")
    p.add_argument("--action", default="direct", help="the retriever's action mode (as the RL retriever's env)")
    p.add_argument("--max-strokes", type=int, default=None)
    p.add_argument("--eval-sketches", type=int, default=None, help="test sketches scored (default: all)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--runs", default="runs/benchmarks/stroke_order")
    p.add_argument("--out", default="benchmarks/results/stroke_order")
    args = p.parse_args(argv)
    # one thread: a game step embeds one canvas (a batch of 1, ~2 ms on one core); with two threads and any
    # other load on the machine, OpenMP's waiting threads made each embed ~100x slower (measured: 155 ms)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    test = make_game(args, "test")
    retrievers = {"frozen": None}  # None: each game's own frozen backend (SketcherGymEnv's default)
    if args.rl_model:
        from agents.io import load_agent, read_meta

        meta = read_meta(args.rl_model)
        mode = meta["env_kwargs"].get("action", "direct")
        if mode != args.action:
            p.error(f"{args.rl_model} acts in {mode!r} mode: pass --action {mode}")
        retrievers["RL"] = policy_retriever(load_agent(args.rl_model, device="cpu"))
    n_test = len(test.sketches)
    sketches = np.arange(n_test) if args.eval_sketches is None else \
        np.unique(np.linspace(0, n_test - 1, min(args.eval_sketches, n_test)).astype(int))
    # the cost of a game step, on the human order with the frozen retriever and a cold cache
    test._cache.clear()
    test.cache_hits = test.cache_misses = 0
    t0 = time.perf_counter()
    steps = 0
    for i in sketches[:50]:
        ranks, _ = play_episode(test, human_chooser, frozen_retriever(test), int(i))
        steps += len(ranks) + 1
    step_ms = 1000 * (time.perf_counter() - t0) / steps

    # independent learners: each retriever gets its own sketchers, trained against it on the train split
    policies = train_all(args, retrievers)
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    learned = f"learned sketcher ({'stroke scoring' if args.policy == 'strokes' else 'flat MLP'})"
    for rname, retriever in retrievers.items():
        retriever = retriever or frozen_retriever(test)
        bar = None if args.no_progress else f"{rname}: "
        rows[("human", rname)] = [score(test, human_chooser, retriever, sketches, bar and bar + "human")]
        rows[("greedy look-ahead (upper reference)", rname)] = [score(test, greedy_chooser(retriever), retriever,
                                                                      sketches, bar and bar + "greedy")]
        rows[("longest stroke first", rname)] = [score(test, longest_first_chooser, retriever, sketches,
                                                       bar and bar + "longest first")]
        rows[("random", rname)] = [score(test, random_chooser(np.random.default_rng(s)), retriever, sketches,
                                         bar and f"{bar}random s{s}") for s in args.seeds]
        rows[(learned, rname)] = [score(test, policy_chooser(load_sketcher(policies[rname, s], test, s, args.policy)),
                                                   retriever, sketches, bar and f"{bar}learned s{s}")
                                             for s in args.seeds]
        print(f"[{rname} retriever] scored", flush=True)

    cols = [f"strokes@top{k}" for k in TOPS] + [f"%strokes@top{k}" for k in TOPS] + ["m@B"]
    lines = ["| order | retriever | " + " | ".join(cols) + " |", "| --- | --- |" + " ---: |" * len(cols)]
    csv_rows = []
    for (order, rname), vals in rows.items():
        cells, flat = [], []
        for c in cols:
            m, ci = mean_ci([v[c] for v in vals])
            cells.append(f"{m:.2f}" + (f" ± {ci:.2f}" if len(vals) > 1 else ""))
            flat += [round(m, 3), round(ci, 3)]
        lines.append(f"| {order} | {rname} | " + " | ".join(cells) + " |")
        csv_rows.append([order, rname, *flat, len(vals)])
    write_csv(out / "stroke_order.csv", csv_rows,
              header=["order", "retriever", *[x for c in cols for x in (c, f"{c}_ci95")], "seeds"])
    diffs = []
    for rname in retrievers:
        human = rows[("human", rname)][0]["strokes@top5"]
        d, ci = mean_ci([v["strokes@top5"] - human for v in rows[(learned, rname)]])
        per_seed = ", ".join(f"s{s} {v['strokes@top5']:.2f}" for s, v in zip(args.seeds, rows[(learned, rname)]))
        diffs.append(f"learned - human strokes to top 5 ({rname} retriever): {d:+.2f} ± {ci:.2f} "
                     f"(learned per seed: {per_seed})")
    command = command_line("stroke_order", argv)
    body = ("\n".join(lines) + "\n\n" + "\n".join(diffs)
            + f"\n\nGame step (render + embed one canvas, rank, reward; cold cache): {step_ms:.2f} ms\n")
    text = (f"`{command}` ({machine_name()}; {len(sketches)} test sketches, gallery {test.gallery_size}; "
            f"{(time.perf_counter() - t_start) / 60:.0f} min)\n\n" + body)
    write_text(out / "stroke_order.md", text)
    write_readme(out, "Stroke order: strokes on the canvas until the true photo reaches the top", command, body,
                 seconds=time.perf_counter() - t_start,
                 notes=f"{len(sketches)} test sketches, gallery {test.gallery_size}; retrievers: "
                 f"{', '.join(retrievers)}; learned sketcher: `{args.policy}` policy, {args.timesteps:,} env steps per "
                 f"seed, `{args.reward}` reward; seeds {args.seeds}; random and learned orders mean ± 95 % t-interval "
                 "over the seeds.",
                 files=["stroke_order.md", "stroke_order.csv"])
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
