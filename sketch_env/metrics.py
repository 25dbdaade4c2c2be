"""Retrieval metrics of on-the-fly sketch-based image retrieval ("Sketch Less for More", CVPR 2020).

A test sketch is drawn in S steps; after each step its partial sketch is embedded and the whole gallery
of ``N`` photos ranked by Euclidean distance to the query. From the resulting ``(n, S)`` rank array:

* ``rank_t = #{j : d_j <= d_true}`` (1-based; ties count against the query);
* **m@A**: mean over sketches of the mean over steps of the ranking percentile ``(N - rank_t) / (N - 1)``;
* **m@B**: the same with ``1 / rank_t``;
* **A@q**: fraction of sketches whose *complete* sketch (last step) has ``rank <= q``.

The functions return fractions in [0, 1]; :func:`summarise` multiplies by 100, as papers report them.
This module depends on NumPy only (torch tensors are handled where noted, without importing torch), so
the environment and the embedding backends can both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = [
    "l2_normalise",
    "euclidean_distance",
    "prepare_gallery",
    "prepare_queries",
    "rank",
    "ranks_from_embeddings",
    "ranking_percentile",
    "m_at_a",
    "m_at_b",
    "acc_at_q",
    "retrieval_curves",
    "summarise",
    "top_k_relevance",
    "precision_at_k",
    "ap_at_k",
    "ap_at_k_zs_sbir",
    "category_retrieval_metrics",
]


def l2_normalise(x):
    """``x / ||x||`` per row (the last axis), float32, for NumPy arrays and torch tensors alike.

    The squared norm is summed in float64, and two cases are exact: a zero row stays zero (the retrieval
    env ranks it as equidistant from every photo), and a row already of unit norm to float32 precision
    (``| ||x||^2 - 1 | <= 1e-6``) is returned unchanged, so a backend's own query (already normalised) is
    used bit for bit and a zero residual reproduces the frozen model exactly.
    """
    if type(x).__module__.startswith("torch"):
        import torch

        x = x.float()
        x64 = x.double()
        sq = (x64 * x64).sum(-1, keepdim=True)
        scale = (sq > 0) & ((sq - 1.0).abs() > 1e-6)
        return torch.where(scale, (x64 / sq.clamp(min=1e-300).sqrt()).float(), x)
    x = np.asarray(x, dtype=np.float32)
    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(-1, keepdims=True)
    scale = (sq > 0) & (np.abs(sq - 1.0) > 1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale, x64 / np.sqrt(np.where(scale, sq, 1.0)), x64).astype(np.float32)


def prepare_gallery(gallery: np.ndarray) -> np.ndarray:
    """The gallery in the form :func:`euclidean_distance` multiplies with: float64 ``(P, d + 2)`` rows
    ``[-2 g, 1, |g|^2]`` (``g`` rounded to float32 first). Compute it once when ranking many batches."""
    g = np.asarray(gallery, dtype=np.float32).astype(np.float64)
    if g.ndim != 2:
        raise ArgumentError(f"gallery must have shape (P, d), got {g.shape}")
    out = np.empty((g.shape[0], g.shape[1] + 2), dtype=np.float64)
    np.multiply(g, -2.0, out=out[:, :-2])
    out[:, -2] = 1.0
    out[:, -1] = (g * g).sum(-1)
    return out


def prepare_queries(queries: np.ndarray) -> np.ndarray:
    """The queries in the form :func:`euclidean_distance` multiplies with: float64 ``(B, d + 2)`` rows
    ``[q, |q|^2, 1]`` (``q`` rounded to float32 first)."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2:
        raise ArgumentError(f"queries must have shape (B, d), got {q.shape}")
    q64 = q.astype(np.float64)
    out = np.empty((q.shape[0], q.shape[1] + 2), dtype=np.float64)
    out[:, :-2] = q64
    out[:, -2] = (q64 * q64).sum(-1)
    out[:, -1] = 1.0
    return out


