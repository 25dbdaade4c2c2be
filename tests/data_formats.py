"""Test fixtures written in the published formats the loaders read (QMUL pickle, Sketchy SVG, QuickDraw
ndjson and sketch-rnn npz), never by the loaders' own writers, plus crafted bad payloads."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import cv2
import numpy as np


def qmul_array(strokes: list[list[tuple[float, float]]]) -> np.ndarray:
    """QMUL layout: absolute (x, y, pen) float64 rows, pen = 1 on the last point of every stroke."""
    rows = []
    for stroke in strokes:
        for j, (x, y) in enumerate(stroke):
            rows.append((x, y, 1.0 if j == len(stroke) - 1 else 0.0))
    return np.array(rows, dtype=np.float64)


QMUL_SKETCHES = {
    # a photo name with underscores, and a worker-id suffix
    "/train/abc_def_1": qmul_array([[(128, 128), (140, 130), (150, 150)], [(40, 200), (60, 210)]]),
    "/train/abc_def_A1YX741QQSMKPS": qmul_array([[(33, 33), (223, 223)]]),
    "/train/2429245009_3": qmul_array([[(50, 60), (70, 80), (90, 100)], [(10, 10)], [(20, 20), (30, 30)]]),
    "/test/xyz_9_1": qmul_array([[(100, 100), (200, 100)]]),
    "/test/xyz_9_2": qmul_array([[(100, 120), (200, 120), (210, 130)]]),
}


QMUL_PHOTOS = ("abc_def", "2429245009", "xyz_9")


def write_qmul(
    root: Path, sketches: dict | None = None, variant: str = "ChairV2", photos: bool = True
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{variant}_Coordinate", "wb") as f:
        pickle.dump(QMUL_SKETCHES if sketches is None else sketches, f)
    if photos:
        (root / "photo").mkdir(exist_ok=True)
        for name in QMUL_PHOTOS:
            img = np.zeros((40, 30, 3), np.uint8)
            img[:] = (255, 0, 0)  # BGR blue
            cv2.imwrite(str(root / "photo" / f"{name}.png"), img)
    return root


SVG_NS = "http://www.w3.org/2000/svg"


# absolute and relative commands; the third path has a second move-to (a pen lift): 4 strokes in all
SVG_MAIN = f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="{SVG_NS}" width="640" height="480" version="1.1">
  <g fill="none" stroke="black">
    <path d="M 0 0 L 640 0"/>
    <path d="m 10 10 l 20 0 h 10 v 10 c 0 5 5 10 10 10 s 10 -5 10 -10 z"/>
    <path d="M100,100 C110,100 120,110 120,120 S140,140 150,140 H200 V200 Z M300 300 L310 300"/>
  </g>
</svg>
"""


def write_jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((24, 32, 3), 200, np.uint8))


NDJSON_OBJECTS = [
    {
        "word": "cat",
        "countrycode": "US",
        "recognized": True,
        "key_id": "5000000000000001",
        "drawing": [[[0, 128, 255], [0, 128, 255]], [[10, 20], [30, 40]]],
    },
    {
        "word": "cat",
        "countrycode": "GB",
        "recognized": False,
        "key_id": "5000000000000002",
        "drawing": [[[5], [6]]],
    },
    {"word": "cat", "countrycode": "", "recognized": True, "drawing": [[[1, 2, 3], [4, 5, 6]]]},
]


NDJSON_TEXT = "\n".join([json.dumps(NDJSON_OBJECTS[0]), "", *map(json.dumps, NDJSON_OBJECTS[1:])]) + "\n"


def object_array(seqs: list[np.ndarray]) -> np.ndarray:
    arr = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):  # item by item: equal shapes must not broadcast into a 3-D array
        arr[i] = s
    return arr


def stroke3(rows: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=np.int16)


NPZ_SPLITS = {
    "train": [
        stroke3([(0, 0, 0), (10, 0, 0), (0, 5, 1), (-5, 0, 1)]),
        stroke3([(3, 3, 0), (4, 4, 1)]),
        stroke3([(1, 0, 0), (1, 0, 0), (1, 0, 1)]),
    ],
    "valid": [stroke3([(0, 0, 0), (2, 2, 1)]), stroke3([(5, 5, 1)])],
    "test": [stroke3([(1, 1, 0), (1, -1, 1), (0, 3, 1)]), stroke3([(7, 0, 1)])],
}


def npz_bytes(splits: dict[str, list[np.ndarray]] | None = None) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: object_array(v) for k, v in (splits or NPZ_SPLITS).items()})
    return buf.getvalue()


class ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def write_tiny_qmul(root: Path, photos: int = 8, per_photo: int = 2, seed: int = 0, variant: str = "ChairV2") -> Path:
    """A tiny dataset in the published QMUL layout with real-photo content: each "photo" is a coloured
    polygon on a white background (an edge map finds its outline), each sketch traces that outline with a
    little jitter, one stroke per edge. ``photos`` photos, 3/4 of them in train, ``per_photo`` sketches each."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "photo").mkdir(exist_ok=True)
    sketches = {}
    for i in range(photos):
        name = f"photo{i:02d}"
        corners = rng.integers(20, 236, size=(int(rng.integers(3, 6)), 2))
        img = np.full((256, 256, 3), 255, np.uint8)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.fillPoly(img, [corners.astype(np.int32)], colour)
        cv2.imwrite(str(root / "photo" / f"{name}.png"), img)
        split = "train" if i < photos * 3 // 4 else "test"
        for k in range(per_photo):
            pts = corners + rng.normal(0, 3, corners.shape)
            strokes = [[tuple(pts[j]), tuple(pts[(j + 1) % len(pts)])] for j in range(len(pts))]
            sketches[f"/{split}/{name}_{k + 1}"] = qmul_array(strokes)
    with open(root / f"{variant}_Coordinate", "wb") as f:
        pickle.dump(sketches, f)
    return root
