"""Kendall-tau distance between whole gallery rankings: exact, batched, O(P log P).

A **ranking** ``L`` of a gallery of ``P`` photos lists the photo indices by increasing distance to the
query, **ties broken by index**: photo ``i`` precedes photo ``j`` iff ``(d_i, i) < (d_j, j)``. That is a
strict total order, so every pair of photos is ordered in every ranking, and two photos at the same
distance are ordered the same way in both rankings (their pair is concordant).

The normalised Kendall-tau distance (the paper's ``tau``) is the fraction of discordant pairs::

    tau(L, L') = #{ {i, j} : i before j in L and j before i in L' } / (P (P - 1) / 2)     in [0, 1]

0 for the same ranking, 1 for the reversed one; with no tied distances it equals
``(1 - scipy.stats.kendalltau(d, d').statistic) / 2``. It is 0 when ``P < 2``.

Counting: with ``s_k`` = the position in ``L'`` of the ``k``-th photo of ``L``, the discordant pairs are the
inversions of ``s``, ``#{k < l : s_k > s_l}``. Kernels (all give the same integers; tests check them
against each other, against a brute-force O(P^2) count with ties and against SciPy):

* ``"numba"`` (the optional ``[fast]`` extra): per row, ``ceil(log2 P)`` branch-free passes, one per bit
  ``b``: a pair ``k < l`` with ``s_k > s_l`` first differs at a bit where ``s_k`` has 1 and ``s_l`` 0 (higher
  bits equal), so a pass counts, per group of equal ``s >> (b + 1)``, the ones seen before each zero;
  ``O(P log P)``. ``"numba-parallel"`` spreads the rows over numba's threads. The env's step uses
  :func:`ranking_and_discordant`, which with numba also computes the ranking itself, by a stable radix
  sort of the distances' bits in the same compiled loop (faster than NumPy's sort of 64-bit keys).
* ``"numpy"`` (always available): bottom-up merge levels over all rows at once. Rows are padded to a power
  of two with increasing values above all others (no new inversions); blocks of 8 are counted by direct
  comparison, then at each level of width ``w`` every row of width ``2w`` holds two sorted runs ``A`` and
  ``B``; sorting the row with each value tagged by its run gives, by a cumulative count of ``A``-tags, the
  number of smaller ``A`` values before each ``B`` value, so the level contributes
  ``w * w - sum_b #{a in A : a < b}`` inversions per row, and the sorted rows are the next level's runs.
* torch (:func:`discordant_pairs_torch`): the same merge levels with ``torch.sort``, on any device.

Rankings are computed from float32 distances (:func:`ranking_order`) by sorting the 64-bit keys
``bits(d) << 32 | index``: the bit pattern of a non-negative float32 orders as the float does, so one
(unstable, SIMD) integer sort gives the tie-broken order.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = [
    "KERNELS",
    "resolve_kernel",
    "numba_available",
    "ranking_order",
    "ranking_positions",
    "count_inversions",
    "discordant_pairs",
    "ranking_and_discordant",
    "kendall_tau_distance",
    "ranking_order_torch",
    "count_inversions_torch",
    "discordant_pairs_torch",
]

KERNELS = ("auto", "numba", "numba-parallel", "numpy")

_LOW32 = np.uint64(0xFFFFFFFF)
_BASE = 8  # block width counted by direct comparison before the merge levels


@functools.cache
def numba_available() -> bool:
    """Whether numba (the ``[fast]`` extra) can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _check_distances(distances: np.ndarray) -> np.ndarray:
    d = np.asarray(distances, dtype=np.float32)
    if d.ndim != 2:
        raise ArgumentError(f"distances must have shape (N, P), got {d.shape}")
    if d.shape[1] >= 2**32:
        raise ArgumentError(f"galleries of at most 2**32 photos, got {d.shape[1]}")
    return d


def ranking_order(distances: np.ndarray) -> np.ndarray:
    """The rankings ``L`` of each row of non-negative float32 ``distances (N, P)``: int32 ``(N, P)``, the
    photo indices sorted by ``(d, index)``."""
    d = _check_distances(distances)
    n, p = d.shape
    keys = np.empty((n, p), dtype=np.uint64)
    halves = keys.view(np.uint32).reshape(n, p, 2)  # little-endian: [..., 0] low word, [..., 1] high word
    if sys.byteorder != "little":  # pragma: no cover
        halves = halves[..., ::-1]
    # high word: the distance's bits with the sign bit cleared (maps -0.0 to 0.0; distances are never
    # negative); low word: the photo index
    np.bitwise_and(d.view(np.uint32), np.uint32(0x7FFFFFFF), out=halves[..., 1])
    halves[..., 0] = np.arange(p, dtype=np.uint32)
    keys.sort(axis=-1)
    return np.ascontiguousarray(halves[..., 0]).view(np.int32)


