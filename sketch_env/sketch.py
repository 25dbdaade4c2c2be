"""The canonical vector sketch.

A :class:`Sketch` is an ordered sequence of absolute points in a normalised frame plus the indices at
which strokes end. Every loader converts its published format into this one representation, and every
renderer and schedule reads only this one.

Normalised frame
    ``x`` grows to the right and ``y`` grows downwards (image convention); the source canvas is mapped
    into the unit square ``[0, 1] x [0, 1]`` by dividing by its longer side and centring the shorter side,
    so the aspect ratio is kept and sketches drawn on the same canvas keep their relative placement
    (which matters for fine-grained retrieval: a QMUL sketch sits where the photo's object sits).

Stroke ends
    ``stroke_ends[i]`` is the exclusive end index of stroke ``i`` in ``points``; strokes are contiguous,
    so stroke ``i`` is ``points[stroke_ends[i - 1]:stroke_ends[i]]`` (with ``stroke_ends[-1] == 0``).
    This is the pen-up flag of the stroke-3 and QMUL layouts written as indices.

Documented treatment of degenerate input (never a silent wrong raster)
    * NaN or infinite coordinates: :class:`SketchError`.
    * A sketch with no points (or only empty strokes): :class:`SketchError`.
    * Empty strokes (a stroke with zero points, e.g. an empty SVG path or two consecutive pen-ups):
      dropped. They hold no ink, so the raster is unchanged; the stroke count seen by stroke schedules
      is the number of non-empty strokes.
    * Single-point strokes (a tap): kept, and rendered as a dot of the line width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sketch_env.errors import ArgumentError, SketchError

__all__ = ["Sketch", "normalise_frame"]


def normalise_frame(points: np.ndarray, frame: tuple[float, float] | str) -> np.ndarray:
    """Map absolute points of a source canvas into the unit square.

    ``frame=(width, height)`` maps ``p -> (p + offset) / max(width, height)`` with the shorter side
    centred; ``frame="fit"`` uses the points' own bounding box (for formats with no canvas, such as
    sketch-rnn stroke-3 data), centred, with a degenerate box (a single dot) mapped to the centre.
    """
    points = np.asarray(points, dtype=np.float64)
    if isinstance(frame, str):
        if frame != "fit":
            raise ArgumentError(f"frame must be (width, height) or 'fit', got {frame!r}")
        lo = points.min(axis=0)
        hi = points.max(axis=0)
        extent = hi - lo
        scale = float(extent.max())
        if scale <= 0.0:
            return np.full_like(points, 0.5)
        return (points - lo + (scale - extent) / 2.0) / scale
    width, height = (float(frame[0]), float(frame[1]))
    if not (width > 0 and height > 0):
        raise ArgumentError(f"frame sides must be positive, got {frame!r}")
    scale = max(width, height)
    offset = np.array([(scale - width) / 2.0, (scale - height) / 2.0])
    return (points + offset) / scale


def _denormalise_frame(points: np.ndarray, frame: tuple[float, float]) -> np.ndarray:
    width, height = (float(frame[0]), float(frame[1]))
    scale = max(width, height)
    offset = np.array([(scale - width) / 2.0, (scale - height) / 2.0])
    return points * scale - offset


@dataclass(frozen=True, eq=False)
class Sketch:
    """A vector sketch: absolute ``points`` (N, 2) in the normalised frame and ``stroke_ends`` (K,).

    Build one through the ``from_*`` constructors, which validate and normalise; the direct
    constructor validates too. Arrays are stored read-only so a sketch can be shared safely.
    """

    points: np.ndarray
    stroke_ends: np.ndarray

    def __post_init__(self) -> None:
        raw = np.asarray(self.points)
        with np.errstate(over="ignore", invalid="ignore"):
            points = np.ascontiguousarray(raw, dtype=np.float32)
        if raw.dtype != np.float32 and raw.size and np.isfinite(raw).all() and not np.isfinite(points).all():
            raise SketchError(
                f"coordinates out of float32 range after normalising (max |value| {np.abs(raw).max():.3g})"
            )
        ends = np.ascontiguousarray(self.stroke_ends, dtype=np.int64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise SketchError(f"points must have shape (N, 2), got {points.shape}")
        if len(points) == 0:
            raise SketchError("empty sketch: it has no points")
        if not np.isfinite(points).all():
            bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
            raise SketchError(f"non-finite coordinate at point {bad}: {points[bad].tolist()}")
        if ends.ndim != 1 or len(ends) == 0:
            raise SketchError("stroke_ends must be a non-empty 1-D array")
        if ends[-1] != len(points) or ends[0] <= 0 or (np.diff(ends) <= 0).any():
            raise SketchError(
                f"stroke_ends must be strictly increasing, start above 0 and end at N={len(points)}; "
                f"got {ends.tolist()[:10]}{'...' if len(ends) > 10 else ''}"
            )
        points.setflags(write=False)
        ends.setflags(write=False)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "stroke_ends", ends)

    # ------------------------------------------------------------------ basic properties
    @property
    def num_points(self) -> int:
        return int(len(self.points))

    @property
    def num_strokes(self) -> int:
        return int(len(self.stroke_ends))

    @property
    def stroke_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.stroke_ends[:-1]])

    @property
    def pen(self) -> np.ndarray:
        """Pen-up flag per point: 1 on the last point of each stroke (the QMUL / stroke-3 convention)."""
        pen = np.zeros(self.num_points, dtype=np.int8)
        pen[self.stroke_ends - 1] = 1
        return pen

    def __len__(self) -> int:
        return self.num_points

    def __repr__(self) -> str:
        return f"Sketch(num_points={self.num_points}, num_strokes={self.num_strokes})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return np.array_equal(self.stroke_ends, other.stroke_ends) and np.array_equal(
            self.points, other.points
        )

    def allclose(self, other: Sketch, atol: float = 1e-5) -> bool:
        return np.array_equal(self.stroke_ends, other.stroke_ends) and np.allclose(
            self.points, other.points, atol=atol
        )

    def prefix(self, num_points: int) -> Sketch:
        """The partial sketch made of the first ``num_points`` points (1 <= num_points <= N)."""
        if not 1 <= num_points <= self.num_points:
            raise ArgumentError(f"num_points must be in [1, {self.num_points}], got {num_points}")
        ends = self.stroke_ends[self.stroke_ends < num_points]
        ends = np.append(ends, num_points)
        return Sketch(self.points[:num_points], ends)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_strokes(
        cls, strokes: Sequence[np.ndarray], frame: tuple[float, float] | str = (1.0, 1.0)
    ) -> Sketch:
        """From a list of per-stroke ``(n_i, 2)`` arrays of absolute points in the source ``frame``.

        Empty strokes are dropped (see the module docstring); a sketch whose strokes are all empty
        raises :class:`SketchError`.
        """
        arrays = []
        for i, stroke in enumerate(strokes):
            arr = np.asarray(stroke, dtype=np.float64)
            if arr.size == 0:
                continue
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise SketchError(f"stroke {i} must have shape (n, 2), got {arr.shape}")
            arrays.append(arr)
        if not arrays:
            raise SketchError("empty sketch: no stroke has any point")
        ends = np.cumsum([len(a) for a in arrays])
        points = np.concatenate(arrays, axis=0)
        _check_finite(points)
        return cls(normalise_frame(points, frame), ends)

    @classmethod
    def from_absolute(
        cls, points_xyp: np.ndarray, frame: tuple[float, float] | str = (256.0, 256.0)
    ) -> Sketch:
        """From the QMUL absolute layout: rows ``(x, y, pen)``, pen = 1 on the last point of a stroke.

        The last point always ends a stroke, whatever its flag says.
        """
        arr = np.asarray(points_xyp, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise SketchError(f"absolute (x, y, pen) array must have shape (N, 3), got {arr.shape}")
        if len(arr) == 0:
            raise SketchError("empty sketch: it has no points")
        _check_finite(arr)
        ends = np.flatnonzero(arr[:, 2] > 0.5) + 1
        if len(ends) == 0 or ends[-1] != len(arr):
            ends = np.append(ends, len(arr))
        return cls(normalise_frame(arr[:, :2], frame), ends)

    @classmethod
    def from_stroke3(
        cls, stroke3: np.ndarray, frame: tuple[float, float] | str = "fit"
    ) -> Sketch:
        """From stroke-3 rows ``(dx, dy, pen)``: absolute points are the cumulative sum of the deltas
        (the first delta is taken from the origin), pen = 1 when the pen lifts after the point.

        sketch-rnn data has no canvas, so the default frame is the bounding box (``"fit"``).
        """
        arr = np.asarray(stroke3, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise SketchError(f"stroke-3 array must have shape (N, 3), got {arr.shape}")
        if len(arr) == 0:
            raise SketchError("empty sketch: it has no points")
        _check_finite(arr)
        absolute = np.column_stack([np.cumsum(arr[:, :2], axis=0), arr[:, 2]])
        return cls.from_absolute(absolute, frame=frame)

    # ------------------------------------------------------------------ conversions
    def to_strokes(self, frame: tuple[float, float] = (1.0, 1.0)) -> list[np.ndarray]:
        """Per-stroke arrays of absolute points in ``frame`` (the inverse of :meth:`from_strokes`)."""
        pts = _denormalise_frame(self.points.astype(np.float64), frame)
        return [pts[s:e] for s, e in zip(self.stroke_starts, self.stroke_ends)]

    def to_absolute(self, frame: tuple[float, float] = (256.0, 256.0)) -> np.ndarray:
        """The QMUL layout: float64 rows ``(x, y, pen)`` in ``frame`` (inverse of :meth:`from_absolute`)."""
        pts = _denormalise_frame(self.points.astype(np.float64), frame)
        return np.column_stack([pts, self.pen.astype(np.float64)])

    def to_stroke3(self, frame: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
        """Stroke-3 rows ``(dx, dy, pen)`` with the first delta from the origin of ``frame``.

        ``Sketch.from_stroke3(s.to_stroke3(frame), frame=frame)`` gives ``s`` back.
        """
        absolute = self.to_absolute(frame)
        deltas = np.diff(absolute[:, :2], axis=0, prepend=np.zeros((1, 2)))
        return np.column_stack([deltas, absolute[:, 2]])


def _check_finite(arr: np.ndarray) -> None:
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise SketchError(f"non-finite coordinate at row {bad}: {arr[bad].tolist()}")
