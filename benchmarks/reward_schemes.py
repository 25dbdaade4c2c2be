"""The reward ablation: the paper's final method (``ppo-a-clip``) trained with each reward scheme, x seeds,
mean and 95 % interval of m@A, m@B, A@5, A@10 next to the frozen backend it starts from.

    python -m benchmarks.reward_schemes --backend runs/embeddings/kanji-instance/b1-s0/backend.pt --jobs 2
    python -m benchmarks.reward_schemes --schemes paper inverse_rank --seeds 0 1 2 --minutes 5

Schemes (``sketch_env.envs.rewards``): ``paper`` (1/rank plus the Kendall-tau stability term, paid one step
late), ``inverse_rank``, ``inverse_sqrt_rank``, ``neg_rank``, ``top1``, ``top5``, ``top10``. Every run is
selected on the validation split by m@B and scored on the test split, so the schemes are compared on the
retrieval metrics, not on their own (incomparable) returns. Same process model as ``rl_methods.py``:
one process per run, ``--jobs N`` at once, resumable. Writes ``reward_schemes.md``, ``.csv`` and
``curves.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import add_run_args, backend_label, parse_run_args, rl_grid_run, write_results
from benchmarks.executor import executor_options, run_grid
from sketch_env.envs.rewards import REWARD_SCHEMES

LABELS = {"paper": "1/rank + Kendall-tau term (paper)", "inverse_rank": "1/rank", "inverse_sqrt_rank": "1/sqrt(rank)",
          "neg_rank": "-rank", "top1": "1 if rank = 1", "top5": "1 if rank <= 5", "top10": "1 if rank <= 10"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="ppo-a-clip")
    p.add_argument("--schemes", nargs="+", default=list(REWARD_SCHEMES), choices=list(REWARD_SCHEMES))
    add_run_args(p, "reward_schemes")
    args, env_id, base = parse_run_args(p, argv)

    grid = [rl_grid_run(args, args.algo, seed, env_id, base + [f"reward={scheme}"], tag=f"{args.algo}-{scheme}")
            for scheme in args.schemes for seed in args.seeds]
    results = run_grid(grid, executor_options(args))
    groups = {s: (f"{LABELS[s]} (`{s}`)", [r for r in results if r["tag"] == f"{args.algo}-{s}"]) for s in args.schemes}
    cmd = "python -m benchmarks.reward_schemes " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(groups, results, args, cmd, "reward_schemes",
                  f"{args.dataset}: {args.algo} reward schemes from {backend_label(args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
