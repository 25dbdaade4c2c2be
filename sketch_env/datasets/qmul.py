"""QMUL-Shoe-V2 and QMUL-Chair-V2, as distributed by the SketchX lab for on-the-fly FG-SBIR.

Layout read::

    <root>/<Variant>_Coordinate        a pickle, e.g. ShoeV2_Coordinate, ChairV2_Coordinate
    <root>/photo/<photo_name>.png      the photos

The pickle is a ``dict[str, numpy.ndarray]``. A key is ``'/train/<photo_name>_<k>'`` or
``'/test/<photo_name>_<k>'``: the first segment is the published split, ``<photo_name>`` (which may contain
underscores) names the paired photo, and ``<k>`` (a small integer or a worker id such as
``A1YX741QQSMKPS``) tells the sketches of one photo apart; it is kept as the record's ``style``. A value is a
float64 ``(N, 3)`` array of absolute ``x, y`` in a 256 x 256 frame and a pen flag that is 1 on the last
point of each stroke.

The pickle is read with :func:`sketch_env.safe_pickle.safe_load_pickle`, which refuses anything but NumPy
arrays and plain containers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sketch_env.datasets.base import PhotoRecord, SketchDataset, SketchRecord, read_photo_file
from sketch_env.errors import ArgumentError, DataFormatError, SketchError
from sketch_env.limits import MAX_SKETCH_POINTS, check_bound
from sketch_env.safe_pickle import safe_load_pickle
from sketch_env.sketch import Sketch

__all__ = ["QMULDataset", "chairv2", "shoev2"]

#: lower-case variant name -> (file prefix, category)
_VARIANTS = {"shoev2": ("ShoeV2", "shoe"), "chairv2": ("ChairV2", "chair")}
_KEY = re.compile(r"/(train|test)/([^/]+)_([^_/]+)")
FRAME = (256.0, 256.0)


class QMULDataset(SketchDataset):
    """QMUL-Shoe-V2 / QMUL-Chair-V2 sketches and photos with the published train/test split.

    Args:
        root: folder holding ``<Variant>_Coordinate`` and ``photo/``.
        variant: ``"ShoeV2"`` or ``"ChairV2"`` (any case).
        scheme: only ``"published"``.
    """

    name = "qmul"
    schemes = ("published",)
    photo_kind = "photo"

    def __init__(self, root: str | Path, variant: str = "ChairV2", scheme: str | None = None) -> None:
        super().__init__(scheme)
        if variant.lower() not in _VARIANTS:
            raise ArgumentError(f"QMUL variant must be one of ShoeV2, ChairV2; got {variant!r}")
        self.variant, self.category = _VARIANTS[variant.lower()]
        self.name = variant.lower()
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFormatError(self.root, f"QMUL {self.variant} root folder does not exist")
        self.coordinate_path = self.root / f"{self.variant}_Coordinate"
        if not self.coordinate_path.is_file():
            raise DataFormatError(self.coordinate_path, f"missing the {self.variant} coordinate pickle")
        self.photo_dir = self.root / "photo"
        self._records: list[SketchRecord] | None = None

    def _all_records(self) -> list[SketchRecord]:
        if self._records is None:
            self._records = self._parse()
        return self._records

    def _parse(self) -> list[SketchRecord]:
        path = self.coordinate_path
        data = safe_load_pickle(path)
        if not isinstance(data, dict):
            raise DataFormatError(
                path, f"expected a dict of '/split/photo_k' keys to (N, 3) arrays, got {type(data).__name__}"
            )
        records = []
        for key, arr in data.items():
            item = key if isinstance(key, str) else repr(key)
            match = _KEY.fullmatch(key) if isinstance(key, str) else None
            if match is None:
                raise DataFormatError(
                    path, "key is not of the form '/train/<photo>_<k>' or '/test/<photo>_<k>'", item
                )
            split, photo_name, suffix = match.groups()
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
                what = f"{arr.dtype} array" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise DataFormatError(path, f"value must be a numeric (N, 3) array, got a {what}", item)
            check_bound(path, len(arr), MAX_SKETCH_POINTS, "the sketch's number of points", item)
            try:
                sketch = Sketch.from_absolute(arr, frame=FRAME)
            except SketchError as exc:
                raise DataFormatError(path, str(exc), item) from exc
            records.append(
                SketchRecord(sketch, photo_name, self.category, suffix, split, source=f"{path} [{key}]")
            )
        return records

    def _load_sketches(self) -> list[SketchRecord]:
        return self._all_records()

    def _load_photos(self) -> list[PhotoRecord]:
        referenced = sorted({(r.split, r.instance) for r in self._all_records()})
        return [
            PhotoRecord(name, self.category, split, source=str(self.photo_dir / f"{name}.png"))
            for split, name in referenced
        ]

    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        return read_photo_file(photo.source, size)


def shoev2(root: str | Path, **kw) -> QMULDataset:
    """QMUL-Shoe-V2 (``<root>/ShoeV2_Coordinate``, ``<root>/photo/``)."""
    return QMULDataset(root, variant="ShoeV2", **kw)


def chairv2(root: str | Path, **kw) -> QMULDataset:
    """QMUL-Chair-V2 (``<root>/ChairV2_Coordinate``, ``<root>/photo/``)."""
    return QMULDataset(root, variant="ChairV2", **kw)
