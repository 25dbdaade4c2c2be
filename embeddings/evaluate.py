"""Evaluating a frozen backend on its feature store: ranks, the paper's table row, curves, plots.

The frozen model's own query of every partial sketch (``store.queries``) is ranked against the split's
gallery; :func:`sketch_env.metrics.summarise` turns the ``(n, S)`` ranks into A@1/5/10, m@A and m@B (x100)
and :func:`sketch_env.metrics.retrieval_curves` into the per-step curves of the paper's plots.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.store import FeatureStore
from sketch_env.cache import atomic_path, write_csv
from sketch_env.errors import ArgumentError
from sketch_env.metrics import ranks_from_embeddings, retrieval_curves, summarise

__all__ = ["evaluate_store", "plot_curves", "write_curves_csv", "format_table", "episode_rows", "write_episodes_csv",
           "EPISODE_COLUMNS"]


def evaluate_store(store: FeatureStore, distractors: np.ndarray | None = None, chunk: int = 4096) -> dict[str, Any]:
    """Rank the backend's own query of every (sketch, step) of ``store`` against its gallery.

    ``distractors`` (``(D, d)`` photo embeddings, e.g. of the other split) are appended after the gallery,
    so each sketch's true index is unchanged and ``N = P + D``.

    Returns :func:`~sketch_env.metrics.summarise`'s row (``A@q``, ``m@A``, ``m@B`` x100, ``gallery_size``,
    ``sketches``, ``steps``), plus ``curves`` (:func:`~sketch_env.metrics.retrieval_curves`) and the raw
    int64 ``ranks`` ``(n, S)``.
    """
    gallery = np.asarray(store.gallery, dtype=np.float32)
    if distractors is not None:
        extra = np.asarray(distractors, dtype=np.float32)
        if extra.ndim != 2 or extra.shape[1] != gallery.shape[1]:
            raise ArgumentError(f"distractors must have shape (D, {gallery.shape[1]}), got {extra.shape}")
        gallery = np.concatenate([gallery, extra])
    n, steps, dim = store.queries.shape
    queries = store.queries.reshape(n * steps, dim)  # a view: the memory map is read chunk by chunk
    true_index = np.repeat(np.asarray(store.photo_index, dtype=np.int64), steps)
    ranks = ranks_from_embeddings(queries, gallery, true_index, chunk=chunk).reshape(n, steps)
    result: dict[str, Any] = dict(summarise(ranks, len(gallery)))
    result["curves"] = retrieval_curves(ranks, len(gallery))
    result["ranks"] = ranks
    return result


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = "",
                per_seed: Mapping[str, Sequence[Mapping[str, Sequence[float]]]] | None = None) -> Path:
    """Two panels, ranking percentile and ``1 / rank`` (log scale, so the early steps' small values stay
    readable) against the % of the sketch drawn, one line per named method (``curves[name]`` as returned by
    ``retrieval_curves``); where ``per_seed[name]`` gives the curve of every seed, the line is their mean and
    the band spans the seeds (lowest to highest). Written atomically as ``path`` (PNG, 150 dpi) and beside it
    as PDF and SVG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(10, 4), dpi=150)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = (("ranking_percentile", "ranking percentile"), ("inverse_rank", "1 / rank"))
    per_seed = per_seed or {}
    for ax, (column, label) in zip(axes, panels):
        for name, curve in curves.items():
            x = np.asarray(curve["percent"])
            (line,) = ax.plot(x, np.asarray(curve[column]), marker=".", label=name)
            seeds = per_seed.get(name)
            if seeds and len(seeds) > 1:
                ys = np.asarray([np.asarray(c[column]) for c in seeds])
                ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("% of sketch drawn")
        ax.set_ylabel(label)
        ax.set_xlim(0, 100)
        ax.grid(True, alpha=0.3, which="both")
    axes[0].set_ylim(0, 1.02)
    axes[1].set_yscale("log")
    if curves:
        axes[1].legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for target, fmt in ((path, "png"), (path.with_suffix(".pdf"), "pdf"), (path.with_suffix(".svg"), "svg")):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        with atomic_path(target) as tmp:
            tmp.write_bytes(buf.getvalue())
    return path


def write_curves_csv(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> Path:
    """The curves as CSV, one row per (method, step): ``method, percent, ranking_percentile, inverse_rank``."""
    rows = [[name, f"{float(pct):.4g}", f"{float(rp):.6f}", f"{float(inv):.6f}"]
            for name, curve in curves.items()
            for pct, rp, inv in zip(curve["percent"], curve["ranking_percentile"], curve["inverse_rank"])]
    return write_csv(path, rows, header=["method", "percent", "ranking_percentile", "inverse_rank"])


EPISODE_COLUMNS = ("method", "seed", "sketch", "gallery_size", "steps", "rank_first", "rank_complete",
                   "mean_percentile", "mean_inverse_rank")


def episode_rows(method: str, seed: int, ranks: np.ndarray, gallery_size: int) -> list[dict[str, Any]]:
    """One tidy row per episode (sketch) of ``ranks (n, S)``: its first and complete-sketch ranks and its
    means over the steps of the ranking percentile and of ``1 / rank`` (its m@A and m@B, unscaled), so
    per-sketch intervals, bootstraps and performance profiles can be computed from the file."""
    from sketch_env.metrics import ranking_percentile

    r = np.asarray(ranks, dtype=np.int64)
    pct = np.asarray(ranking_percentile(r, gallery_size), dtype=np.float64).mean(axis=1)
    inv = (1.0 / r).mean(axis=1)
    return [{"method": method, "seed": int(seed), "sketch": i, "gallery_size": int(gallery_size),
             "steps": int(r.shape[1]), "rank_first": int(r[i, 0]), "rank_complete": int(r[i, -1]),
             "mean_percentile": round(float(pct[i]), 6), "mean_inverse_rank": round(float(inv[i]), 6)}
            for i in range(len(r))]


def write_episodes_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Per-episode rows (:func:`episode_rows`) as a tidy CSV, written atomically."""
    return write_csv(path, rows, header=EPISODE_COLUMNS)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "-" if math.isnan(v) else f"{v:.1f}"
    return str(value)


def format_table(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = ("A@1", "A@5", "A@10", "m@A", "m@B")
) -> str:
    """A Markdown table, one row per named method, figures to 1 decimal (missing ones as ``-``)."""
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
