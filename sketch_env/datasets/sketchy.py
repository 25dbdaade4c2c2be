"""Sketchy (Sangkloy et al. 2016): SVG sketches paired with photos, 125 classes.

Layout read::

    <root>/sketches/<class>/<photo_id>-<k>.svg     one <path> per stroke, in drawing order; 640 x 480 canvas
    <root>/sketches/<class>/invalid.txt            names of sketches judged invalid (skipped)
    <root>/photo/<class>/<photo_id>.jpg            photos; the rendered archive's
        <root>/rendered_256x256/256x256/photo/tx_000000000000/<class>/<photo_id>.jpg is accepted too

A sketch is paired with the photo whose id is its file name without ``-<k>``; the pairing key
(``instance``) is ``<class>/<photo_id>``. Every ``<path>`` is sampled
to points (curves at most ``curve_step`` canvas pixels apart); a second move-to inside a path is a pen
lift, so each sub-path is a stroke. The canvas is the SVG's ``width`` x ``height`` (640 x 480 when absent),
normalised keeping its aspect ratio.

Split schemes:

* ``"category"`` (default): the zero-shot split of Yelamarthi et al. (ECCV 2018): the 21 classes in
  :data:`ZERO_SHOT_TEST_CLASSES` are test, the other 104 train.
* ``"instance"``: within every class, photos (and their sketches) with
  ``stable_fraction(photo_id, "sketchy") < 0.1`` are test.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sketch_env.datasets.base import (
    PhotoRecord,
    SketchDataset,
    SketchRecord,
    read_photo_file,
    stable_fraction,
)
from sketch_env.errors import ArgumentError, DataFormatError, SketchError
from sketch_env.limits import MAX_CANVAS, MAX_FILE_BYTES, MAX_SKETCH_POINTS, check_bound, check_file_size
from sketch_env.sketch import Sketch
from sketch_env.svg_path import PathSyntaxError, parse_path, sample_path

__all__ = ["ZERO_SHOT_TEST_CLASSES", "SketchyDataset", "read_sketchy_svg"]

#: the 21 unseen classes of the zero-shot split (Yelamarthi et al., ECCV 2018); the other 104 train
ZERO_SHOT_TEST_CLASSES = frozenset(
    {
        "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon",
        "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword", "tree", "wheelchair",
        "windmill", "window",
    }
)  # fmt: skip
DEFAULT_CANVAS = (640.0, 480.0)
_PHOTO_DIRS = ("photo", "rendered_256x256/256x256/photo/tx_000000000000")
_PATH_TAGS = ("{http://www.w3.org/2000/svg}path", "path")
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:px)?\s*")
_PROGRESS_MIN_FILES = 200
#: coordinates beyond this many canvas sides are corrupt data; sampling them would take unbounded memory
_MAX_EXTENT = 16.0


def _canvas_side(svg: ET.Element, attr: str, default: float, path: Path) -> float:
    value = svg.get(attr)
    if value is None:
        return default
    match = _LENGTH.fullmatch(value)
    if match is None or not 0 < float(match.group(1)) < float("inf"):
        raise DataFormatError(path, f"svg {attr}={value!r} is not a positive length in pixels")
    check_bound(path, float(match.group(1)), MAX_CANVAS, f"the svg {attr} in pixels")
    return float(match.group(1))


def read_sketchy_svg(path: str | Path, curve_step: float = 16.0, max_points: int = MAX_SKETCH_POINTS,
                     max_bytes: int = MAX_FILE_BYTES) -> Sketch:
    """One Sketchy SVG as a :class:`Sketch`; :class:`DataFormatError` names the file (and path) when bad.

    ``max_points`` bounds the points of the sampled sketch and ``max_bytes`` the file
    (:mod:`sketch_env.limits`): both are checked before anything is allocated for them."""
    path = Path(path)
    check_file_size(path, max_bytes)
    try:
        svg = ET.parse(path).getroot()
    except (ET.ParseError, OSError, LookupError) as exc:  # LookupError: an unknown declared encoding
        raise DataFormatError(path, f"not a readable SVG file ({exc})") from exc
    width = _canvas_side(svg, "width", DEFAULT_CANVAS[0], path)
    height = _canvas_side(svg, "height", DEFAULT_CANVAS[1], path)
    strokes: list[np.ndarray] = []
    elements = [el for el in svg.iter() if el.tag in _PATH_TAGS]
    limit = _MAX_EXTENT * max(width, height)
    for i, el in enumerate(elements):
        d = el.get("d", "")
        try:
            extent = max((abs(v) for sub in parse_path(d) for _kind, seg in sub for v in seg), default=0.0)
            if not extent <= limit:
                raise ArgumentError(
                    f"a coordinate ({extent:g}) is far outside the {width:g} x {height:g} canvas"
                )
            strokes.extend(sample_path(d, curve_step, max_points - sum(len(s) for s in strokes)))
        except (PathSyntaxError, ValueError) as exc:
            raise DataFormatError(path, f"bad path data: {exc}", item=f"path {i}") from exc
    try:
        return Sketch.from_strokes(strokes, frame=(width, height))
    except SketchError as exc:
        raise DataFormatError(path, str(exc)) from exc


def _read_invalid(path: Path) -> set[str]:
    """Sketch stems listed in ``invalid.txt``; other lines (section headers, blanks) match nothing."""
    if not path.is_file():
        return set()
    names = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name = line.strip().rsplit("/", 1)[-1]
        names.add(name[:-4] if name.endswith((".svg", ".png")) else name)
    return names


class SketchyDataset(SketchDataset):
    """Sketchy SVG sketches and their photos.

    Args:
        root: folder holding ``sketches/`` and ``photo/`` (see the module docstring).
        scheme: ``"category"`` (zero-shot, default) or ``"instance"``.
        curve_step: largest distance between sampled points, in canvas pixels (0.025 of 640 by default).
    """

    name = "sketchy"
    schemes = ("category", "instance")
    photo_kind = "photo"

    def __init__(self, root: str | Path, scheme: str | None = None, curve_step: float = 16.0) -> None:
        super().__init__(scheme)
        if not curve_step > 0:
            raise ArgumentError(f"curve_step must be positive, got {curve_step}")
        self.root = Path(root)
        self.curve_step = float(curve_step)
        self.sketch_dir = self.root / "sketches"
        if not self.sketch_dir.is_dir():
            raise DataFormatError(self.sketch_dir, "missing the Sketchy sketches/<class>/*.svg folder")
        self.photo_dir = next(
            (self.root / d for d in _PHOTO_DIRS if (self.root / d).is_dir()), self.root / _PHOTO_DIRS[0]
        )

    def _split(self, category: str, photo_id: str) -> str:
        if self.scheme == "category":
            return "test" if category in ZERO_SHOT_TEST_CLASSES else "train"
        return "test" if stable_fraction(photo_id, "sketchy") < 0.1 else "train"

    def _load_sketches(self) -> list[SketchRecord]:
        files = []
        for class_dir in sorted(p for p in self.sketch_dir.iterdir() if p.is_dir()):
            invalid = _read_invalid(class_dir / "invalid.txt")
            files.extend(f for f in sorted(class_dir.glob("*.svg")) if f.stem not in invalid)
        if not files:
            raise DataFormatError(self.sketch_dir, "no sketches/<class>/*.svg files")
        records = []
        progress = tqdm(files, desc="Sketchy SVG", unit="file", disable=len(files) <= _PROGRESS_MIN_FILES)
        for f in progress:
            photo_id, dash, k = f.stem.rpartition("-")
            if not dash or not photo_id or not k:
                raise DataFormatError(f, "sketch file name is not <photo_id>-<k>.svg")
            category = f.parent.name
            sketch = read_sketchy_svg(f, self.curve_step)
            records.append(
                SketchRecord(
                    sketch, f"{category}/{photo_id}", category, "", self._split(category, photo_id), str(f)
                )
            )
        return records

    def _load_photos(self) -> list[PhotoRecord]:
        if not self.photo_dir.is_dir():
            raise DataFormatError(self.photo_dir, "missing the Sketchy photo/<class>/*.jpg folder")
        return [
            PhotoRecord(
                f"{class_dir.name}/{f.stem}", class_dir.name, self._split(class_dir.name, f.stem), str(f)
            )
            for class_dir in sorted(p for p in self.photo_dir.iterdir() if p.is_dir())
            for f in sorted(class_dir.glob("*.jpg"))
        ]

    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        return read_photo_file(photo.source, size)
