"""The main job as a user runs it, timed: ``sketch-env run`` once per seed (or repeated with one seed), each
alone on the machine in a fresh cache and data folder, so every run trains its backend and caches every
feature anew.

    python -m benchmarks.main_job --dataset kanji --repeats 2            # the same run twice: its spread
    python -m benchmarks.main_job --dataset chairv2 --root runs/chairv2-dev --seeds 0 1 2

Each run's ``summary.json`` (written by ``sketch-env run``) gives its table and its times; the report puts
the runs side by side with the mean ± 95 % t-interval over seeds, or, for repeats of one seed, the largest
difference between them (the run-to-run spread on this machine). Writes ``README.md`` and ``runs.csv`` to
``--out`` (default ``benchmarks/results/main_job-<dataset>``); the run folders stay under ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, command_line, mean_ci, run_cwd, runs_folder, write_readme
from benchmarks.executor import GridRun, add_executor_args, executor_options, run_grid
from sketch_env.cache import write_csv

__all__ = ["main"]

COLUMNS = ("A@1", "A@5", "A@10", "m@A", "m@B")


def main_job_run(folder: Path, args: argparse.Namespace, seed: int, repeat: int) -> dict:  # a grid run
    """One ``sketch-env run`` in ``folder``, in a fresh cache and data folder of its own, timed whole."""
    import tempfile

    from sketch_env.cache import read_json, write_json

    for child in list(folder.iterdir()):  # an unfinished run starts over: its time must be whole
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    with tempfile.TemporaryDirectory(prefix="sketch-env-main-job-") as work:
        env = dict(os.environ, SKETCH_ENV_CACHE=str(Path(work) / "cache"), SKETCH_ENV_DATA=str(Path(work) / "data"))
        cmd = [sys.executable, "-m", "agents.cli", "run", "--dataset", args.dataset, "--seed", str(seed),
               "--out", str(folder), *(["--root", str(Path(args.root).resolve())] if args.root else []),
               *args.extra]
        print(f"[main_job] {' '.join(cmd[3:])}", flush=True)
        t0 = time.perf_counter()
        with open(Path(work) / "main_job.log", "w") as log:
            code = subprocess.run(cmd, env=env, cwd=run_cwd(), stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        shutil.copy(Path(work) / "main_job.log", folder / "main_job.log")
    if code:
        raise subprocess.CalledProcessError(code, cmd)
    summary = folder / "summary.json"
    result = read_json(summary)
    result["minutes"]["wall"] = round(wall / 60, 2)
    write_json(summary, result)
    return result


def write_report(results: list[dict], args: argparse.Namespace, out: Path, seconds: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    methods = list(results[0]["rows"])
    write_csv(out / "runs.csv",
              [[r["seed"], r["repeat"], m, int(r["rows"][m]["gallery_size"]),
                *[round(r["rows"][m][c], 4) for c in COLUMNS], r["minutes"]["backend_stage"], r["minutes"]["wall"],
                r["backend_training"]["gradient_steps"], r.get("rl_training", {}).get("env_steps")]
               for r in results for m in methods],
              header=["seed", "repeat", "method", "gallery_size", *COLUMNS, "backend_minutes", "total_minutes",
                      "backend_gradient_steps", "rl_env_steps"])
    lines = ["| run | method | " + " | ".join(COLUMNS) + " | backend min | total min |",
             "| --- | --- |" + " ---: |" * (len(COLUMNS) + 2)]
    for r in results:
        for m in methods:
            row = r["rows"][m]
            lines.append(f"| seed {r['seed']}, run {r['repeat'] + 1} | {m} | "
                         + " | ".join(f"{row[c]:.1f}" for c in COLUMNS)
                         + f" | {r['minutes']['backend_stage']:.1f} | {r['minutes']['wall']:.1f} |")
    seeds = sorted({r["seed"] for r in results})
    for m in methods if len(results) > 1 else ():  # one run has no spread to show
        values = {c: [r["rows"][m][c] for r in results] for c in COLUMNS}
        if len(seeds) > 1:
            cells = []
            for c in COLUMNS:
                mean, half = mean_ci(values[c])
                cells.append(f"{mean:.1f} ± {half:.1f}")
            label = f"mean ± 95 % t-interval, {len(seeds)} seeds"
        else:
            cells = [f"{np.max(values[c]) - np.min(values[c]):.2f}" for c in COLUMNS]
            label = f"largest difference, {len(results)} runs"
        minutes = [r["minutes"]["wall"] for r in results]
        lines.append(f"| {label} | {m} | " + " | ".join(cells) + f" | | {min(minutes):.1f}-{max(minutes):.1f} |")
    table = "\n".join(lines)
    cut = [f"seed {r['seed']} run {r['repeat'] + 1}" for r in results
           if r["backend_training"]["cut_short"] or r.get("rl_training", {}).get("cut_short")]
    first = results[0]
    shown = first["command"].replace(str(ROOT) + os.sep, "")  # paths inside the repository, relative
    notes = (f"Each run: `{shown}` with its seed, alone on the machine, in a fresh cache and data folder (the "
             f"backend trained and every feature cached anew). Backend: "
             f"{first['backend_training']['gradient_steps']} gradient steps "
             f"({first['backend_training']['epochs']} epochs of {first['backend_training']['train_photos']} "
             f"photos, validation on {first['backend_training']['val_photos']}); RL: "
             f"{first.get('rl_training', {}).get('env_steps', 0):,} env steps. Test split, S = 20 steps; total "
             "min = the whole command's wall time. The machine's speed: `benchmarks/results/machine/README.md`."
             + (f"\n\nCut short by a time cap: {', '.join(cut)}." if cut else ""))
    write_readme(out, f"The main job on {args.dataset}, as a user runs it", command_line("main_job", args.argv),
                 table, seconds=seconds, notes=notes, files=["runs.csv"])
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji")
    p.add_argument("--root", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--repeats", type=int, default=1, help="runs of each seed")
    p.add_argument("--runs", default="runs/benchmarks/main_job", help="run folders")
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results/main_job-<dataset>)")
    add_executor_args(p, "runs at once (their minutes are then not the machine's alone)")
    p.add_argument("extra", nargs="*", help="after --: more arguments of `sketch-env run`")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    from sketch_env.datasets import make_dataset

    runs = runs_folder(args.runs, make_dataset(args.dataset, root=args.root), args.root)
    runs.mkdir(parents=True, exist_ok=True)
    out = Path(args.out or f"benchmarks/results/main_job-{args.dataset}")
    t0 = time.perf_counter()
    grid = [GridRun(key=f"s{seed}-r{k}", folder=runs / f"s{seed}-r{k}", fn=main_job_run,
                    kwargs={"args": args, "seed": seed, "repeat": k}, cpus=os.cpu_count() or 1,
                    ignore=("args.repeats",))
            for seed in args.seeds for k in range(args.repeats)]
    results = [r | {"repeat": run.kwargs["repeat"]} for run, r in zip(grid, run_grid(grid, executor_options(args)))]
    table = write_report(results, args, out, time.perf_counter() - t0)
    print(table)
    print(f"wrote {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
