"""Retrieval metrics of on-the-fly sketch-based image retrieval ("Sketch Less for More", CVPR 2020).

A test sketch is drawn in S steps; after each step its partial sketch is embedded and the whole gallery
of ``N`` photos ranked by Euclidean distance to the query. From the resulting ``(n, S)`` rank array:

* ``rank_t = #{j : d_j <= d_true}`` (1-based; ties count against the query);
* **m@A**: mean over sketches of the mean over steps of the ranking percentile ``(N - rank_t) / (N - 1)``;
* **m@B**: the same with ``1 / rank_t``;
* **A@q**: fraction of sketches whose *complete* sketch (last step) has ``rank <= q``.

The functions return fractions in [0, 1]; :func:`summarise` multiplies by 100, as papers report them.
This module depends on NumPy only, so the environment and the embedding backends can both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "euclidean_distance",
    "rank",
    "ranks_from_embeddings",
    "ranking_percentile",
    "m_at_a",
    "m_at_b",
    "acc_at_q",
    "retrieval_curves",
    "summarise",
]


def euclidean_distance(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Pairwise ``||q_i - g_j||`` as ``(B, P)`` float32, via ``|q|^2 + |g|^2 - 2 q.g`` (clipped at 0)."""
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    sq = (q * q).sum(-1)[:, None] + (g * g).sum(-1)[None, :] - 2.0 * q @ g.T
    return np.sqrt(np.maximum(sq, 0.0))


def rank(distances: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """Rank of the true photo in each row: ``rank_i = #{j : d_ij <= d_i,true}``, int64 ``(B,)``.

    1-based (the true photo counts itself), and every other photo at the same distance counts against
    the query, so a query tied with a wrong photo never gets credit for the tie.
    """
    d = np.asarray(distances)
    if d.ndim != 2:
        raise ValueError(f"distances must have shape (B, P), got {d.shape}")
    idx = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if len(idx) != len(d):
        raise ValueError(f"{len(d)} distance rows but {len(idx)} true indices")
    if len(idx) and (idx.min() < 0 or idx.max() >= d.shape[1]):
        raise ValueError(f"true_index must lie in [0, {d.shape[1]}), got range [{idx.min()}, {idx.max()}]")
    d_true = d[np.arange(len(d)), idx]
    return (d <= d_true[:, None]).sum(axis=1).astype(np.int64)


def ranks_from_embeddings(
    queries: np.ndarray, gallery: np.ndarray, true_index: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """:func:`rank` of each query against ``gallery`` by :func:`euclidean_distance`, int64 ``(B,)``.

    Distances are computed for ``chunk`` queries at a time, so memory stays ``O(chunk * P)``;
    ``queries`` may be a memory map.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    idx = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if len(idx) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(idx)} true indices")
    gallery = np.asarray(gallery, dtype=np.float32)
    out = np.empty(len(idx), dtype=np.int64)
    for lo in range(0, len(idx), chunk):
        hi = min(lo + chunk, len(idx))
        out[lo:hi] = rank(euclidean_distance(np.asarray(queries[lo:hi]), gallery), idx[lo:hi])
    return out


def ranking_percentile(rank: np.ndarray | int, gallery_size: int) -> np.ndarray | float:
    """``(N - rank) / (N - 1)``: 1 for rank 1, 0 for the last of N; 1 when ``N = 1``.

    The paper's exact formula is unverified (see the paper notes); this is the usual convention.
    """
    n = int(gallery_size)
    if n < 1:
        raise ValueError(f"gallery_size must be >= 1, got {gallery_size}")
    r = np.asarray(rank, dtype=np.float64)
    out = np.ones_like(r) if n == 1 else (n - r) / (n - 1)
    return float(out) if out.ndim == 0 else out


def _check_ranks(ranks: np.ndarray, gallery_size: int | None = None) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks must have shape (n, S), got {r.shape}")
    if r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"ranks of shape {r.shape}: no sketches or no steps to average over")
    if r.min() < 1 or (gallery_size is not None and r.max() > gallery_size):
        raise ValueError(f"ranks must lie in [1, {gallery_size or 'N'}], got range [{r.min()}, {r.max()}]")
    return r


def m_at_a(ranks: np.ndarray, gallery_size: int) -> float:
    """m@A: ``mean_i mean_t (N - rank_it) / (N - 1)`` over ``ranks`` ``(n, S)``.

    A fraction in [0, 1]; papers report it x100 (as :func:`summarise` does).
    """
    r = _check_ranks(ranks, gallery_size)
    return float(np.mean(np.mean(ranking_percentile(r, gallery_size), axis=1)))


def m_at_b(ranks: np.ndarray) -> float:
    """m@B: ``mean_i mean_t 1 / rank_it`` over ``ranks`` ``(n, S)``.

    A fraction in (0, 1]; papers report it x100 (as :func:`summarise` does).
    """
    r = _check_ranks(ranks)
    return float(np.mean(np.mean(1.0 / r, axis=1)))


def acc_at_q(complete_ranks: np.ndarray, q: int) -> float:
    """A@q: ``#{i : rank_i <= q} / n`` over the ranks of the complete sketches ``(n,)``.

    A fraction in [0, 1]; papers report it x100 (as :func:`summarise` does).
    """
    r = np.asarray(complete_ranks).reshape(-1)
    if len(r) == 0:
        raise ValueError("acc_at_q needs at least one rank")
    return float(np.mean(r <= q))


def retrieval_curves(ranks: np.ndarray, gallery_size: int) -> dict[str, np.ndarray]:
    """Per-step means over sketches: the curves of the paper's plots.

    Returns ``percent`` = ``100 (t + 1) / S`` (share of the sketch drawn), ``ranking_percentile`` =
    ``mean_i (N - rank_it) / (N - 1)`` and ``inverse_rank`` = ``mean_i 1 / rank_it``, each ``(S,)`` float64
    (fractions in [0, 1] for the last two).
    """
    r = _check_ranks(ranks, gallery_size)
    steps = r.shape[1]
    return {
        "percent": 100.0 * np.arange(1, steps + 1) / steps,
        "ranking_percentile": np.asarray(ranking_percentile(r, gallery_size)).mean(axis=0),
        "inverse_rank": (1.0 / r).mean(axis=0),
    }


def summarise(ranks: np.ndarray, gallery_size: int, qs: Sequence[int] = (1, 5, 10)) -> dict[str, float | int]:
    """The paper's table row from ranks ``(n, S)``, **x100**: ``A@q`` for each q (on the last step, the
    complete sketch), ``m@A`` and ``m@B``; plus ``gallery_size`` (N), ``sketches`` (n) and ``steps`` (S).
    """
    r = _check_ranks(ranks, gallery_size)
    out: dict[str, float | int] = {f"A@{q}": 100.0 * acc_at_q(r[:, -1], q) for q in qs}
    out["m@A"] = 100.0 * m_at_a(r, gallery_size)
    out["m@B"] = 100.0 * m_at_b(r)
    out["gallery_size"] = int(gallery_size)
    out["sketches"] = int(r.shape[0])
    out["steps"] = int(r.shape[1])
    return out
