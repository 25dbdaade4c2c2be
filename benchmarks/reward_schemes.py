"""The reward ablation: the paper's final method (``ppo-a-clip``) trained with each reward scheme, x seeds,
mean and 95 % interval of m@A, m@B, A@5, A@10 next to the frozen backend it starts from.

    python benchmarks/reward_schemes.py --backend runs/embeddings/kanji-instance/b1-s0/backend.pt --jobs 2
    python benchmarks/reward_schemes.py --schemes paper inverse_rank --seeds 0 1 2 --minutes 5

Schemes (``sketch_env.envs.rewards``): ``paper`` (1/rank plus the Kendall-tau stability term, paid one step
late), ``inverse_rank``, ``inverse_sqrt_rank``, ``neg_rank``, ``top1``, ``top5``, ``top10``. Every run is
selected on the validation split by m@B and scored on the test split, so the schemes are compared on the
retrieval metrics, not on their own (incomparable) returns. Same process model as ``rl_methods.py``:
one process per run, ``--jobs N`` at once, resumable. Writes ``reward_schemes.md``, ``.csv`` and
``curves.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rl_methods import ENV_IDS, backend_label, resolve_backend, run_one, write_results  # noqa: E402
from sketch_env.envs.rewards import REWARD_SCHEMES  # noqa: E402

LABELS = {"paper": "1/rank + Kendall-tau term (paper)", "inverse_rank": "1/rank", "inverse_sqrt_rank": "1/sqrt(rank)",
          "neg_rank": "-rank", "top1": "1 if rank = 1", "top5": "1 if rank <= 5", "top10": "1 if rank <= 10"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji", choices=sorted(ENV_IDS))
    p.add_argument("--data-root", default=None)
    p.add_argument("--backend", default="b1", help="the frozen backend the policies start from (b1, b2, path)")
    p.add_argument("--algo", default="ppo-a-clip")
    p.add_argument("--schemes", nargs="+", default=list(REWARD_SCHEMES), choices=list(REWARD_SCHEMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=15.0, help="wall-time budget per run")
    p.add_argument("--timesteps", type=int, default=None, help="env steps per run (default: the YAML's)")
    p.add_argument("--eval-every", type=int, default=100_000)
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (independent processes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    p.add_argument("--runs", default="runs/benchmarks/reward_schemes")
    p.add_argument("--out", default="benchmarks/results/reward_schemes")
    args = p.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    resolve_backend(args)
    env_id = ENV_IDS[args.dataset]
    base = [f"backend={args.backend}"] + ([f"data_root={args.data_root}"] if args.data_root else [])

    jobs = [(scheme, seed) for scheme in args.schemes for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(
            lambda j: run_one(args, args.algo, j[1], env_id, base + [f"reward={j[0]}"], tag=f"{args.algo}-{j[0]}"),
            jobs))
    groups = {s: (f"{LABELS[s]} (`{s}`)", [r for r in results if r["tag"] == f"{args.algo}-{s}"]) for s in args.schemes}
    cmd = "python benchmarks/reward_schemes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(groups, results, args, cmd, "reward_schemes",
                  f"{args.dataset}: {args.algo} reward schemes from {backend_label(args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
