"""A tiny generated dataset for fast tests (not a benchmark).

Each instance is a random figure of one of four categories (``polygon``, ``circle``, ``zigzag``,
``cross``) made of 2-5 strokes; its sketches are the figure's strokes with small per-sketch point
jitter (style ``"clean"`` for the first, ``"jitter"`` for the others), and its photo is the figure drawn
thick in a colour on white, with a filled pastel hull, so sketch and photo domains differ as in real
data. Everything is a deterministic function of ``seed``. Split schemes: ``instance`` (75 % / 25 % by
instance) and ``category`` (the ``cross`` figures are the unseen test category; for the meta-learning tests).
"""

from __future__ import annotations

import cv2
import numpy as np

from sketch_env.datasets.base import PhotoRecord, SketchDataset, SketchRecord, stable_fraction
from sketch_env.errors import ArgumentError
from sketch_env.sketch import Sketch

__all__ = ["SyntheticDataset"]

CATEGORIES = ("polygon", "circle", "zigzag", "cross")


def _figure(rng: np.random.Generator, category: str) -> list[np.ndarray]:
    """Strokes of one figure in the unit frame."""
    centre = rng.uniform(0.35, 0.65, size=2)
    radius = rng.uniform(0.15, 0.3)
    strokes: list[np.ndarray] = []
    if category == "polygon":
        k = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        corners = centre + radius * np.column_stack([np.cos(ang), np.sin(ang)])
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            strokes.append(np.linspace(a, b, 8))
    elif category == "circle":
        t = np.linspace(0, 2 * np.pi, 40)
        strokes.append(centre + radius * np.column_stack([np.cos(t), rng.uniform(0.5, 1.0) * np.sin(t)]))
        strokes.append(centre + rng.uniform(-0.05, 0.05, size=(6, 2)).cumsum(axis=0))
    elif category == "zigzag":
        for _ in range(int(rng.integers(2, 4))):
            xs = np.linspace(centre[0] - radius, centre[0] + radius, int(rng.integers(4, 8)))
            ys = centre[1] + rng.uniform(-radius, radius) + 0.08 * (-1.0) ** np.arange(len(xs))
            strokes.append(np.column_stack([xs, ys]))
    else:  # cross
        for _ in range(int(rng.integers(2, 5))):
            ang = rng.uniform(0, np.pi)
            d = radius * np.array([np.cos(ang), np.sin(ang)])
            strokes.append(np.linspace(centre - d, centre + d, 10))
    return [np.clip(s, 0.02, 0.98) for s in strokes]


class SyntheticDataset(SketchDataset):
    """``n_instances`` random figures with ``sketches_per_instance`` sketches each (see module docstring)."""

    name = "synthetic"
    schemes = ("instance", "category")

    def __init__(self, scheme: str | None = None, n_instances: int = 32, sketches_per_instance: int = 2,
                 seed: int = 0) -> None:
        super().__init__(scheme)
        if n_instances < 4:
            raise ArgumentError(f"n_instances must be >= 4, got {n_instances}")
        self.n_instances = n_instances
        self.sketches_per_instance = sketches_per_instance
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._figures = []
        for i in range(n_instances):
            category = CATEGORIES[i % len(CATEGORIES)]
            self._figures.append((f"fig{i:03d}", category, _figure(rng, category)))
        self._colour = {name: rng.integers(0, 160, size=3) for name, _, _ in self._figures}
        self._category = {name: category for name, category, _ in self._figures}

    def _split(self, name: str) -> str:
        if self.scheme == "category":
            return "test" if self._category[name] == "cross" else "train"
        return "test" if stable_fraction(name, f"synthetic{self.seed}") < 0.25 else "train"

    def _load_sketches(self) -> list[SketchRecord]:
        rng = np.random.default_rng(self.seed + 1)
        records = []
        for name, category, strokes in self._figures:
            for k in range(self.sketches_per_instance):
                noisy = strokes if k == 0 else [s + rng.normal(0, 0.01, s.shape) for s in strokes]
                sketch = Sketch.from_strokes([np.clip(s, 0, 1) for s in noisy])
                style = "clean" if k == 0 else "jitter"
                records.append(SketchRecord(sketch, name, category, style, self._split(name), f"synthetic:{name}/{k}"))
        return records

    def _load_photos(self) -> list[PhotoRecord]:
        return [PhotoRecord(n, c, self._split(n), f"synthetic:{n}") for n, c, _ in self._figures]

    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        strokes = next(s for n, _, s in self._figures if n == photo.instance)
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        pts = [np.round(s * (size - 1)).astype(np.int32) for s in strokes]
        hull = cv2.convexHull(np.concatenate(pts))
        cv2.fillConvexPoly(img, hull, (230, 220, 200))
        colour = tuple(int(c) for c in self._colour[photo.instance])
        cv2.polylines(img, pts, False, colour, max(1, size // 16), cv2.LINE_AA)
        return img
