"""What the benchmarks share: the 95 % interval of a multi-seed figure, running a grid of jobs, thread
settings for the processes they start."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["ROOT", "mean_ci", "thread_env", "run_jobs"]

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


def thread_env(threads: int) -> dict[str, str]:
    """The environment for a child process that may use ``threads`` cores: torch's OpenMP, BLAS and numba
    pools sized alike (left to themselves, each takes every core and they spin against each other)."""
    n = str(int(threads))
    return dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, NUMBA_NUM_THREADS=n)


def run_jobs(fn: Callable[..., T], items: Iterable[Any], jobs: int = 1) -> list[T]:
    """``[fn(item) for item in items]``, ``jobs`` at a time (threads that start and wait on child
    processes), in the items' order."""
    items = list(items)
    if jobs <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))
