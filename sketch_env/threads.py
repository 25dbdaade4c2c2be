"""Thread settings that degrade gracefully on a busy machine.

torch (through OpenMP) and numba run parallel regions whose threads, by default, spin while they wait for
each other. On an idle machine that saves a few microseconds; beside another CPU-bound process one thread
of a region is descheduled and the others spin for its whole time slice, so a run slows down many times
over instead of about twice. :func:`configure_threads` asks OpenMP to wait passively (``OMP_WAIT_POLICY``,
read once when the OpenMP runtime starts, so it is set before torch is imported; a value already in the
environment wins) and sizes torch's and numba's pools to the cores this process may use.
``benchmarks/machine.py`` measures the effect (a training step alone and beside a busy process).

The ``sketch-env`` program calls it first thing; library users may call it before importing torch.
"""

from __future__ import annotations

import os
import sys

__all__ = ["configure_threads", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Passive OpenMP waiting, and ``threads`` (default: :func:`usable_cores`) threads for torch and numba,
    unless the environment already sets them (``OMP_NUM_THREADS``, ``NUMBA_NUM_THREADS``). Returns the
    torch thread count. Call it before torch is imported for the wait policy to take effect."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")  # the same for Intel's OpenMP runtime
    n = int(os.environ.get("OMP_NUM_THREADS") or threads or usable_cores())
    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    torch = sys.modules.get("torch")
    if torch is not None and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n)
    return n
