"""The frames of the envs' ``render_mode="rgb_array"`` (and ``"human"``): the canvas beside the top-k photos."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from sketch_env.envs.data import RetrievalData
from sketch_env.render import render_progressive

__all__ = ["render_retrieval", "frame_shape", "compose_frame", "HumanWindow"]

CELL = 128
PAD = 6
HEADER = 24
GREEN = (0, 170, 0)
GREY = (170, 170, 170)


def _framed(canvas: np.ndarray, image: np.ndarray, x: int, y: int, colour: tuple[int, int, int], width: int) -> None:
    canvas[y : y + CELL, x : x + CELL] = image
    cv2.rectangle(canvas, (x - width + 1, y - width + 1), (x + CELL + width - 2, y + CELL + width - 2), colour, width)


def frame_shape(k: int) -> tuple[int, int, int]:
    """The shape of every frame of an env that shows ``k`` photos: ``(HEADER + CELL + 2 PAD, width, 3)``, the
    sketch, the ``k`` best photos and one more slot for the true photo when it is not among them."""
    return HEADER + CELL + 2 * PAD, PAD + (k + 2) * (CELL + PAD) + CELL // 2, 3


def compose_frame(dataset: Any, photo_records: list, raster: np.ndarray, topk: list[int], true: int, k: int,
                  text: str) -> np.ndarray:
    """An RGB uint8 frame of :func:`frame_shape` ``(k)``: ``raster`` (the canvas, grey uint8, any size) in the
    first cell, the photos ``topk`` (at most ``k``) of the last ranking, and after a gap the ``true`` photo
    when it is not among them, framed green; ``text`` above. Empty ``topk``: only the canvas."""
    raster = cv2.resize(raster, (CELL, CELL), interpolation=cv2.INTER_NEAREST)
    topk = list(topk)[:k]
    extra = [true] if topk and true not in topk else []
    canvas = np.full(frame_shape(k), 255, dtype=np.uint8)
    _framed(canvas, np.repeat(raster[..., None], 3, axis=2), PAD, HEADER, GREY, 1)
    records = [photo_records[p] for p in topk + extra]
    photos = dataset.load_photos(records, CELL) if records else []
    x0 = PAD + CELL + PAD + CELL // 4
    for j, p in enumerate(topk):
        is_true = p == true
        _framed(canvas, photos[j], x0 + j * (CELL + PAD), HEADER, GREEN if is_true else GREY, 3 if is_true else 1)
    if extra:  # the last slot, after a gap
        _framed(canvas, photos[-1], x0 + k * (CELL + PAD) + CELL // 4, HEADER, GREEN, 3)
    cv2.putText(canvas, text, (PAD, HEADER - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
    return canvas


def render_retrieval(data: RetrievalData, sketch: int, t: int, info: dict[str, Any] | None, k: int) -> np.ndarray:
    """The retrieval env's frame (:func:`compose_frame`), the same size at every step and in every episode (a
    video recorder and frame stacking need that): the partial sketch the agent last saw (as the backend
    renders it), the ``k`` best photos of the last ranking and the true photo. Before the first step the
    photo slots are empty."""
    steps = data.steps
    shown = min(max(t - 1, 0), steps - 1) if info is not None else 0
    record = data.sketch_records[sketch]
    cuts = data.schedule.cuts(record.sketch)
    raster = render_progressive(record.sketch, cuts[shown : shown + 1], data.render_config)[0]
    true = int(data.photo_index[sketch])
    text = f"step {shown + 1}/{steps}"
    if info is not None:
        tau = info.get("kendall_tau", np.nan)
        text += f"  rank {int(info['rank'])}/{data.gallery_size}" + ("" if np.isnan(tau) else f"  tau {tau:.3f}")
    topk = [] if info is None else [int(p) for p in info["topk"]]
    return compose_frame(data.dataset, data.photo_records, raster, topk, true, k, text)


class HumanWindow:
    """``render_mode="human"``: frames shown in a matplotlib window, ``fps`` a second. On a machine without a
    display (a non-interactive backend such as Agg) nothing is shown."""

    def __init__(self, fps: float) -> None:
        self.fps = float(fps)
        self._figure = self._image = None

    def show(self, frame: np.ndarray) -> None:
        import matplotlib
        import matplotlib.pyplot as plt

        if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
            return  # no display: nothing to show
        if self._figure is None:
            self._figure, ax = plt.subplots(figsize=(frame.shape[1] / 100, frame.shape[0] / 100))
            ax.axis("off")
            self._image = ax.imshow(frame)
        else:
            self._image.set_data(frame)
        self._figure.canvas.draw_idle()
        plt.pause(1.0 / self.fps)

    def close(self) -> None:
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = self._image = None
