"""QuickDraw sketches: simplified ``.ndjson`` files and sketch-rnn ``.npz`` files (no photos).

Every ``*.ndjson`` and ``*.npz`` under ``root`` (searched recursively; ``root`` may also be one file) is read.

Simplified ndjson
    One JSON object per line, ``{"word": ..., "countrycode": ..., "recognized": ..., "key_id": ...,
    "drawing": [[[x0, x1, ...], [y0, y1, ...]], ...]}``, one entry per stroke, coordinates in 0..255
    (normalised as a 256 x 256 canvas). ``category`` is the word, ``style`` the country code, ``instance``
    the key id (``<file>:<line>`` without one). Split: ``stable_fraction(instance, "quickdraw") < 0.1`` is
    test. Blank lines are skipped.

sketch-rnn npz
    Keys ``train``, ``valid``, ``test``, each an object array of int16 ``(N, 3)`` stroke-3 arrays
    ``(dx, dy, pen)``; there is no canvas, so each sketch is fitted to the unit square. ``category`` is the
    file stem; ``train`` and ``valid`` give the train split, ``test`` the test split. Object arrays are
    pickles, so they are read through :func:`sketch_env.safe_pickle.safe_loads` (NumPy arrays only) instead
    of ``np.load(..., allow_pickle=True)``, which would run any code a crafted file names.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from sketch_env.datasets.base import PhotoRecord, SketchDataset, SketchRecord, stable_fraction
from sketch_env.errors import ArgumentError, DataFormatError, SketchError
from sketch_env.limits import MAX_MEMBER_BYTES, MAX_SKETCH_POINTS, check_bound, check_zip_member, read_bytes_bounded
from sketch_env.safe_pickle import safe_loads
from sketch_env.sketch import Sketch

__all__ = ["QuickDrawDataset"]

FRAME = (256.0, 256.0)
_NPZ_SPLITS = (("train", "train"), ("valid", "train"), ("test", "test"))


def _split(instance: str) -> str:
    return "test" if stable_fraction(instance, "quickdraw") < 0.1 else "train"


def _drawing_strokes(drawing: object) -> list[np.ndarray]:
    """``[[xs, ys], ...]`` (a third list of times, as in the raw format, is ignored) -> ``(n, 2)`` arrays."""
    if not isinstance(drawing, list):
        raise ArgumentError(f"'drawing' must be a list of strokes, got {type(drawing).__name__}")
    strokes = []
    for i, stroke in enumerate(drawing):
        if not (
            isinstance(stroke, list) and len(stroke) in (2, 3) and all(isinstance(c, list) for c in stroke)
        ):
            raise ArgumentError(f"stroke {i} must be [[x...], [y...]]")
        xs, ys = stroke[0], stroke[1]
        if len(xs) != len(ys) or not all(type(v) in (int, float) for v in xs + ys):
            raise ArgumentError(f"stroke {i} must have as many numeric x as y coordinates")
        strokes.append(np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)]))
    if sum(len(s) for s in strokes) > MAX_SKETCH_POINTS:
        raise ArgumentError(f"the drawing has more than {MAX_SKETCH_POINTS:,} points (sketch_env.limits)")
    return strokes


def _read_npy_member(zf: zipfile.ZipFile, member: str, path: Path, max_bytes: int = MAX_MEMBER_BYTES) -> np.ndarray:
    # the uncompressed size is announced in the zip directory: checked before inflating (a 1.5 MB member can
    # inflate to 1.5 GB)
    check_zip_member(path, zf.getinfo(member), max_bytes)
    fp = io.BytesIO(zf.read(member))
    version = np.lib.format.read_magic(fp)
    if version not in ((1, 0), (2, 0)):
        raise ArgumentError(f"{member} has .npy format version {version}, expected 1.0 or 2.0")
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    _shape, _fortran_order, dtype = read_header(fp)
    if not dtype.hasobject:
        fp.seek(0)
        return np.lib.format.read_array(fp, allow_pickle=False)
    arr = safe_loads(fp.read(), f"{path}:{member}")  # an object .npy is the array's pickle after the header
    if not isinstance(arr, np.ndarray):
        raise ArgumentError(f"{member} holds a {type(arr).__name__}, not an array")
    return arr


class QuickDrawDataset(SketchDataset):
    """QuickDraw sketches (category labels only; no photos, so no instance retrieval).

    Args:
        root: a folder searched recursively for ``*.ndjson`` and ``*.npz``, or one such file.
        scheme: only ``"published"`` (the npz files' own split; a hash split for ndjson).
        max_per_file: read at most this many sketches from each ndjson file and from each of an npz
            file's ``train`` / ``valid`` / ``test`` arrays (QuickDraw classes hold 100,000+ sketches).
    """

    name = "quickdraw"
    schemes = ("published",)
    has_photos = False

    def __init__(self, root: str | Path, scheme: str | None = None, max_per_file: int | None = None) -> None:
        super().__init__(scheme)
        if max_per_file is not None and max_per_file < 1:
            raise ArgumentError(f"max_per_file must be a positive integer or None, got {max_per_file}")
        self.root = Path(root)
        self.max_per_file = max_per_file
        if self.root.is_file():
            self.files = [self.root]
        elif self.root.is_dir():
            self.files = sorted([*self.root.rglob("*.ndjson"), *self.root.rglob("*.npz")])
        else:
            raise DataFormatError(self.root, "QuickDraw root does not exist")
        if not self.files:
            raise DataFormatError(self.root, "no *.ndjson or *.npz files under this folder")

    def _load_sketches(self) -> list[SketchRecord]:
        records: list[SketchRecord] = []
        for path in self.files:
            if path.suffix == ".npz":
                records.extend(self._read_npz(path))
            else:
                records.extend(self._read_ndjson(path))
        return records

    def _read_ndjson(self, path: Path) -> list[SketchRecord]:
        records = []
        try:
            lines = read_bytes_bounded(path).decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataFormatError(path, f"cannot read as UTF-8 text ({exc})") from exc
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if self.max_per_file is not None and len(records) >= self.max_per_file:
                break
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ArgumentError(f"expected a JSON object, got {type(obj).__name__}")
                sketch = Sketch.from_strokes(_drawing_strokes(obj.get("drawing")), frame=FRAME)
            except RecursionError:
                raise DataFormatError(path, "JSON nested too deep to be a drawing", item=f"line {n}") from None
            except (
                ValueError,
                TypeError,
                OverflowError,
                SketchError,
            ) as exc:  # JSONDecodeError is a ValueError
                raise DataFormatError(path, str(exc), item=f"line {n}") from exc
            key_id = obj.get("key_id")
            instance = str(key_id) if key_id not in (None, "") else f"{path.name}:{n}"
            category = str(obj.get("word") or path.stem)
            style = str(obj.get("countrycode") or "")
            records.append(SketchRecord(sketch, instance, category, style, _split(instance), f"{path}:{n}"))
        return records

    def _read_npz(self, path: Path) -> list[SketchRecord]:
        try:
            with zipfile.ZipFile(path) as zf:
                arrays = {
                    key: _read_npy_member(zf, f"{key}.npy", path)
                    for key, _ in _NPZ_SPLITS
                    if f"{key}.npy" in zf.namelist()
                }
        except DataFormatError:
            raise
        except Exception as exc:  # zip, header and array errors all mean a bad file
            raise DataFormatError(path, f"not a readable npz file ({type(exc).__name__}: {exc})") from exc
        if not arrays:
            raise DataFormatError(path, "sketch-rnn npz must hold 'train', 'valid' or 'test' arrays")
        records = []
        for key, split in _NPZ_SPLITS:
            seqs = arrays.get(key)
            if seqs is None:
                continue
            if seqs.ndim == 0:
                raise DataFormatError(path, "must be an array of stroke-3 sketches", key)
            for i, seq in enumerate(seqs[: self.max_per_file]):
                item = f"{key}[{i}]"
                if not isinstance(seq, np.ndarray) or seq.dtype.kind not in "biuf":
                    raise DataFormatError(path, "each sketch must be a numeric (N, 3) stroke-3 array", item)
                check_bound(path, len(seq), MAX_SKETCH_POINTS, "the sketch's number of points", item)
                try:
                    sketch = Sketch.from_stroke3(seq, frame="fit")
                except SketchError as exc:
                    raise DataFormatError(path, str(exc), item) from exc
                records.append(
                    SketchRecord(sketch, f"{path.stem}/{item}", path.stem, "", split, f"{path} [{item}]")
                )
        return records

    def _load_photos(self) -> list[PhotoRecord]:
        return []

    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        raise ArgumentError("QuickDraw has no photos: it serves category-level work, not instance retrieval")
