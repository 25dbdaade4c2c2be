"""Environment steps per second: single env, SyncVectorEnv of single envs, the native batched env.

Usage::

    python -m benchmarks.env_throughput [--quick] [--sizes 100 1000 10000] [--num-envs 256] [--seconds 2]

Data: random unit-norm gallery vectors (d = 64) and random features (F = 128) for 64 sketches of S = 20
steps: the env's cost does not depend on what the vectors mean (only on N, P, d), so no backend is
needed. Actions are random Gaussian vectors, so consecutive rankings are unrelated (the Kendall count's
worst case). All rows use the ``paper`` reward (exact Kendall-tau term) unless marked, and are measured
side by side in one run, each for at least ``--seconds`` after a warm-up step:

* ``single env``: ``OnTheFlyRetrievalEnv.step`` (one env, N = 1);
* ``SyncVectorEnv``: Gymnasium's ``SyncVectorEnv`` of ``--sync-envs`` single envs (same-step autoreset);
* ``native numpy (<kernel>)``: :class:`OnTheFlyRetrievalVectorEnv` with ``compute="numpy"`` and the
  Kendall kernel ``numba`` (the ``[fast]`` extra), ``numba-parallel`` or ``numpy`` (pure NumPy);
* ``native torch cpu`` / ``native torch cuda`` (when a GPU is present);
* reference rows: ``native, inverse_rank, kendall=False`` (the env without the Kendall count) and
  ``distances + rank only`` (``metrics.euclidean_distance`` + ``metrics.rank`` on N queries, no env).

Writes ``README.md`` (the report: command, machine, date, the tables), ``env_throughput.md`` and
``env_throughput.csv`` to ``--out`` (default ``benchmarks/results/env_throughput/``) and prints the tables.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

if "--threads" in sys.argv:  # must be set before numpy and torch load their thread pools
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = _threads

import gymnasium as gym
import numpy as np

from benchmarks.common import command_line, write_readme
from sketch_env import metrics
from sketch_env.cache import write_csv, write_text
from sketch_env.device import machine_name
from sketch_env.envs import kendall
from sketch_env.envs.data import RetrievalData
from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv
from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv

DIM, FEAT, SKETCHES, STEPS = 64, 128, 64, 20


def make_data(photos: int, seed: int = 0) -> RetrievalData:
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(photos, DIM)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    features = rng.normal(size=(SKETCHES, STEPS, FEAT)).astype(np.float32)
    queries = rng.normal(size=(SKETCHES, STEPS, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=-1, keepdims=True)
    return RetrievalData.from_arrays(
        features, gallery, rng.integers(0, photos, SKETCHES), queries, description=f"random P={photos}"
    )


def timed(step, envs_per_call: int, seconds: float) -> tuple[float, float, int]:
    """``(env-steps per second, env-steps per CPU-second of this process, calls)`` of ``step()`` (each call
    steps ``envs_per_call`` envs), timed for at least ``seconds`` after two episodes of warm-up. The CPU
    figure counts all of the process's threads; on a machine shared with other jobs it shows what the code
    costs when the wall clock is inflated by waiting for a core."""
    for _ in range(2 * STEPS):  # warm-up: whole episodes (torch kernels, caches)
        step()
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            used = time.process_time() - cpu
            return calls * envs_per_call / elapsed, calls * envs_per_call / max(used, 1e-9), calls


def bench_single(data, seconds, **kw):
    env = OnTheFlyRetrievalEnv(data=data, **kw)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(64, DIM)).astype(np.float32)
    state = {"i": 0}

    def step():
        _, _, term, _, _ = env.step(actions[state["i"] % 64])
        state["i"] += 1
        if term:
            env.reset()

    return timed(step, 1, seconds)


def bench_vector(env, seconds):
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.normal(size=env.action_space.shape).astype(np.float32) for _ in range(4)]
    state = {"i": 0}

    def step():
        env.step(actions[state["i"] % 4])
        state["i"] += 1

    return timed(step, env.num_envs, seconds)


def bench_rank_only(data, n, seconds):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    prepared = metrics.prepare_gallery(data.gallery)
    true = rng.integers(0, data.gallery_size, n)
    return timed(lambda: metrics.rank(metrics.euclidean_distance(q, None, prepared), true), n, seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="gallery sizes P")
    ap.add_argument("--num-envs", type=int, default=256, help="N of the native batched env")
    ap.add_argument("--sync-envs", type=int, default=16, help="single envs in the SyncVectorEnv")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timing per row")
    ap.add_argument("--quick", action="store_true", help="P = 1,000 only, 0.5 s per row")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS / OpenMP / numba / torch threads (default: the libraries' own, all cores)",
    )
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "env_throughput"),
                    help="report folder (README.md, env_throughput.md, env_throughput.csv)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.quick:
        args.sizes, args.seconds = [1000], 0.5
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    kernels = ["numba", "numba-parallel"] if kendall.numba_available() else []
    kernels.append("numpy")
    load_before = os.getloadavg()
    rows = []

    def add(size, path, n, rate, cpu_rate, calls, note=""):
        rows.append(
            {
                "P": size,
                "path": path,
                "N": n,
                "steps_per_s": rate,
                "steps_per_cpu_s": cpu_rate,
                "calls": calls,
                "note": note,
            }
        )
        print(
            f"P={size:>6}  {path:<44} N={n:<5} {rate:>12,.0f} env-steps/s {cpu_rate:>12,.0f} per CPU-s "
            f"({calls} calls) {note}",
            flush=True,
        )

    for size in args.sizes:
        data = make_data(size)
        n = args.num_envs
        add(size, "single env", 1, *bench_single(data, args.seconds))
        sync = gym.vector.SyncVectorEnv(
            [lambda data=data: OnTheFlyRetrievalEnv(data=data) for _ in range(args.sync_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        add(size, "SyncVectorEnv of single envs", args.sync_envs, *bench_vector(sync, args.seconds))
        for kernel in kernels:
            env = OnTheFlyRetrievalVectorEnv(n, data=data, kernel=kernel, autoreset_mode="same_step")
            add(size, f"native numpy ({kernel} Kendall)", n, *bench_vector(env, args.seconds))
        add(
            size,
            "native torch cpu",
            n,
            *bench_vector(OnTheFlyRetrievalVectorEnv(n, data=data, compute="torch", autoreset_mode="same_step"),
                         args.seconds),
            f"{torch.get_num_threads()} threads",
        )
        if cuda:
            env = OnTheFlyRetrievalVectorEnv(n, data=data, compute="torch", device="cuda", autoreset_mode="same_step")
            add(size, "native torch cuda", n, *bench_vector(env, args.seconds), torch.cuda.get_device_name())
        env = OnTheFlyRetrievalVectorEnv(n, data=data, reward="inverse_rank", kendall=False,
                                         autoreset_mode="same_step")
        add(size, "native numpy, inverse_rank, kendall=False", n, *bench_vector(env, args.seconds), "reference")
        add(size, "distances + rank only (no env)", n, *bench_rank_only(data, n, args.seconds), "reference")
    load_after = os.getloadavg()

    # ratios at each size: native (fastest numpy kernel) against the SyncVectorEnv and the references
    lines = []
    for size in args.sizes:
        at = {r["path"]: r["steps_per_s"] for r in rows if r["P"] == size}
        best = max(kernels, key=lambda k: at[f"native numpy ({k} Kendall)"])
        native = at[f"native numpy ({best} Kendall)"]
        lines.append(
            f"| {size:,} | {best} | {native / at['SyncVectorEnv of single envs']:.1f}x | "
            f"{native / at['single env']:.0f}x | "
            f"{native / at['native numpy, inverse_rank, kendall=False']:.2f} | "
            f"{native / at['distances + rank only (no env)']:.2f} |"
        )

    numba_threads = ""
    if kendall.numba_available():
        import numba

        numba_threads = f", numba {numba.__version__} ({numba.get_num_threads()} threads)"
    threads = f"--threads {args.threads}" if args.threads else "default threads"
    machine = (
        f"{machine_name()}, {os.cpu_count()} CPUs ({threads}), "
        f"numpy {np.__version__}, "
        f"torch {torch.__version__}{numba_threads}, CUDA: {torch.cuda.get_device_name() if cuda else 'none'}"
    )
    table = io.StringIO()
    table.write("| P | path | N | env-steps/s | env-steps per CPU-s |\n|---:|---|---:|---:|---:|\n")
    for r in rows:
        table.write(
            f"| {r['P']:,} | {r['path']}{' (' + r['note'] + ')' if r['note'] else ''} | {r['N']} | "
            f"{r['steps_per_s']:,.0f} | {r['steps_per_cpu_s']:,.0f} |\n"
        )
    command = command_line("env_throughput", argv)
    note = f"{machine}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after."
    title = f"Env steps per second (d = {DIM}, F = {FEAT}, S = {STEPS}, `paper` reward unless marked)"
    ratios = (
        "#### The native batched env (its fastest NumPy Kendall kernel) against the others, env-steps/s\n\n"
        "| P | kernel | vs SyncVectorEnv | vs single env | share of the Kendall-free env's speed | "
        "share of distances + rank alone |\n|---:|---|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n"
    )
    md = f"#### {title}\n\n`{command}` on {note}\n\n{table.getvalue()}\n{ratios}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "env_throughput.md", md)
    write_csv(out / "env_throughput.csv", rows)
    write_readme(out, title, command, f"{table.getvalue()}\n{ratios}", seconds=time.perf_counter() - t_start,
                 notes=note, files=["env_throughput.md", "env_throughput.csv"])
    print()
    print(md)
    print(f"written: {out / 'README.md'}, {out / 'env_throughput.md'}, {out / 'env_throughput.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
