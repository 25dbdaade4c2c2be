"""What a retrieval environment reads: the frozen backend's features, queries and gallery of one split.

A :class:`RetrievalData` holds the arrays (often memory maps of a feature store) and, when it was made from
a dataset, the records the env renders with. The environments take one and never load or train anything
themselves. It is made

* from names (dataset, backend name or checkpoint, split, schedule, ...) by the embedding layer's
  provisioning, :func:`embeddings.provision.load_retrieval_data`, which is what ``gym.make`` with a
  registered id calls;
* from arrays, by :meth:`RetrievalData.from_arrays` (tests, benchmarks, your own backend's features).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = ["RetrievalData", "DataBackedEnv", "ENV_SPLITS"]

ENV_SPLITS = ("train", "val", "test")



@dataclass(eq=False)
class RetrievalData:
    """Arrays of one split (read-only; may be memory maps shared between envs).

    Attributes:
        sketch_features: float32 ``(m, S, F)``: the observation feature of every (sketch, step).
        gallery: float32 ``(P, d)`` L2-normalised photo embeddings.
        photo_index: int64 ``(n,)``: sketch ``i``'s photo in ``gallery``.
        queries: float32 ``(m, S, d)``: the backend's own queries (``action="residual"``), or None.
        sketch_rows: int64 ``(n,)``: sketch ``i``'s row in ``sketch_features`` / ``queries`` (None: ``i``).
        description: where the data come from, for ``repr``.
        dataset, sketch_records, photo_records, schedule, render_config: what ``render()`` draws with
            (None for data made from arrays); ``photo_records`` is aligned with ``gallery``.
        load_kwargs, loader: ``loader(**load_kwargs)`` rebuilds it (how a pickled copy reopens its feature
            store; None for arrays).
        backend_checkpoint: the checkpoint it was computed with.
        backend: the backend itself (an :class:`~sketch_env.backend.EmbeddingBackend`), for envs that embed
            new rasters (the stroke-order game); None for arrays.
    """

    sketch_features: np.ndarray
    gallery: np.ndarray
    photo_index: np.ndarray
    queries: np.ndarray | None = None
    sketch_rows: np.ndarray | None = None
    description: str = "arrays"
    dataset: Any = None
    sketch_records: list | None = None
    photo_records: list | None = None
    schedule: Any = None
    render_config: Any = None
    load_kwargs: dict[str, Any] | None = None
    loader: Callable[..., RetrievalData] | None = None
    backend_checkpoint: str | None = None
    backend: Any = None
    _max_abs: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        f = self.sketch_features
        if f.ndim != 3 or f.dtype != np.float32:
            raise ArgumentError(f"sketch_features must be float32 (m, S, F), got {f.dtype} {f.shape}")
        g = self.gallery
        if g.ndim != 2 or g.shape[0] < 1:
            raise ArgumentError(f"gallery must have shape (P, d) with P >= 1, got {g.shape}")
        if not np.isfinite(g).all():
            raise ArgumentError("gallery contains NaN or inf")
        norms = np.linalg.norm(g.astype(np.float64), axis=1)
        if np.abs(norms - 1.0).max() > 1e-3:
            raise ArgumentError(
                f"gallery rows must be L2-normalised; their norms range {norms.min():.4g}..{norms.max():.4g}"
            )
        rows = np.arange(len(f)) if self.sketch_rows is None else np.asarray(self.sketch_rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0:
            raise ArgumentError(f"no sketches: {self.description}")
        if rows.min() < 0 or rows.max() >= len(f):
            raise ArgumentError(f"sketch_rows must index the {len(f)} feature rows")
        idx = np.asarray(self.photo_index, dtype=np.int64)
        if idx.shape != rows.shape:
            raise ArgumentError(f"photo_index has shape {idx.shape}, expected ({len(rows)},): one photo per sketch")
        if idx.min() < 0 or idx.max() >= len(g):
            raise ArgumentError(f"photo_index must lie in [0, {len(g)}), got [{idx.min()}, {idx.max()}]")
        self.photo_index = idx
        if self.queries is not None:
            q = self.queries
            if q.shape != (*f.shape[:2], g.shape[1]) or q.dtype != np.float32:
                raise ArgumentError(f"queries must be float32 {(*f.shape[:2], g.shape[1])}, got {q.dtype} {q.shape}")

    @classmethod
    def from_arrays(
        cls,
        sketch_features: np.ndarray,
        gallery: np.ndarray,
        photo_index: np.ndarray,
        queries: np.ndarray | None = None,
        description: str = "arrays",
    ) -> RetrievalData:
        """Data from arrays: features ``(n, S, F)``, an L2-normalised gallery ``(P, d)``, each sketch's
        photo ``(n,)`` and optionally the own queries ``(n, S, d)`` (for ``action="residual"``)."""
        q = None if queries is None else np.asarray(queries, dtype=np.float32)
        return cls(
            np.asarray(sketch_features, dtype=np.float32),
            np.asarray(gallery, dtype=np.float32),
            np.asarray(photo_index, dtype=np.int64),
            q,
            description=description,
        )

    @staticmethod
    def check(data: Any, env: str) -> RetrievalData:
        """``data`` if it is a :class:`RetrievalData`, else a TypeError saying how ``env`` gets its data."""
        if isinstance(data, RetrievalData):
            return data
        if data is None:
            raise ArgumentError(
                f"{env} runs on data=RetrievalData (RetrievalData.from_arrays(...), or {env}.from_arrays); to make it "
                "from names (dataset, backend, split, ...), use gym.make('SketchEnv/OnTheFly-v0', dataset=..., ...), "
                "which provisions the data (embeddings.provision)"
            )
        raise ArgumentError(f"data must be a RetrievalData, got {type(data).__name__}")

    # -- pickling: data loaded from a feature store pickle as their loader and its arguments -------------
    def __getstate__(self) -> dict[str, Any]:
        if self.load_kwargs is None or self.loader is None:
            return dict(self.__dict__)
        return {"load_kwargs": self.load_kwargs, "loader": self.loader}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if set(state) == {"load_kwargs", "loader"}:  # reopen the store (memoised: free within one process)
            state = dict(state["loader"](**state["load_kwargs"]).__dict__)
        self.__dict__.update(state)

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def num_sketches(self) -> int:
        return len(self.photo_index)

    @property
    def steps(self) -> int:
        return int(self.sketch_features.shape[1])

    @property
    def feature_dim(self) -> int:
        return int(self.sketch_features.shape[2])

    @property
    def embed_dim(self) -> int:
        return int(self.gallery.shape[1])

    @property
    def gallery_size(self) -> int:
        return int(self.gallery.shape[0])

    @property
    def can_render(self) -> bool:
        return self.sketch_records is not None and self.photo_records is not None

    def rows(self, sketch: np.ndarray) -> np.ndarray:
        """Feature rows of split sketch indices."""
        return sketch if self.sketch_rows is None else self.sketch_rows[sketch]

    @property
    def lazy(self) -> bool:
        """Whether the features are computed on first use (not arrays): checks over all of them wait until
        the features are read."""
        return not isinstance(self.sketch_features, np.ndarray)

    def max_abs_feature(self) -> float:
        """``max |f|`` over the split's features (read in chunks; memoised)."""
        if self._max_abs is None:
            rows = np.unique(self.rows(np.arange(self.num_sketches)))
            top = 0.0
            for lo in range(0, len(rows), 256):
                chunk = np.asarray(self.sketch_features[rows[lo : lo + 256]])
                if not np.isfinite(chunk).all():
                    raise ArgumentError(f"sketch features contain NaN or inf ({self.description})")
                top = max(top, float(np.abs(chunk).max(initial=0.0)))
            self._max_abs = top
        return self._max_abs

    def __repr__(self) -> str:
        return (
            f"RetrievalData({self.description}, n={self.num_sketches}, S={self.steps}, F={self.feature_dim}, "
            f"d={self.embed_dim}, P={self.gallery_size})"
        )


class DataBackedEnv:
    """What the environments share about their :class:`RetrievalData`: the sizes, the checkpoint, and
    construction from arrays."""

    data: RetrievalData

    @classmethod
    def from_arrays(cls, sketch_features: np.ndarray, gallery: np.ndarray, photo_index: np.ndarray,
                    queries: np.ndarray | None = None, **kwargs: Any):
        """An env on arrays (:meth:`RetrievalData.from_arrays`): features ``(n, S, F)``, an L2-normalised
        gallery ``(P, d)``, each sketch's photo ``(n,)``, optionally the backend's own queries ``(n, S, d)``
        (for ``action="residual"``); ``kwargs`` are the env's other arguments (``num_envs=`` for the batched
        env)."""
        return cls(data=RetrievalData.from_arrays(sketch_features, gallery, photo_index, queries), **kwargs)

    @property
    def num_sketches(self) -> int:
        """Sketches in the split (episodes of one pass)."""
        return self.data.num_sketches

    @property
    def gallery_size(self) -> int:
        return self.data.gallery_size

    @property
    def steps(self) -> int:
        return self.data.steps

    @property
    def backend_checkpoint(self) -> str | None:
        """The backend checkpoint the features come from (None for data from arrays)."""
        return self.data.backend_checkpoint
