"""SVG path data (the ``d`` attribute) to sampled polylines.

Handles every path command that occurs in KanjiVG and Sketchy: ``M m L l H h V v C c S s Z z``
(plus ``Q q T t`` for completeness). Curves and lines are sampled so that consecutive points are at most
``step`` apart (in the path's own units): the point-count schedule of the papers then advances at a
roughly constant speed along the ink, whatever mix of long lines and short curves a stroke is made of.

Each ``M``/``m`` starts a new sub-path; the caller decides whether a sub-path is a stroke (it is in both
KanjiVG, one path per stroke, and Sketchy, where a second ``M`` in a path is a pen lift).
"""

from __future__ import annotations

import re

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = ["PathSyntaxError", "parse_path", "sample_path"]

_TOKEN = re.compile(
    r"([MmLlHhVvCcSsQqTtZz])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|([\s,]+)|(.)"
)
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "Z": 0}


class PathSyntaxError(ValueError):
    """Malformed path data; the message says where."""


def _tokenise(d: str) -> list[str | float]:
    tokens: list[str | float] = []
    for m in _TOKEN.finditer(d):
        cmd, num, _space, other = m.groups()
        if cmd is not None:
            tokens.append(cmd)
        elif num is not None:
            tokens.append(float(num))
        elif other is not None:
            raise PathSyntaxError(f"unexpected character {other!r} at offset {m.start()} in path data")
    return tokens


def parse_path(d: str) -> list[list[tuple[str, tuple[float, ...]]]]:
    """Parse path data into sub-paths of absolute segments.

    Returns a list of sub-paths; each is a list of ``(kind, coords)`` with kind ``"M"`` (start point),
    ``"L"`` (line to), ``"C"`` (cubic: c1, c2, end) or ``"Q"`` (quadratic: c, end), all absolute.
    """
    tokens = _tokenise(d)
    subpaths: list[list[tuple[str, tuple[float, ...]]]] = []
    current: list[tuple[str, tuple[float, ...]]] | None = None
    x = y = 0.0
    start_x = start_y = 0.0
    prev_cubic_ctrl: tuple[float, float] | None = None
    prev_quad_ctrl: tuple[float, float] | None = None
    i = 0
    cmd: str | None = None
    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, str):
            cmd = tok
            i += 1
            if cmd in "Zz":
                if current is None:
                    raise PathSyntaxError(f"'{cmd}' before any move-to")
                if (x, y) != (start_x, start_y):
                    current.append(("L", (start_x, start_y)))
                x, y = start_x, start_y
                prev_cubic_ctrl = prev_quad_ctrl = None
                continue
        elif cmd is None:
            raise PathSyntaxError("path data must start with a command, found a number")
        assert cmd is not None
        upper = cmd.upper()
        arity = _ARITY[upper]
        if arity == 0:
            raise PathSyntaxError(f"numbers after '{cmd}', which takes none")
        args = tokens[i : i + arity]
        if len(args) < arity or not all(isinstance(a, float) for a in args):
            raise PathSyntaxError(f"'{cmd}' needs {arity} numbers at token {i}, got {args!r}")
        i += arity
        vals = [float(a) for a in args]  # type: ignore[arg-type]
        rel = cmd.islower()
        if upper == "M":
            x, y = (x + vals[0], y + vals[1]) if rel else (vals[0], vals[1])
            start_x, start_y = x, y
            current = [("M", (x, y))]
            subpaths.append(current)
            prev_cubic_ctrl = prev_quad_ctrl = None
            # further coordinate pairs after a move-to are implicit line-tos
            cmd = "l" if rel else "L"
            continue
        if current is None:
            raise PathSyntaxError(f"'{cmd}' before any move-to")
        if upper == "L":
            x, y = (x + vals[0], y + vals[1]) if rel else (vals[0], vals[1])
            current.append(("L", (x, y)))
            prev_cubic_ctrl = prev_quad_ctrl = None
        elif upper == "H":
            x = x + vals[0] if rel else vals[0]
            current.append(("L", (x, y)))
            prev_cubic_ctrl = prev_quad_ctrl = None
        elif upper == "V":
            y = y + vals[0] if rel else vals[0]
            current.append(("L", (x, y)))
            prev_cubic_ctrl = prev_quad_ctrl = None
        elif upper in ("C", "S"):
            if upper == "C":
                c1 = (x + vals[0], y + vals[1]) if rel else (vals[0], vals[1])
                rest = vals[2:]
            else:
                # S reflects the previous cubic's second control point about the current point
                c1 = (2 * x - prev_cubic_ctrl[0], 2 * y - prev_cubic_ctrl[1]) if prev_cubic_ctrl else (x, y)
                rest = vals
            c2 = (x + rest[0], y + rest[1]) if rel else (rest[0], rest[1])
            end = (x + rest[2], y + rest[3]) if rel else (rest[2], rest[3])
            current.append(("C", (*c1, *c2, *end)))
            prev_cubic_ctrl = c2
            prev_quad_ctrl = None
            x, y = end
        elif upper in ("Q", "T"):
            if upper == "Q":
                c = (x + vals[0], y + vals[1]) if rel else (vals[0], vals[1])
                rest = vals[2:]
            else:
                c = (2 * x - prev_quad_ctrl[0], 2 * y - prev_quad_ctrl[1]) if prev_quad_ctrl else (x, y)
                rest = vals
            end = (x + rest[0], y + rest[1]) if rel else (rest[0], rest[1])
            current.append(("Q", (*c, *end)))
            prev_quad_ctrl = c
            prev_cubic_ctrl = None
            x, y = end
    return subpaths


