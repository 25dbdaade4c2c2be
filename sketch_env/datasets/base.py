"""One interface for every dataset: sketches and photos, paired by instance, with deterministic splits.

A dataset object is built for one *split scheme* (how its items are divided into ``"train"`` and
``"test"``); ``sketches(split)`` and ``photos(split)`` list the records of one side, and
``photo_index(split)`` pairs each sketch with the index of its photo in ``photos(split)``.
Splits never depend on the order files are listed in or on a random seed the user forgets: they are a
function of the item names (hash-based) or of the published split.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sketch_env.errors import ArgumentError, DataFormatError
from sketch_env.limits import MAX_PHOTO_PIXELS, check_bound, check_file_size
from sketch_env.sketch import Sketch

__all__ = [
    "SPLITS",
    "SketchRecord",
    "PhotoRecord",
    "SketchDataset",
    "stable_fraction",
    "read_photo_file",
]

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class SketchRecord:
    """One sketch with its labels.

    Attributes:
        sketch: the vector sketch.
        instance: name of the photo it depicts (the pairing key).
        category: class label (shoe, chair, a Sketchy class, a kanji radical...).
        style: drawing-style or user label (a QMUL worker id, a KanjiVG variant such as ``Kaisho``).
        split: ``"train"`` or ``"test"``.
        source: where it came from (file and key), for error messages.
    """

    sketch: Sketch
    instance: str
    category: str
    style: str
    split: str
    source: str = ""


@dataclass(frozen=True)
class PhotoRecord:
    """One gallery photo: its ``instance`` name, ``category``, ``split`` and ``source`` (a file path or
    a generator description)."""

    instance: str
    category: str
    split: str
    source: str = ""


def stable_fraction(name: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) from a name (SHA-1), for splits that must not depend on order."""
    digest = hashlib.sha1(f"{salt}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_photo_file(path: str, size: int, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB ``(size, size, 3)`` (area-resampled, aspect kept by padding white).

    Raises :class:`DataFormatError` naming the file when it is missing, not a readable image, or larger than
    ``max_pixels`` (read from its header before it is decoded: a 249 KB PNG can decode to 1.5 GB).
    """
    from PIL import Image

    check_file_size(path)
    try:
        with Image.open(path) as probe:  # reads the header only
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise DataFormatError(path, f"image is too large to decode ({exc})") from exc
    except Exception:  # not an image Pillow knows: cv2 below decides
        width = height = None
    if width is not None:
        check_bound(path, width * height, max_pixels, "the image's number of pixels")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(path, "cannot read image (missing, truncated or not an image)")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    if h != w:  # pad to square with white so objects keep their aspect ratio
        side = max(h, w)
        canvas = np.full((side, side, 3), 255, dtype=np.uint8)
        y0, x0 = (side - h) // 2, (side - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = img
        img = canvas
    if img.shape[0] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


class SketchDataset(ABC):
    """Base class of all datasets.

    Subclasses set ``name`` and ``schemes`` and implement :meth:`_load_sketches`, :meth:`_load_photos`
    and :meth:`load_photo`. Records are loaded once and kept.
    """

    name: str = "dataset"
    #: split schemes this dataset offers; the first is the default
    schemes: tuple[str, ...] = ("instance",)
    #: whether the dataset has photos (QuickDraw has none)
    has_photos: bool = True
    #: what its photos are: ``"photo"`` (real photographs: QMUL, Sketchy) or ``"rendering"`` (drawn from
    #: vector data or a font: kanji, synthetic); training chooses photo preprocessing and augmentation by it
    photo_kind: str = "rendering"

    def __init__(self, scheme: str | None = None) -> None:
        scheme = scheme or self.schemes[0]
        if scheme not in self.schemes:
            raise ArgumentError(f"dataset {self.name!r} has split schemes {self.schemes}, not {scheme!r}")
        self.scheme = scheme
        self._sketches: dict[str, list[SketchRecord]] | None = None
        self._photos: dict[str, list[PhotoRecord]] | None = None

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def _load_sketches(self) -> list[SketchRecord]:
        """All sketch records of this scheme, each with its split set."""

    @abstractmethod
    def _load_photos(self) -> list[PhotoRecord]:
        """All photo records of this scheme, each with its split set."""

    @abstractmethod
    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        """The photo as uint8 RGB ``(size, size, 3)``."""

    # -- provided ----------------------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ArgumentError(f"split must be one of {SPLITS}, got {split!r}")

    def sketches(self, split: str) -> list[SketchRecord]:
        self._check_split(split)
        if self._sketches is None:
            grouped: dict[str, list[SketchRecord]] = {s: [] for s in SPLITS}
            for rec in self._load_sketches():
                grouped[rec.split].append(rec)
            self._sketches = grouped
        return self._sketches[split]

    def photos(self, split: str) -> list[PhotoRecord]:
        self._check_split(split)
        if self._photos is None:
            grouped: dict[str, list[PhotoRecord]] = {s: [] for s in SPLITS}
            for rec in self._load_photos():
                grouped[rec.split].append(rec)
            self._photos = grouped
        return self._photos[split]

    def photo_index(self, split: str) -> np.ndarray:
        """For each sketch of ``split``, the index of its photo in ``photos(split)`` (int64)."""
        if not self.has_photos:
            raise ArgumentError(f"dataset {self.name!r} has no photos, so sketches have no paired photo")
        lookup = {p.instance: i for i, p in enumerate(self.photos(split))}
        idx = np.empty(len(self.sketches(split)), dtype=np.int64)
        for i, rec in enumerate(self.sketches(split)):
            if rec.instance not in lookup:
                raise DataFormatError(rec.source or self.name, f"no photo named {rec.instance!r} in split {split!r}")
            idx[i] = lookup[rec.instance]
        return idx

    def load_photos(self, photos: Sequence[PhotoRecord], size: int) -> np.ndarray:
        """Many photos as uint8 ``(P, size, size, 3)``."""
        out = np.empty((len(photos), size, size, 3), dtype=np.uint8)
        for i, p in enumerate(photos):
            out[i] = self.load_photo(p, size)
        return out

    def info(self) -> dict[str, dict[str, float | int]]:
        """Counts per split: sketches, photos, categories, styles, and points / strokes per sketch."""
        rows: dict[str, dict[str, float | int]] = {}
        for split in SPLITS:
            sk = self.sketches(split)
            strokes = np.array([r.sketch.num_strokes for r in sk]) if sk else np.zeros(1)
            points = np.array([r.sketch.num_points for r in sk]) if sk else np.zeros(1)
            rows[split] = {
                "sketches": len(sk),
                "photos": len(self.photos(split)) if self.has_photos else 0,
                "categories": len({r.category for r in sk}),
                "styles": len({r.style for r in sk}),
                "strokes_median": float(np.median(strokes)),
                "points_median": float(np.median(points)),
            }
        return rows

    def style_counts(self, split: str) -> Counter:
        return Counter(r.style for r in self.sketches(split))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scheme={self.scheme!r})"

