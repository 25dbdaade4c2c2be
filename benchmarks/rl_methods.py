"""The RL-method table: the six methods x seeds, mean and 95 % interval of m@A, m@B, A@5, A@10, next to the
frozen backend they start from.

    python -m benchmarks.rl_methods                                  # kanji, B1, 6 methods x 3 seeds
    python -m benchmarks.rl_methods --methods ppo-a-clip --seeds 0 1 2 --minutes 15
    python -m benchmarks.rl_methods --dataset chairv2 --root ~/data/ChairV2 --jobs 2

Each run is its own process (``sketch-env train`` then ``sketch-env evaluate --json``) in its own run folder,
so ``--jobs N`` runs N at once and a killed benchmark resumes its runs where they stopped (a finished run
is read back from its folder). ``--executor ray --address auto`` runs each one as a Ray task on a cluster
(:mod:`benchmarks.executor`). The test split is used for the reported figures only; each run keeps the
checkpoint with the best validation m@B. Writes ``rl_methods.md``, ``rl_methods.csv`` and ``curves.png``
(mean curve per method) to ``--out`` and prints the table with each run's wall time.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import add_run_args, backend_label, fast_group_run, parse_run_args, rl_grid_run, write_results
from benchmarks.executor import executor_options, run_grid

METHODS = ["vpg", "ppo-a-clip", "ppo-ac-clip", "ppo-a-kl", "ppo-ac-kl", "trpo"]
LABELS = {"vpg": "vanilla policy gradient", "ppo-a-clip": "PPO actor-only, clipping (final)",
          "ppo-ac-clip": "PPO actor-critic, clipping", "ppo-a-kl": "PPO actor-only, KL penalty",
          "ppo-ac-kl": "PPO actor-critic, KL penalty", "trpo": "TRPO"}
FAST_METHODS = ["vpg", "ppo-a-clip", "ppo-ac-clip", "ppo-a-kl", "ppo-ac-kl"]  # agents.fast.trainer.FAST_ALGORITHMS
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--trainer", default="sb3", choices=["sb3", "fast"],
                   help="sb3: one process per run; fast: agents.fast, the seeds of a method side by side in one "
                        "process (vpg and the PPO methods)")
    add_run_args(p, "rl_methods")
    args, env_id, env_kwargs = parse_run_args(p, argv)

    if args.trainer == "fast":
        unsupported = [m for m in args.methods if m not in FAST_METHODS]
        if unsupported:
            p.error(f"--trainer fast runs {FAST_METHODS}; run {unsupported} with --trainer sb3")
        grid = [fast_group_run(args, algo, env_id, env_kwargs) for algo in args.methods]
        results = [r for g in run_grid(grid, executor_options(args)) for r in g]
    else:
        grid = [rl_grid_run(args, algo, seed, env_id, env_kwargs) for algo in args.methods for seed in args.seeds]
        results = run_grid(grid, executor_options(args))

    groups = {algo: (f"{LABELS[algo]} (`{algo}`)", [r for r in results if r["algo"] == algo]) for algo in args.methods}
    cmd = "python -m benchmarks.rl_methods " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(groups, results, args, cmd, "rl_methods", f"{args.dataset}: RL methods from {backend_label(args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