def _as_cubic(start: np.ndarray, kind: str, coords: tuple[float, ...]) -> np.ndarray:
    """Control points (4, 2) of the cubic equal to a line, quadratic or cubic segment (degree elevation)."""
    if kind == "C":
        return np.array([start, coords[0:2], coords[2:4], coords[4:6]], dtype=np.float64)
    end = np.asarray(coords[-2:], dtype=np.float64)
    if kind == "L":
        return np.array([start, start + (end - start) / 3, start + 2 * (end - start) / 3, end])
    c = np.asarray(coords[0:2], dtype=np.float64)  # "Q"
    return np.array([start, start + 2 * (c - start) / 3, end + 2 * (c - end) / 3, end])


def sample_path(d: str, step: float, max_points: int | None = None) -> list[np.ndarray]:
    """Sample path data into polylines, one ``(n, 2)`` float64 array per sub-path.

    Each segment is cut into ``ceil(L / step)`` equal parameter intervals, where ``L`` (the length of
    its control polygon) bounds the curve's length, so consecutive points are at most about ``step``
    apart. All segments of a sub-path are evaluated at once (Bernstein form). A sub-path that is a lone
    move-to gives one point. With ``max_points``, path data that would sample more points is a ValueError,
    raised before the points are allocated.
    """
    if not step > 0:
        raise ArgumentError(f"step must be positive, got {step}")
    polylines = []
    total = 0
    for sub in parse_path(d):
        start = np.array(sub[0][1], dtype=np.float64)
        if len(sub) == 1:
            polylines.append(start[None])
            continue
        ctrl = np.empty((len(sub) - 1, 4, 2))
        cursor = start
        for j, (kind, coords) in enumerate(sub[1:]):
            ctrl[j] = _as_cubic(cursor, kind, coords)
            cursor = ctrl[j, 3]
        lengths = np.linalg.norm(np.diff(ctrl, axis=1), axis=2).sum(axis=1)
        if not np.isfinite(lengths).all():
            raise ArgumentError("path coordinates are not finite")
        wanted = np.maximum(1.0, np.ceil(lengths / step))
        total += 1 + float(wanted.sum())
        if max_points is not None and total > max_points:
            raise ArgumentError(f"the path samples to more than {max_points:,} points (step {step:g})")
        counts = wanted.astype(np.int64)
        seg = np.repeat(np.arange(len(ctrl)), counts)
        # parameter of each sample within its segment: k / n for k = 1..n
        offsets = np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
        t = ((offsets + 1) / counts[seg])[:, None]
        u = 1.0 - t
        c = ctrl[seg]
        pts = u**3 * c[:, 0] + 3 * u**2 * t * c[:, 1] + 3 * u * t**2 * c[:, 2] + t**3 * c[:, 3]
        polylines.append(np.concatenate([start[None], pts]))
    return polylines
