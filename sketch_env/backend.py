"""The embedding-backend interface: the only thing the environments know about models.

A backend maps

* photos to the **gallery**: L2-normalised ``d``-dim vectors (``d = 64`` by default);
* partial-sketch rasters to **observation features** ``f``: the frozen sketch branch's pooled feature,
  before the final embedding layer (what the RL policy observes);
* features to the backend's own **query** ``q = W f + b`` normalised, ``q / ||q||``: what the frozen
  model retrieves with, and what a policy can be initialised from (:meth:`EmbeddingBackend.query_layer`);

and ranks with the Euclidean distance between L2-normalised vectors, ``||q - g||`` (the papers'
choice; on unit vectors it orders photos exactly as cosine similarity does).

Backends whose sketch branch depends on the step of the episode (B3: one model per completion
percentage) set ``per_step = True`` and take the step index; the others ignore it.

The concrete backends, their registry (``make_backend``, ``load_backend``, ``register_backend``) and their
training live in the :mod:`embeddings` package, one layer up; the environments receive a backend (or its
precomputed features) and use only this interface.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.metrics import euclidean_distance, l2_normalise
from sketch_env.render import RenderConfig

__all__ = ["EmbeddingBackend", "CHECKPOINT_FORMAT", "flatten_mapping"]

CHECKPOINT_FORMAT = "sketch-env-backend/1"


class EmbeddingBackend(ABC):
    """Base class of embedding backends (see the module docstring).

    Attributes:
        name: registry name (``"ts"``, ``"b1"``, ...).
        embed_dim: ``d``, the gallery / query dimension.
        feature_dim: the observation-feature dimension.
        render_config: how sketches are rasterised for this backend.
        photo_size: side of the photo rasters it embeds.
        per_step: whether the sketch branch depends on the episode step (B3).
        steps: the schedule length the backend was built for (per-step backends only need it).
    """

    name: str = "backend"
    per_step: bool = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config: dict[str, Any] = dict(config)

    # -- dimensions and settings -----------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    @abstractmethod
    def feature_dim(self) -> int: ...

    @property
    def render_config(self) -> RenderConfig:
        return RenderConfig(**self.config["render"])

    @property
    def photo_size(self) -> int:
        return int(self.config.get("photo_size", self.render_config.size))

    # -- the four operations ---------------------------------------------------------------------
    @abstractmethod
    def photo_embeddings(self, photos: np.ndarray) -> np.ndarray:
        """Gallery vectors of uint8 RGB photos ``(P, H, W, 3)``: float32 ``(P, d)``, L2-normalised."""

    @abstractmethod
    def sketch_features(self, rasters: np.ndarray, step: int | np.ndarray | None = None) -> np.ndarray:
        """Observation features of uint8 rasters ``(B, H, W)``: float32 ``(B, F)``.

        ``step`` (0-based, an int or one per raster) selects the model of per-step backends.
        """

    @abstractmethod
    def query_layer(self, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The final embedding layer ``(W, b)`` with ``W`` of shape ``(d, F)``: ``q = normalise(W f + b)``."""

    def queries(self, features: np.ndarray, step: int | np.ndarray | None = None) -> np.ndarray:
        """The backend's own queries for features ``(B, F)``: ``normalise(W f + b)``, float32 ``(B, d)``."""
        features = np.asarray(features, dtype=np.float32)
        if not self.per_step:
            weight, bias = self.query_layer(None)
            return l2_normalise(features @ weight.T + bias)
        if step is None or np.ndim(step) == 0:
            weight, bias = self.query_layer(None if step is None else int(step))
            return l2_normalise(features @ weight.T + bias)
        step = np.asarray(step)
        out = np.empty((len(features), self.embed_dim), dtype=np.float32)
        for s in np.unique(step):
            sel = step == s
            weight, bias = self.query_layer(int(s))
            out[sel] = l2_normalise(features[sel] @ weight.T + bias)
        return out

    @staticmethod
    def distance(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Ranking distance: Euclidean between L2-normalised vectors, ``(B, P)``."""
        return euclidean_distance(queries, gallery)

    # -- persistence -----------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Tensors (and nested dicts of tensors) that, with ``config``, rebuild the backend."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def to(self, device: str) -> EmbeddingBackend:
        """Move to a torch device (a no-op for backends without torch parts)."""
        return self

    def fingerprint(self) -> str:
        """SHA-256 over the configuration and the weights: keys feature caches to this exact model."""
        import torch

        h = hashlib.sha256(f"{type(self).__qualname__}:{self.name}:{self.per_step}".encode())
        h.update(repr(sorted(flatten_mapping(self.config).items())).encode())
        for key, value in sorted(flatten_mapping(self.state_dict()).items()):
            h.update(key.encode())
            if isinstance(value, torch.Tensor):
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
            else:
                h.update(repr(value).encode())
        return h.hexdigest()[:20]

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the checkpoint atomically: ``{"format", "config", "state_dict", "extra"}``."""
        import torch

        from sketch_env.cache import atomic_path

        path = Path(path)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "backend": self.name,
            "config": self.config,
            "state_dict": self.state_dict(),
            "extra": dict(extra or {}),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, d={self.embed_dim}, F={self.feature_dim})"


def flatten_mapping(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one dict with dotted keys (``{"render": {"size": 64}}`` -> ``{"render.size": 64}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_mapping(v, key + "."))
        else:
            out[key] = v
    return out
