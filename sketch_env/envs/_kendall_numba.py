"""Compiled kernels of :mod:`sketch_env.envs.kendall` (imported only when numba is installed)."""

from __future__ import annotations

import numba
import numpy as np


def _discordant_rows(order_a, order_b, out):
    """For each row: the inversions of ``s_k = pos_b[order_a[k]]`` counted bit by bit.

    A pair ``k < l`` with ``s_k > s_l`` first differs at some bit ``b``, where ``s_k`` has 1 and ``s_l`` 0 and
    the higher bits agree. So for each bit ``b`` one pass in position order counts, per group of equal
    ``s >> (b + 1)``, the ones seen so far and adds them at each zero: ``ceil(log2 P)`` branch-free passes.
    """
    n, p = order_a.shape
    levels = 0
    while (1 << levels) < p:
        levels += 1
    for e in numba.prange(n):
        pos = np.empty(p, np.int32)
        s = np.empty(p, np.int32)
        ones = np.empty((p >> 1) + 1, np.int32)
        for k in range(p):
            pos[order_b[e, k]] = k
        for k in range(p):
            s[k] = pos[order_a[e, k]]
        inv = 0
        for b in range(levels):
            ones[: (p >> (b + 1)) + 1] = 0
            for k in range(p):
                v = s[k]
                g = v >> (b + 1)
                bit = (v >> b) & 1
                inv += ones[g] * (1 - bit)
                ones[g] += bit
        out[e] = inv


discordant_serial = numba.njit(cache=True, nogil=True)(_discordant_rows)
discordant_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_discordant_rows)
