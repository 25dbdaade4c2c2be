"""What the benchmarks share: the 95 % interval of a multi-seed figure, thread settings for the processes they
start, the report (``README.md``) every benchmark writes beside its data, and
the runner of RL-run tables (train, evaluate, tabulate) that ``rl_methods`` and ``reward_schemes`` drive."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.executor import GridRun, Input, add_executor_args
from sketch_env.cache import write_csv, write_text
from sketch_env.device import machine_name
from sketch_env.envs.registration import DATASET_ENV_IDS as ENV_IDS

__all__ = ["ROOT", "add_root_arg", "mean_ci", "runs_folder", "thread_env", "run_cwd", "command_line",
           "write_readme", "COLUMNS", "rl_grid_run", "train_and_evaluate_rl", "fast_group_run", "train_fast_group",
           "evaluate_run", "backend_label", "write_results", "add_run_args", "parse_run_args"]

#: the columns of the RL tables
COLUMNS = ("m@A", "m@B", "A@5", "A@10")

#: the repository root (benchmarks start their child processes there)
ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95 % Student-t interval, ``t_{0.975, n-1} s / sqrt(n)``
    (0 for one value); the quantile is SciPy's."""
    x = np.asarray(list(values), dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), 0.0
    try:
        from scipy import stats
    except ImportError as exc:  # scipy is in the dev extra
        raise RuntimeError("the 95 % interval needs scipy: pip install -e '.[dev]'") from exc
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def runs_folder(base: str | Path, dataset: Any, root: str | None) -> Path:
    """Where a benchmark keeps the run folders of ``dataset`` (a :class:`~sketch_env.datasets.SketchDataset`):
    ``base/<name>-<scheme>``, and for data read from disk a short hash of its absolute root, so two copies
    (the published dataset, a development split of it) never share checkpoints."""
    from sketch_env.cache import stable_hash

    name = f"{dataset.name}-{dataset.scheme}"
    if root is not None:
        name += f"-{stable_hash(str(Path(root).resolve()), 8)}"
    return Path(base).resolve() / name


def thread_env(threads: int) -> dict[str, str]:
    """The environment for a child process that may use ``threads`` cores: torch's OpenMP, BLAS and numba
    pools sized alike (left to themselves, each takes every core and they spin against each other)."""
    n = str(int(threads))
    return dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, NUMBA_NUM_THREADS=n)


# ------------------------------------------------------------------------ the report beside the data


def command_line(name: str, argv: list[str] | None = None) -> str:
    """``python -m benchmarks.NAME ARGS`` of this call (``argv``, else the process's arguments), each argument
    quoted as a shell needs it, so the line can be pasted back."""
    return shlex.join(["python", "-m", f"benchmarks.{name}", *(sys.argv[1:] if argv is None else argv)])


def write_readme(out: str | Path, title: str, command: str, body: str, *, seconds: float, notes: str = "",
                 plots: Iterable[str] = (), files: Iterable[str] = ()) -> Path:
    """``out/README.md``, the report beside a benchmark's data: ``# title``, the command in backticks, the machine
    (:func:`machine_name`, CPUs), the date and this call's wall minutes, ``notes`` (what was run), ``body`` (the
    tables the benchmark writes), a link to each plot of ``plots`` (file names in ``out``) and one line listing
    ``files``. Returns its path."""
    lines = [f"# {title}", "", f"`{command}`", "",
             f"{machine_name()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}; "
             f"{seconds / 60:.1f} min in this call.", ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    lines += [body.strip(), ""]
    for plot in plots:
        lines += [f"![{Path(plot).stem}]({plot})", ""]
    files = list(files)
    if files:
        lines += ["Files: " + ", ".join(f"`{f}`" for f in files) + ".", ""]
    path = Path(out) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines))
    return path


# ------------------------------------------------------------------------ tables of RL runs


def rl_train_command(args: argparse.Namespace, algo: str, env_id: str, env_kwargs: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "agents.cli", "train", "--algo", algo, "--env", env_id,
           "--eval-every", str(args.eval_every)]
    if args.minutes is not None:
        cmd += ["--minutes", str(args.minutes)]
    if args.timesteps is not None:
        cmd += ["--timesteps", str(args.timesteps)]
    for kv in env_kwargs:
        cmd += ["--env-kwarg", kv]
    for kv in args.hp:
        cmd += ["--hp", kv]
    return cmd