def euclidean_distance(queries: np.ndarray, gallery: np.ndarray, prepared: np.ndarray | None = None) -> np.ndarray:
    """Pairwise ``||q_i - g_j||`` as ``(B, P)`` float32: ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))``.

    Inputs are rounded to float32; ``|q|^2 + |g|^2 - 2 q.g`` is then summed in float64 (one matrix product
    of ``[q, |q|^2, 1]`` with :func:`prepare_gallery`'s rows) and rounded to float32 once, before the clip
    at 0 and the square root. Summing in float64 makes a (query, photo) distance independent of the other
    queries in the batch: float32 matrix products are summed in an order that depends on the batch shape,
    so the same pair could differ in its last bit between a batch of 1 and a batch of 256 and ties between
    photos would break differently (the retrieval environment's single and batched versions rely on this;
    a float64 sum reorders to a different float32 result with probability about 1e-9 per entry).
    ``prepared`` (from :func:`prepare_gallery`) skips recomputing the gallery's rows.
    """
    q_rows = prepare_queries(queries)
    g_rows = prepare_gallery(gallery) if prepared is None else prepared
    if g_rows.shape[1] != q_rows.shape[1]:
        raise ArgumentError(f"queries have d={q_rows.shape[1] - 2} but the gallery has d={g_rows.shape[1] - 2}")
    sq = (q_rows @ g_rows.T).astype(np.float32)
    np.maximum(sq, 0.0, out=sq)
    return np.sqrt(sq, out=sq)


