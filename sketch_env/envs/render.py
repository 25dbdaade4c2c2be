"""``render_mode="rgb_array"`` of the retrieval env: the partial sketch beside the top-k photos."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from sketch_env.envs.data import RetrievalData
from sketch_env.render import render_progressive

__all__ = ["render_retrieval"]

CELL = 128
PAD = 6
HEADER = 24
GREEN = (0, 170, 0)
GREY = (170, 170, 170)


def _framed(canvas: np.ndarray, image: np.ndarray, x: int, y: int, colour: tuple[int, int, int], width: int) -> None:
    canvas[y : y + CELL, x : x + CELL] = image
    cv2.rectangle(canvas, (x - width + 1, y - width + 1), (x + CELL + width - 2, y + CELL + width - 2), colour, width)


def render_retrieval(data: RetrievalData, sketch: int, t: int, info: dict[str, Any] | None) -> np.ndarray:
    """An RGB uint8 image: the partial sketch the agent last saw (as the backend renders it, upsampled),
    then the top-k photos of the last ranking, the true photo framed green (appended after a gap with its
    rank when it is not among them). Before the first step only the sketch is drawn."""
    steps = data.steps
    shown = min(max(t - 1, 0), steps - 1) if info is not None else 0
    record = data.sketch_records[sketch]
    cuts = data.schedule.cuts(record.sketch)
    raster = render_progressive(record.sketch, cuts[shown : shown + 1], data.render_config)[0]
    raster = cv2.resize(raster, (CELL, CELL), interpolation=cv2.INTER_NEAREST)
    true = int(data.photo_index[sketch])
    topk = [] if info is None else [int(p) for p in info["topk"]]
    extra = [true] if info is not None and true not in topk else []
    cols = 1 + len(topk) + len(extra)
    width = PAD + cols * (CELL + PAD) + (CELL // 4 if extra else 0) + CELL // 4
    canvas = np.full((HEADER + CELL + 2 * PAD, width, 3), 255, dtype=np.uint8)
    _framed(canvas, np.repeat(raster[..., None], 3, axis=2), PAD, HEADER, GREY, 1)
    records = [data.photo_records[p] for p in topk + extra]
    photos = data.dataset.load_photos(records, CELL) if records else []
    x = PAD + CELL + PAD + CELL // 4
    for j, p in enumerate(topk + extra):
        if j == len(topk):
            x += CELL // 4
        is_true = p == true
        _framed(canvas, photos[j], x, HEADER, GREEN if is_true else GREY, 3 if is_true else 1)
        x += CELL + PAD
    font = cv2.FONT_HERSHEY_SIMPLEX
    text = f"step {shown + 1}/{steps}"
    if info is not None:
        tau = info["kendall_tau"]
        text += f"  rank {int(info['rank'])}/{data.gallery_size}" + ("" if np.isnan(tau) else f"  tau {tau:.3f}")
    cv2.putText(canvas, text, (PAD, HEADER - 8), font, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
    return canvas
