"""Datasets by name: ``make_dataset("kanji")``, ``make_dataset("chairv2", root=...)``.

Names and what they read (formats in the README's data section):

========== ==================================================================================
kanji      the embedded default: KanjiVG strokes (sketches) and IPAexGothic glyphs (photos)
synthetic  a tiny generated dataset for fast tests (not a benchmark)
qmul       QMUL-Shoe-V2 / Chair-V2 from a user-given root (``variant="ShoeV2"|"ChairV2"``)
shoev2     ``qmul`` with ``variant="ShoeV2"``
chairv2    ``qmul`` with ``variant="ChairV2"``
sketchy    Sketchy SVG sketches and photos from a user-given root
quickdraw  QuickDraw simplified ndjson or sketch-rnn npz from a user-given root (sketches only)
========== ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from sketch_env.datasets.base import SPLITS, PhotoRecord, SketchDataset, SketchRecord
from sketch_env.errors import ArgumentError
from sketch_env.registry import resolve_factory

__all__ = [
    "SPLITS",
    "PhotoRecord",
    "SketchDataset",
    "SketchRecord",
    "make_dataset",
    "register_dataset",
    "dataset_names",
]

# name -> "module:factory"; modules are imported on first use so that e.g. the kanji font is not
# touched when a user only reads QMUL data.
_REGISTRY: dict[str, str | Callable[..., SketchDataset]] = {
    "kanji": "sketch_env.datasets.kanji:KanjiDataset",
    "synthetic": "sketch_env.datasets.synthetic:SyntheticDataset",
    "qmul": "sketch_env.datasets.qmul:QMULDataset",
    "shoev2": "sketch_env.datasets.qmul:shoev2",
    "chairv2": "sketch_env.datasets.qmul:chairv2",
    "sketchy": "sketch_env.datasets.sketchy:SketchyDataset",
    "quickdraw": "sketch_env.datasets.quickdraw:QuickDrawDataset",
}

#: datasets that read a user-given root
NEEDS_ROOT = frozenset({"qmul", "shoev2", "chairv2", "sketchy", "quickdraw"})


def register_dataset(name: str, factory: str | Callable[..., SketchDataset]) -> None:
    """Add a dataset factory (a callable or ``"module:attr"``) under ``name``; re-registering replaces it."""
    _REGISTRY[name.lower()] = factory


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def make_dataset(name: str, root: str | None = None, **options) -> SketchDataset:
    """Build a dataset by name. ``root`` is required for the datasets users bring from their disk."""
    key = name.lower()
    factory = resolve_factory(_REGISTRY, key, "dataset")
    if key in NEEDS_ROOT:
        if root is None:
            raise ArgumentError(f"dataset {name!r} is read from your disk: pass root=PATH (CLI: --root PATH)")
        return factory(root=root, **options)
    if root is not None:
        raise ArgumentError(f"dataset {name!r} is embedded and takes no root")
    return factory(**options)
