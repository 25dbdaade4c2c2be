"""Progressive schedules: which prefix of a sketch each step of an episode shows.

A schedule maps a sketch to ``cuts``, an int array of shape ``(S,)``: step ``t`` (0-based) shows the
first ``cuts[t]`` points. Cuts are non-decreasing and the last cut is the whole sketch, so each step's
partial sketch contains all ink of the previous step and the final step is the complete sketch.

* :class:`PointSchedule` (the papers' schedule): ``cuts = round(linspace(0, N, S + 1)[1:])`` over the
  N points, as in the authors' released code (S = 17 there; the papers' plots and baselines use 5 %
  steps, S = 20, the default here). NumPy rounding (half to even) is used, as in that code.

  *Fewer points than steps* (N < S): the formula yields repeated cuts and, for the first steps, cuts of
  0 (an empty canvas). Here every cut is raised to at least 1, so every step shows at least the first
  point (a dot) and the episode keeps exactly S steps; steps whose cut repeats show the same partial
  sketch again. With N >= S every cut is distinct and at least 1, so nothing changes.
* :class:`StrokeSchedule`: cuts fall only on stroke ends. With ``steps=None`` there is one step per
  stroke (S = number of strokes, so episodes differ in length). With ``steps=S`` step ``t`` shows the
  first ``ceil((t + 1) * K / S)`` of the K strokes: fixed-length episodes made of whole strokes (strokes
  repeat when K < S).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sketch_env.errors import ArgumentError
from sketch_env.sketch import Sketch

__all__ = ["SCHEDULES", "Schedule", "PointSchedule", "StrokeSchedule", "make_schedule", "point_cuts"]


def point_cuts(num_points: int, steps: int) -> np.ndarray:
    """``max(1, round(linspace(0, N, S + 1)[1:]))``: the point-count cuts of the authors' code."""
    if steps < 1:
        raise ArgumentError(f"steps must be >= 1, got {steps}")
    if num_points < 1:
        raise ArgumentError(f"num_points must be >= 1, got {num_points}")
    cuts = np.round(np.linspace(0, num_points, steps + 1)[1:]).astype(np.int64)
    return np.maximum(cuts, 1)


@dataclass(frozen=True)
class Schedule:
    """Base class; ``name`` and ``steps`` identify it in cache keys and env specs."""

    steps: int | None = 20

    name = "base"

    def cuts(self, sketch: Sketch) -> np.ndarray:
        raise NotImplementedError

    def num_steps(self, sketch: Sketch) -> int:
        return len(self.cuts(sketch))

    def key(self) -> str:
        return f"{self.name}:{self.steps}"


@dataclass(frozen=True)
class PointSchedule(Schedule):
    """Cut by point count: S equal shares of the points (see the module docstring)."""

    steps: int = 20
    name = "points"

    def __post_init__(self) -> None:
        if self.steps is None or self.steps < 1:
            raise ArgumentError(f"PointSchedule needs steps >= 1, got {self.steps}")

    def cuts(self, sketch: Sketch) -> np.ndarray:
        return point_cuts(sketch.num_points, self.steps)


@dataclass(frozen=True)
class StrokeSchedule(Schedule):
    """Cut on stroke ends: one step per stroke, or S steps of whole strokes (see the module docstring)."""

    steps: int | None = None
    name = "strokes"

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ArgumentError(f"StrokeSchedule needs steps >= 1 or None, got {self.steps}")

    def cuts(self, sketch: Sketch) -> np.ndarray:
        ends = sketch.stroke_ends
        if self.steps is None:
            return ends.copy()
        k = len(ends)
        strokes_shown = np.ceil(np.arange(1, self.steps + 1) * k / self.steps).astype(np.int64)
        return ends[np.clip(strokes_shown, 1, k) - 1]


#: the schedule names :func:`make_schedule` takes
SCHEDULES = ("points", "point", "strokes", "stroke")


def make_schedule(name: str = "points", steps: int | None = 20) -> Schedule:
    """Schedule by name: ``"points"`` (the papers') or ``"strokes"``."""
    if name in ("points", "point"):
        return PointSchedule(steps=20 if steps is None else steps)
    if name in ("strokes", "stroke"):
        return StrokeSchedule(steps=steps)
    raise ArgumentError(f"unknown schedule {name!r}; choose 'points' or 'strokes'")