def _backend_kwargs(env_kwargs: list[str], backend_file: Path | None) -> list[str]:
    """``env_kwargs`` with the backend pointing at ``backend_file`` (a checkpoint's copy on a worker)."""
    if backend_file is None:
        return list(env_kwargs)
    return [f"backend={backend_file}" if kv.startswith("backend=") else kv for kv in env_kwargs]


def run_cwd() -> Path | None:
    """Where runs start their processes: the repository root when it is here (a Ray worker elsewhere may not
    have it; the installed package serves there)."""
    return ROOT if ROOT.is_dir() else None


def train_and_evaluate_rl(folder: Path, args: argparse.Namespace, algo: str, seed: int, env_id: str,
                          env_kwargs: list[str], tag: str | None = None, backend_file: Path | None = None) -> dict:
    """One RL run in ``folder``: train (or resume) then evaluate, each in its own process."""
    cmd = rl_train_command(args, algo, env_id, _backend_kwargs(env_kwargs, backend_file)) + [
        "--seed", str(seed), "--out", str(folder)]
    t0 = time.perf_counter()
    with open(folder / "benchmark.log", "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=thread_env(args.threads), cwd=run_cwd())
    return evaluate_run(args, folder, algo, seed, time.perf_counter() - t0, tag)


def _backend_input(args: argparse.Namespace) -> dict[str, Any]:
    """``{"backend_file": Input(path)}`` when the runs start from a checkpoint file (shipped to Ray workers)."""
    return {"backend_file": Input(args.backend)} if Path(args.backend).suffix == ".pt" else {}


def rl_grid_run(args: argparse.Namespace, algo: str, seed: int, env_id: str, env_kwargs: list[str],
                tag: str | None = None) -> GridRun:
    """The :class:`~benchmarks.executor.GridRun` of one RL run; ``tag`` names its folder (default: the method)."""
    name = f"{tag or algo}-s{seed}"
    return GridRun(key=name, folder=Path(args.runs).resolve() / args.dataset / backend_label(args) / name,
                   fn=train_and_evaluate_rl, cpus=args.threads,
                   kwargs=dict(args=args, algo=algo, seed=seed, env_id=env_id, env_kwargs=env_kwargs, tag=tag,
                               **_backend_input(args)))


def train_fast_group(folder: Path, args: argparse.Namespace, algo: str, env_id: str, env_kwargs: list[str],
                     backend_file: Path | None = None) -> list[dict]:
    """Every seed of ``algo`` trained side by side in one process with the fast trainer (agents.fast), in
    ``folder/<algo>-s<seed>``, then each evaluated; a run's wall time is the group's (its agents trained
    together)."""
    cmd = rl_train_command(args, algo, env_id, _backend_kwargs(env_kwargs, backend_file)) + [
        "--trainer", "fast", "--seeds", *map(str, args.seeds), "--out", str(folder)]
    t0 = time.perf_counter()
    with open(folder / f"{algo}-benchmark.log", "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=thread_env(args.threads), cwd=run_cwd())
    train_s = time.perf_counter() - t0
    return [evaluate_run(args, folder / f"{algo}-s{seed}", algo, seed, train_s) for seed in args.seeds]


def fast_group_run(args: argparse.Namespace, algo: str, env_id: str, env_kwargs: list[str]) -> GridRun:
    """The :class:`~benchmarks.executor.GridRun` of one method's seeds on the fast trainer."""
    seeds = "-".join(map(str, args.seeds))
    return GridRun(key=f"fast-{algo}-s{seeds}",
                   folder=Path(args.runs).resolve() / args.dataset / backend_label(args) / "fast" / f"{algo}-s{seeds}",
                   fn=train_fast_group, cpus=args.threads,
                   kwargs=dict(args=args, algo=algo, env_id=env_id, env_kwargs=env_kwargs, **_backend_input(args)))


def evaluate_run(args: argparse.Namespace, out: Path, algo: str, seed: int, train_s: float,
                 tag: str | None = None) -> dict:
    """``sketch-env evaluate`` of a run's ``best.zip`` on the test split, with its history and curves."""
    res = subprocess.run([sys.executable, "-m", "agents.cli", "evaluate", "--model", str(out / "best.zip"),
                          "--json", "--out", str(out / "eval-test")], check=True, capture_output=True, text=True,
                         env=thread_env(args.threads), cwd=run_cwd())
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    curves = {}
    with open(out / "eval-test" / "curves.csv") as f:
        for r in csv.DictReader(f):
            curves.setdefault(r["method"], []).append((float(r["percent"]), float(r["ranking_percentile"]),
                                                       float(r["inverse_rank"])))
    from agents.io import read_meta

    cut_short = bool(read_meta(out / "last.zip").get("train_state", {}).get("cut_short"))
    with open(out / "eval-test" / "episodes.csv") as f:  # the agent's rows (the frozen backend's are the same)
        episodes = [{k: v for k, v in r.items() if k not in ("method", "seed")} for r in csv.DictReader(f)
                    if r["method"] != "frozen backend"]
    agent = rows[next(k for k in rows if k != "frozen backend")]
    print(f"[{tag or algo} s{seed}] {train_s / 60:.1f} min this call; test m@A {agent['m@A']:.1f} "
          f"m@B {agent['m@B']:.1f}", flush=True)
    return {"algo": algo, "tag": tag or algo, "seed": seed, "rows": rows, "train_seconds": train_s,
            "run_seconds": history[-1]["elapsed"] if history else train_s, "curves": curves,
            "timesteps": history[-1]["timesteps"] if history else 0, "cut_short": cut_short, "episodes": episodes}


def backend_label(args: argparse.Namespace) -> str:
    """``B1`` for a registry name; the run folder's name (``b1-s0``) for a checkpoint path."""
    return args.backend.upper() if args.backend in ("ts", "b1", "b2", "b3") else Path(args.backend).parent.name


def resolve_backend(args: argparse.Namespace) -> None:
    """A checkpoint path made absolute (the runs are processes started in the repository root)."""
    if Path(args.backend).suffix == ".pt":
        if not Path(args.backend).is_file():
            raise SystemExit(f"--backend {args.backend}: no such checkpoint")
        args.backend = str(Path(args.backend).resolve())


def write_results(groups: dict[str, tuple[str, list[dict]]], results: list[dict], args: argparse.Namespace,
                  cmd: str, name: str, title: str) -> None:
    """The table (mean ± 95 % t-interval over seeds of each group, and of its gain over the frozen backend,
    which every run evaluates on the same test episodes), CSV of every run and the mean curves."""
    frozen = results[0]["rows"]["frozen backend"]
    blabel = backend_label(args)
    header = list(COLUMNS) + ["Δ m@A", "Δ m@B"]
    table_rows = {f"{blabel} (frozen backend)": {c: (frozen[c], 0.0) for c in COLUMNS}
                  | {"Δ m@A": (0.0, 0.0), "Δ m@B": (0.0, 0.0), "minutes": "-"}}
    csv_rows = []
    curves = {f"{blabel} (frozen)": results[0]["curves"]["frozen backend"]}
    seed_curves: dict[str, list] = {}
    episodes: list[dict] = []
    for key, (label_md, runs) in groups.items():
        label = next(k for k in runs[0]["rows"] if k != "frozen backend")
        stats = {c: mean_ci([r["rows"][label][c] for r in runs]) for c in COLUMNS}
        for c in ("m@A", "m@B"):
            stats[f"Δ {c}"] = mean_ci([r["rows"][label][c] - r["rows"]["frozen backend"][c] for r in runs])
        minutes = np.mean([r["run_seconds"] for r in runs]) / 60
        if any(r.get("cut_short") for r in runs):  # not a full run: its figures are not the method's
            label_md += f" (cut short by --minutes {args.minutes:g})"
        table_rows[label_md] = stats | {"minutes": f"{minutes:.1f}"}
        curves[key] = np.mean([np.asarray(r["curves"][label]) for r in runs], axis=0).tolist()
        seed_curves[key] = [r["curves"][label] for r in runs]
        episodes += [e | {"method": key, "seed": r["seed"]} for r in runs for e in r.get("episodes", [])]
        for r in runs:
            csv_rows.append({"run": key, "seed": r["seed"], **{c: r["rows"][label][c] for c in COLUMNS},
                             "env_steps": r["timesteps"], "cut_short": bool(r.get("cut_short")),
                             "run_seconds": round(r["run_seconds"], 1)})
    seeds = sorted({r["seed"] for r in results})
    lines = [f"`{cmd.strip()}` ({machine_name()}, {os.cpu_count()} CPUs, {len(seeds)} seeds, mean ± 95 % "
             f"t-interval over seeds; Δ = gain over the frozen backend; minutes = wall time of one run, validation "
             f"included" + ("; trainer: fast, the seeds of a method trained side by side in one process, so a run's "
                            "minutes are its group's"
                            if getattr(args, "trainer", "sb3") == "fast" else "; trainer: SB3")
             + ")", "",
             "| method | " + " | ".join(header) + " | minutes |", "| --- | " + " | ".join("---:" for _ in header)
             + " | ---: |"]
    for row_name, row in table_rows.items():
        cells = [f"{row[c][0]:+.1f} ± {row[c][1]:.1f}" if c.startswith("Δ") and row[c][1]
                 else f"{row[c][0]:.1f} ± {row[c][1]:.1f}" if row[c][1] else f"{row[c][0]:.1f}" for c in header]
        lines.append(f"| {row_name} | " + " | ".join(cells) + f" | {row['minutes']} |")
    table = "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"{name}.md", table + "\n")
    write_text(out / "README.md", f"# {title}\n\n{table}\n\n![curves](curves.png)\n\nFiles: `{name}.csv` (one row "
                                   "per run: method, seed, test figures, env steps, wall time), `episodes.csv` (one "
                                   "row per test sketch and run), `curves.png` (and `.pdf`, `.svg`).\n")
    write_csv(out / f"{name}.csv", csv_rows)
    from embeddings.evaluate import plot_curves

    def as_curve(c):
        return {"percent": [v[0] for v in c], "ranking_percentile": [v[1] for v in c],
                "inverse_rank": [v[2] for v in c]}

    plot_curves({k: as_curve(c) for k, c in curves.items()}, out / "curves.png",
                title=title + " (band: the seeds' range)",
                per_seed={k: [as_curve(c) for c in cs] for k, cs in seed_curves.items()})
    if episodes:
        from embeddings.evaluate import write_episodes_csv

        write_episodes_csv(episodes, out / "episodes.csv")
    print(table)
    print(f"wrote {out / (name + '.md')}, {out / (name + '.csv')}, {out / 'curves.png'}")


def add_root_arg(p: argparse.ArgumentParser) -> None:
    """``--root`` (``args.data_root``, the env's keyword), as every command names the dataset's folder;
    ``--data-root``, its earlier name, too."""
    p.add_argument("--root", "--data-root", dest="data_root", default=None,
                   help="the dataset's folder, for datasets read from disk (--data-root: the same)")


def add_run_args(p: argparse.ArgumentParser, name: str) -> None:
    """The options every table of RL runs shares (data, start backend, seeds, budget, parallel jobs, folders)."""
    p.add_argument("--dataset", default="kanji", choices=sorted(ENV_IDS))
    add_root_arg(p)
    p.add_argument("--backend", default="b1", help="the frozen backend the policies start from (b1, b2, path)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=None,
                   help="an optional cap on each run's training time (the table marks runs it cut short)")
    p.add_argument("--timesteps", type=int, default=None, help="env steps per run (default: the YAML's)")
    p.add_argument("--eval-every", type=int, default=100_000)
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override")
    add_executor_args(p, "runs in parallel (independent processes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    p.add_argument("--runs", default=f"runs/benchmarks/{name}")
    p.add_argument("--out", default=f"benchmarks/results/{name}")


def parse_run_args(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, str, list[str]]:
    """``(args, env id, env kwargs as KEY=VALUE)`` from :func:`add_run_args`' options; the backend's feature
    stores of the three splits are built here, once, before any run starts."""
    args = p.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    resolve_backend(args)
    env_kwargs = [f"backend={args.backend}"] + ([f"data_root={args.data_root}"] if args.data_root else [])
    build_feature_stores(ENV_IDS[args.dataset], env_kwargs)
    return args, ENV_IDS[args.dataset], env_kwargs


def build_feature_stores(env_id: str, env_kwargs: list[str]) -> None:
    """Make the env of each split once in this process (all cores), so that its feature store is on disk
    before the runs start: parallel runs would otherwise each compute the same store, and inside their
    wall-time budget."""
    import gymnasium as gym

    kwargs = dict(kv.split("=", 1) for kv in env_kwargs)
    for split in ("train", "val", "test"):
        gym.make(env_id, **kwargs, split=split, precompute=True).close()