def rank(distances: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """Rank of the true photo in each row: ``rank_i = #{j : d_ij <= d_i,true}``, int64 ``(B,)``.

    1-based (the true photo counts itself), and every other photo at the same distance counts against
    the query, so a query tied with a wrong photo never gets credit for the tie.
    """
    d = np.asarray(distances)
    if d.ndim != 2:
        raise ArgumentError(f"distances must have shape (B, P), got {d.shape}")
    idx = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if len(idx) != len(d):
        raise ArgumentError(f"{len(d)} distance rows but {len(idx)} true indices")
    if len(idx) and (idx.min() < 0 or idx.max() >= d.shape[1]):
        raise ArgumentError(f"true_index must lie in [0, {d.shape[1]}), got range [{idx.min()}, {idx.max()}]")
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
        raise ArgumentError(f"chunk must be >= 1, got {chunk}")
    idx = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if len(idx) != len(queries):
        raise ArgumentError(f"{len(queries)} queries but {len(idx)} true indices")
    prepared = prepare_gallery(gallery)
    out = np.empty(len(idx), dtype=np.int64)
    for lo in range(0, len(idx), chunk):
        hi = min(lo + chunk, len(idx))
        out[lo:hi] = rank(euclidean_distance(np.asarray(queries[lo:hi]), gallery, prepared), idx[lo:hi])
    return out


def ranking_percentile(rank: np.ndarray | int, gallery_size: int) -> np.ndarray | float:
    """``(N - rank) / (N - 1)``: 1 for rank 1, 0 for the last of N; 1 when ``N = 1``.

    The paper's exact formula is unverified (see the paper notes); this is the usual convention.
    """
    n = int(gallery_size)
    if n < 1:
        raise ArgumentError(f"gallery_size must be >= 1, got {gallery_size}")
    r = np.asarray(rank, dtype=np.float64)
    out = np.ones_like(r) if n == 1 else (n - r) / (n - 1)
    return float(out) if out.ndim == 0 else out


def _check_ranks(ranks: np.ndarray, gallery_size: int | None = None) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ArgumentError(f"ranks must have shape (n, S), got {r.shape}")
    if r.shape[0] == 0 or r.shape[1] == 0:
        raise ArgumentError(f"ranks of shape {r.shape}: no sketches or no steps to average over")
    if r.min() < 1 or (gallery_size is not None and r.max() > gallery_size):
        raise ArgumentError(f"ranks must lie in [1, {gallery_size or 'N'}], got range [{r.min()}, {r.max()}]")
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
        raise ArgumentError("acc_at_q needs at least one rank")
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


# ----------------------------------------------------------------------------- category retrieval (zero-shot SBIR)
#
# Zero-shot SBIR (Yelamarthi et al., ECCV 2018) scores a query by the categories of its top-k photos,
# not by the rank of one true photo: ``rel_j = 1`` when the j-th retrieved photo has the query's category.
#
# * **P@k** = ``(1 / k) sum_{j<=k} rel_j``;
# * the paper's **mAP@k** = mean over queries of ``(1 / k) sum_{j<=k} P@j rel_j`` (divided by k);
# * the standard **AP@k** = ``sum_{j<=k} P@j rel_j / sum_{j<=k} rel_j`` (divided by the relevant items
#   retrieved; 0 when there are none), averaged as **mAP@k**.


def top_k_relevance(distances: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, k: int) -> np.ndarray:
    """``rel``, bool ``(B, min(k, P))``: whether the j-th nearest photo shares the query's label.

    Photos are ordered by distance; among photos at the same distance the irrelevant ones come first, so
    a tie never gives a query credit (as in :func:`rank`).
    """
    d = np.asarray(distances)
    if d.ndim != 2:
        raise ArgumentError(f"distances must have shape (B, P), got {d.shape}")
    if k < 1:
        raise ArgumentError(f"k must be >= 1, got {k}")
    q = np.asarray(query_labels).reshape(-1)
    g = np.asarray(gallery_labels).reshape(-1)
    if len(q) != d.shape[0] or len(g) != d.shape[1]:
        raise ArgumentError(
            f"distances {d.shape} need {d.shape[0]} query labels and {d.shape[1]} gallery labels, "
            f"got {len(q)} and {len(g)}"
        )
    relevant = q[:, None] == g[None, :]
    # lexsort: the last key is the primary one (distance), then relevant (False before True)
    order = np.lexsort((relevant, d), axis=1)[:, :k]
    return np.take_along_axis(relevant, order, axis=1)


def precision_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """P@k of each query, float64 ``(B,)``: ``(1 / k) sum_{j<=k} rel_j`` (``relevance`` ``(B, >= k)``;
    a row shorter than ``k``, from a gallery of fewer than ``k`` photos, still divides by ``k``)."""
    rel = _check_relevance(relevance, k)
    return rel.sum(axis=1) / k


def _check_relevance(relevance: np.ndarray, k: int) -> np.ndarray:
    rel = np.asarray(relevance)
    if rel.ndim != 2:
        raise ArgumentError(f"relevance must have shape (B, k), got {rel.shape}")
    if k < 1:
        raise ArgumentError(f"k must be >= 1, got {k}")
    return rel[:, :k].astype(np.float64)


def _precision_sum(rel: np.ndarray) -> np.ndarray:
    """``sum_j P@j rel_j`` per row, with ``P@j = (1 / j) sum_{i<=j} rel_i``."""
    if rel.shape[1] == 0:
        return np.zeros(len(rel))
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    return (precision * rel).sum(axis=1)


def ap_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """Standard AP@k of each query, float64 ``(B,)``: ``sum_{j<=k} P@j rel_j / sum_{j<=k} rel_j``
    (0 for a query with no relevant photo in its top k)."""
    rel = _check_relevance(relevance, k)
    hits = rel.sum(axis=1)
    return np.where(hits > 0, _precision_sum(rel) / np.maximum(hits, 1.0), 0.0)


def ap_at_k_zs_sbir(relevance: np.ndarray, k: int) -> np.ndarray:
    """AP@k as the zero-shot SBIR paper (Yelamarthi et al., ECCV 2018) defines it, float64 ``(B,)``:
    ``(1 / k) sum_{j<=k} P@j rel_j``: divided by ``k``, not by the number of relevant photos retrieved,
    so it is at most P@k and a query whose category has fewer than ``k`` photos cannot reach 1."""
    rel = _check_relevance(relevance, k)
    return _precision_sum(rel) / k


def category_retrieval_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    k: int = 200,
    chunk: int = 2048,
) -> dict[str, float]:
    """Zero-shot SBIR metrics of queries against a gallery, ranked by :func:`euclidean_distance` (on
    L2-normalised vectors the order of cosine similarity), relevance = same label, as fractions:

    * ``P@k``: mean :func:`precision_at_k`;
    * ``mAP@k (ZS-SBIR)``: mean :func:`ap_at_k_zs_sbir`, the paper's definition (divided by k);
    * ``mAP@k``: mean :func:`ap_at_k`, the standard one (divided by the relevant photos retrieved);

    plus ``queries`` (B) and ``gallery_size`` (P). ``queries`` may be a memory map; distances are computed
    ``chunk`` queries at a time.
    """
    q_labels = np.asarray(query_labels).reshape(-1)
    if len(q_labels) != len(queries):
        raise ArgumentError(f"{len(queries)} queries but {len(q_labels)} query labels")
    if len(q_labels) == 0:
        raise ArgumentError("category_retrieval_metrics needs at least one query")
    gallery = np.asarray(gallery, dtype=np.float32)
    sums = np.zeros(3)
    for lo in range(0, len(q_labels), chunk):
        hi = min(lo + chunk, len(q_labels))
        rel = top_k_relevance(
            euclidean_distance(np.asarray(queries[lo:hi]), gallery), q_labels[lo:hi], gallery_labels, k
        )
        sums += [precision_at_k(rel, k).sum(), ap_at_k_zs_sbir(rel, k).sum(), ap_at_k(rel, k).sum()]
    n = len(q_labels)
    return {
        f"P@{k}": sums[0] / n,
        f"mAP@{k} (ZS-SBIR)": sums[1] / n,
        f"mAP@{k}": sums[2] / n,
        "queries": n,
        "gallery_size": len(gallery),
    }