def ranking_positions(order: np.ndarray) -> np.ndarray:
    """The inverse permutation of each row of ``order``: ``pos[order[k]] = k`` (int32)."""
    order = np.asarray(order)
    n, p = order.shape
    pos = np.empty((n, p), dtype=np.int32)
    np.put_along_axis(
        pos, order.astype(np.intp, copy=False), np.broadcast_to(np.arange(p, dtype=np.int32), (n, p)), axis=1
    )
    return pos


def count_inversions(s: np.ndarray) -> np.ndarray:
    """``#{k < l : s_k > s_l}`` for each row of ``s (N, P)``, a permutation of ``0..P-1`` per row: int64
    ``(N,)``. Pure NumPy merge levels (module docstring)."""
    s = np.asarray(s)
    if s.ndim != 2:
        raise ArgumentError(f"s must have shape (N, P), got {s.shape}")
    n, p = s.shape
    total = np.zeros(n, dtype=np.int64)
    if p < 2:
        return total
    padded = 1 << (p - 1).bit_length()
    x = np.empty((n, padded), dtype=np.int32)
    x[:, :p] = s
    x[:, p:] = np.arange(p, padded, dtype=np.int32)
    base = min(_BASE, padded)
    blocks = x.reshape(n, padded // base, base)
    left, right = np.triu_indices(base, 1)
    total += np.count_nonzero((blocks[:, :, left] > blocks[:, :, right]).reshape(n, -1), axis=1)
    runs = np.sort(blocks, axis=-1)
    w = base
    while w < padded:
        keys = runs.reshape(n, padded // (2 * w), 2 * w) << 1  # value * 2 + run tag (0: A, 1: B)
        keys[:, :, w:] |= 1
        keys.sort(axis=-1)
        is_a = (keys & 1) == 0
        a_before = np.cumsum(is_a, axis=-1, dtype=np.int32)
        smaller_a = a_before.reshape(n, -1).sum(axis=1, where=~is_a.reshape(n, -1), dtype=np.int64)
        total += (padded // (2 * w)) * w * w - smaller_a
        runs = keys >> 1
        w *= 2
    return total


# ------------------------------------------------------------------------------------------ numba


@functools.cache
def _launch_numba_threads() -> None:
    """Start numba's thread pool (once) without changing torch's intra-op thread count.

    numba's OpenMP threading layer shares the process's libgomp with torch, and launching its pool after
    torch has run a parallel region sets the OpenMP thread count to numba's (``NUMBA_NUM_THREADS``, the
    core count): ``torch.get_num_threads()`` went from 1 to 2 here. That silently undid a
    ``torch.set_num_threads(1)`` (the stroke-order sketchers' one-thread workers then ran every small
    convolution on two threads beside another busy process: ~60 ms per training step instead of ~8 ms), so
    torch's count is put back once the pool is up; later parallel calls leave it alone."""
    import numba

    torch = sys.modules.get("torch")  # only if torch is in use: it is not a dependency of this module
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()  # launches the pool
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


def _numba_call(kernel: str, serial: str, parallel: str, *args: Any) -> None:
    """Run ``kendall_kernels.<serial>`` (``"numba"``) or ``.<parallel>`` (``"numba-parallel"``, one chunk of
    rows per numba thread) on ``args``."""
    from sketch_env.envs import kendall_kernels

    if kernel == "numba-parallel":
        import numba

        _launch_numba_threads()
        getattr(kendall_kernels, parallel)(*args, numba.get_num_threads())
    else:
        getattr(kendall_kernels, serial)(*args, 1)


def resolve_kernel(kernel: str) -> str:
    """The kernel ``kernel`` names (``"auto"``: ``"numba-parallel"`` when numba is installed and may use more
    than one thread, ``"numba"`` when it may use one, else ``"numpy"``); a clear error if unknown or if it
    needs numba and numba is missing."""
    if kernel not in KERNELS:
        raise ArgumentError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "auto":
        if not numba_available():
            return "numpy"
        import numba

        return "numba-parallel" if numba.config.NUMBA_NUM_THREADS > 1 else "numba"
    if kernel.startswith("numba") and not numba_available():
        raise ImportError(f"kernel={kernel!r} needs numba: pip install 'sketch-env[fast]' (or numba)")
    return kernel


def discordant_pairs(order_a: np.ndarray, order_b: np.ndarray, kernel: str = "auto") -> np.ndarray:
    """Discordant pairs between the rankings ``order_a`` and ``order_b`` (rows of photo indices, as from
    :func:`ranking_order`), int64 ``(N,)``. ``kernel``: ``"auto"`` (:func:`resolve_kernel`), ``"numba"``,
    ``"numba-parallel"`` or ``"numpy"``."""
    order_a = np.asarray(order_a)
    order_b = np.asarray(order_b)
    if order_a.shape != order_b.shape or order_a.ndim != 2:
        raise ArgumentError(f"orders must have the same shape (N, P), got {order_a.shape} and {order_b.shape}")
    kernel = resolve_kernel(kernel)
    if kernel == "numpy":
        s = np.take_along_axis(ranking_positions(order_b), order_a.astype(np.intp, copy=False), axis=1)
        return count_inversions(s)
    out = np.empty(order_a.shape[0], dtype=np.int64)
    _numba_call(kernel, "discordant_serial", "discordant_parallel",
                np.ascontiguousarray(order_a, dtype=np.int32), np.ascontiguousarray(order_b, dtype=np.int32), out)
    return out


def ranking_and_discordant(
    distances: np.ndarray, prev_order: np.ndarray, count: np.ndarray, kernel: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """One step's rankings and Kendall counts: ``(order, disc)`` with ``order = ranking_order(distances)``
    (int32 ``(N, P)``) and ``disc[i] = discordant_pairs(prev_order[i], order[i])`` where ``count[i]``, else 0
    (int64 ``(N,)``). With a numba kernel both are computed row by row in one compiled loop (a stable radix
    sort of the distance bits, then the inversion count), over numba's threads for ``"numba-parallel"``."""
    d = _check_distances(distances)
    count = np.asarray(count, dtype=bool)
    prev = np.asarray(prev_order)
    if prev.shape != d.shape or count.shape != d.shape[:1]:
        raise ArgumentError(f"prev_order {prev.shape} and count {count.shape} do not match distances {d.shape}")
    kernel = resolve_kernel(kernel)
    if kernel == "numpy":
        order = ranking_order(d)
        disc = np.zeros(d.shape[0], dtype=np.int64)
        if count.any():
            disc[count] = discordant_pairs(prev[count], order[count], "numpy")
        return order, disc
    order = np.empty(d.shape, dtype=np.int32)
    disc = np.empty(d.shape[0], dtype=np.int64)
    _numba_call(kernel, "rank_serial", "rank_parallel", np.ascontiguousarray(d).view(np.uint32),
                np.ascontiguousarray(prev, dtype=np.int32), count, order, disc)
    return order, disc


def kendall_tau_distance(d_a: np.ndarray, d_b: np.ndarray, kernel: str = "auto") -> np.ndarray | float:
    """``tau(L_a, L_b)``: the normalised Kendall-tau distance between the rankings by the distances
    ``d_a`` and ``d_b`` (``(P,)`` or ``(N, P)``, ties broken by index; module docstring). A float for 1-d
    input, else float64 ``(N,)``."""
    a = np.asarray(d_a)
    b = np.asarray(d_b)
    if a.shape != b.shape:
        raise ArgumentError(f"distance arrays differ in shape: {a.shape} and {b.shape}")
    one = a.ndim == 1
    a2, b2 = (a[None], b[None]) if one else (a, b)
    p = a2.shape[1]
    pairs = p * (p - 1) // 2
    count = discordant_pairs(ranking_order(a2), ranking_order(b2), kernel)
    tau = count / pairs if pairs else np.zeros(len(count))
    return float(tau[0]) if one else tau


# ------------------------------------------------------------------------------------------ torch


def ranking_order_torch(distances: Any) -> Any:
    """:func:`ranking_order` for a float32 torch tensor ``(N, P)`` on any device: int64 ``(N, P)``."""
    import torch

    n, p = distances.shape
    bits = distances.contiguous().view(torch.int32) & 0x7FFFFFFF
    keys = (bits.to(torch.int64) << 32) | torch.arange(p, device=distances.device, dtype=torch.int64)
    keys = torch.sort(keys, dim=-1).values
    return keys & 0xFFFFFFFF


def count_inversions_torch(s: Any) -> Any:
    """:func:`count_inversions` for an integer torch tensor ``(N, P)``: int64 ``(N,)`` on its device."""
    import torch

    n, p = s.shape
    total = torch.zeros(n, dtype=torch.int64, device=s.device)
    if p < 2:
        return total
    padded = 1 << (p - 1).bit_length()
    x = torch.empty((n, padded), dtype=torch.int64, device=s.device)
    x[:, :p] = s
    x[:, p:] = torch.arange(p, padded, device=s.device)
    base = min(_BASE, padded)
    blocks = x.view(n, padded // base, base)
    left, right = torch.triu_indices(base, base, 1, device=s.device)
    total += (blocks[:, :, left] > blocks[:, :, right]).reshape(n, -1).sum(1)
    runs = torch.sort(blocks, dim=-1).values
    w = base
    while w < padded:
        keys = runs.reshape(n, padded // (2 * w), 2 * w) << 1
        keys[:, :, w:] |= 1
        keys = torch.sort(keys, dim=-1).values
        is_b = keys & 1
        a_before = torch.cumsum(1 - is_b, dim=-1)
        total += (padded // (2 * w)) * w * w - (a_before * is_b).reshape(n, -1).sum(1)
        runs = keys >> 1
        w *= 2
    return total


def discordant_pairs_torch(order_a: Any, order_b: Any) -> Any:
    """:func:`discordant_pairs` for int64 torch tensors ``(N, P)``: int64 ``(N,)`` on their device."""
    import torch

    n, p = order_a.shape
    pos = torch.empty_like(order_b)
    pos.scatter_(1, order_b, torch.arange(p, device=order_b.device, dtype=order_b.dtype).expand(n, p))
    return count_inversions_torch(torch.gather(pos, 1, order_a))
