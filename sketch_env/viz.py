"""Pictures for people: contact sheets of progressive sketches beside their photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sketch_env.cache import atomic_path
from sketch_env.datasets.base import SketchDataset
from sketch_env.errors import ArgumentError
from sketch_env.render import RenderConfig, render_progressive_batch
from sketch_env.schedule import PointSchedule, Schedule

__all__ = ["contact_sheet", "write_png"]


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB or grey uint8 image as PNG, atomically."""
    path = Path(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path


def contact_sheet(
    dataset: SketchDataset,
    split: str = "test",
    rows: int = 8,
    schedule: Schedule = PointSchedule(10),
    size: int = 96,
    seed: int = 0,
) -> np.ndarray:
    """An RGB sheet: one row per sketch, its S partial rasters (black on white) then its photo.

    Rows are ``rows`` sketches of ``split`` drawn with ``seed``; a header gives each column's share of
    the sketch's points, and each row ends with its style label.
    """
    records = dataset.sketches(split)
    if not records:
        raise ArgumentError(f"dataset {dataset.name!r} has no {split!r} sketches")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(records), size=min(rows, len(records)), replace=False).tolist())
    picked = [records[i] for i in chosen]
    config = RenderConfig(size=size, polarity="black_on_white", antialias=True, line_width=max(1, size // 40))
    rasters = render_progressive_batch([r.sketch for r in picked], schedule, config)
    steps = rasters.shape[1]
    if dataset.has_photos:
        lookup = {p.instance: p for p in dataset.photos(split)}
        photos = dataset.load_photos([lookup[r.instance] for r in picked], size)
    else:
        photos = np.full((len(picked), size, size, 3), 255, np.uint8)

    pad, header, label_w = 4, 20, 90
    cols = steps + 1
    width = cols * (size + pad) + pad + size // 4 + label_w
    height = header + len(picked) * (size + pad) + pad
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in range(steps):
        x = pad + t * (size + pad)
        pct = f"{round(100 * (t + 1) / steps)}%"
        cv2.putText(sheet, pct, (x + 2, header - 6), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    photo_x = pad + steps * (size + pad) + size // 4
    cv2.putText(sheet, "photo", (photo_x + 2, header - 6), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for r, rec in enumerate(picked):
        y = header + r * (size + pad)
        for t in range(steps):
            x = pad + t * (size + pad)
            sheet[y : y + size, x : x + size] = rasters[r, t][..., None]
            cv2.rectangle(sheet, (x - 1, y - 1), (x + size, y + size), (200, 200, 200), 1)
        sheet[y : y + size, photo_x : photo_x + size] = photos[r]
        cv2.rectangle(sheet, (photo_x - 1, y - 1), (photo_x + size, y + size), (120, 120, 220), 1)
        label = rec.style.encode("ascii", "replace").decode()[:12]
        cv2.putText(sheet, label, (photo_x + size + 6, y + size // 2), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    return sheet
