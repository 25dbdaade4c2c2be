"""Compiled kernels of :mod:`sketch_env.envs.kendall` (imported only when numba is installed).

Indices and counters are unsigned where they can be: numba checks signed indices for wrap-around on every
access, and the counting loop runs measurably faster without that branch.
"""

from __future__ import annotations

import numba
import numpy as np


def _count_inversions_row(s, ones, levels):
    """``#{k < l : s_k > s_l}`` for one permutation ``s`` of ``0..P-1``, counted bit by bit.

    A pair ``k < l`` with ``s_k > s_l`` first differs at some bit ``b``, where ``s_k`` has 1 and ``s_l`` 0 and
    the higher bits agree. So for each bit ``b`` one pass in position order counts, per group of equal
    ``s >> (b + 1)``, the ones seen so far and adds them at each zero: ``ceil(log2 P)`` branch-free passes.
    ``ones`` is scratch of at least ``P // 2 + 1`` entries.
    """
    p = s.shape[0]
    inv = np.uint64(0)
    one = np.uint32(1)
    for b in range(levels):
        ones[: (p >> (b + 1)) + 1] = 0
        bb = np.uint32(b)
        for k in range(p):
            v = np.uint32(s[k])
            g = np.uintp(v >> (bb + one))
            bit = (v >> bb) & one
            inv += np.uint64(ones[g] * (one - bit))
            ones[g] += bit
    return inv


_count_inversions_row_jit = numba.njit(inline="always", nogil=True)(_count_inversions_row)


def _levels(p):
    levels = 0
    while (1 << levels) < p:
        levels += 1
    return levels


_levels_jit = numba.njit(inline="always")(_levels)


def _discordant_rows(order_a, order_b, out, chunks):
    """For each row: the inversions of ``s_k = pos_b[order_a[k]]`` (the discordant pairs of the rankings).
    Rows in ``chunks`` contiguous chunks with their own scratch, as in :func:`_rank_rows`."""
    n, p = order_a.shape
    levels = _levels_jit(p)
    chunks = max(1, min(n, chunks))
    for c in numba.prange(chunks):
        pos = np.empty(p, np.uint32)
        s = np.empty(p, np.uint32)
        ones = np.empty((p >> 1) + 1, np.uint32)
        for e in range(c * n // chunks, (c + 1) * n // chunks):
            for k in range(p):
                pos[np.uintp(order_b[e, k])] = k
            for k in range(p):
                s[k] = pos[np.uintp(order_a[e, k])]
            out[e] = _count_inversions_row_jit(s, ones, levels)


def _rank_rows(bits, prev_order, count, order_out, disc_out, chunks):
    """One env step's ranking work, per row ``e`` (one env):

    1. the ranking ``L``: photo indices by ``(d, index)``, by a stable LSD radix sort (4 passes of 8 bits,
       skipping a digit every key shares) of the sign-masked float32 bits of the distances, which order as
       the non-negative floats do; the input is in index order, so stability breaks ties by index. Written
       to ``order_out[e]``.
    2. when ``count[e]``: the discordant pairs between ``prev_order[e]`` and ``L`` (the inversions of the
       positions in ``L`` of the photos in ``prev_order[e]``'s order), to ``disc_out[e]``; else 0.

    ``prev_order`` and ``order_out`` may be the same array: a row is read before it is written. Rows are
    split into ``chunks`` contiguous chunks (one per thread), each with its own scratch arrays (allocated
    once per chunk: allocating per row inside the parallel loop cost more than the second thread gained).
    """
    n, p = bits.shape
    levels = _levels_jit(p)
    mask = np.uint32(0x7FFFFFFF)
    chunks = max(1, min(n, chunks))
    for c in numba.prange(chunks):
        hist = np.empty((4, 256), np.uint32)
        key = np.empty(p, np.uint32)
        a = np.empty(p, np.uint32)
        b = np.empty(p, np.uint32)
        ones = np.empty((p >> 1) + 1, np.uint32)
        for e in range(c * n // chunks, (c + 1) * n // chunks):
            hist[:] = 0
            for k in range(p):
                v = bits[e, k] & mask
                key[k] = v
                hist[0, v & 255] += 1
                hist[1, (v >> 8) & 255] += 1
                hist[2, (v >> 16) & 255] += 1
                hist[3, v >> 24] += 1
            idx, tmp = a, b
            for k in range(p):
                idx[k] = k
            for d in range(4):
                shift = np.uint32(8 * d)
                if p == 0 or hist[d, (key[0] >> shift) & 255] == p:  # every key has this digit: order unchanged
                    continue
                total = np.uint32(0)
                for j in range(256):
                    cnt = hist[d, j]
                    hist[d, j] = total
                    total += cnt
                for k in range(p):
                    i = idx[k]
                    j = (key[i] >> shift) & 255
                    tmp[hist[d, j]] = i
                    hist[d, j] += 1
                idx, tmp = tmp, idx
            if count[e]:
                pos = tmp  # free scratch now
                for k in range(p):
                    pos[idx[k]] = k
                s = key  # free scratch now
                for k in range(p):
                    s[k] = pos[np.uintp(prev_order[e, k])]
                disc_out[e] = _count_inversions_row_jit(s, ones, levels)
            else:
                disc_out[e] = 0
            for k in range(p):
                order_out[e, k] = idx[k]


# One compiled function per variant, each with its own name: numba's on-disk cache is keyed by the Python
# function, so two dispatchers of one function (serial and parallel=True) would load each other's code.
_discordant_rows_inline = numba.njit(inline="always", nogil=True)(_discordant_rows)
_rank_rows_inline = numba.njit(inline="always", nogil=True)(_rank_rows)


@numba.njit(cache=True, nogil=True)
def discordant_serial(order_a, order_b, out, chunks):
    _discordant_rows_inline(order_a, order_b, out, chunks)


@numba.njit(cache=True, nogil=True, parallel=True)
def discordant_parallel(order_a, order_b, out, chunks):
    _discordant_rows_inline(order_a, order_b, out, chunks)


@numba.njit(cache=True, nogil=True)
def rank_serial(bits, prev_order, count, order_out, disc_out, chunks):
    _rank_rows_inline(bits, prev_order, count, order_out, disc_out, chunks)


@numba.njit(cache=True, nogil=True, parallel=True)
def rank_parallel(bits, prev_order, count, order_out, disc_out, chunks):
    _rank_rows_inline(bits, prev_order, count, order_out, disc_out, chunks)
