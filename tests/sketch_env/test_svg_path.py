"""SVG path data: every command by hand, number syntax, malformed input, and sampling on the curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from sketch_env.svg_path import PathSyntaxError, parse_path, sample_path


def one(d: str):
    """The single sub-path of ``d``."""
    subs = parse_path(d)
    assert len(subs) == 1, subs
    return subs[0]


# ---------------------------------------------------------------------------------------------- sampling
def bezier(ctrl: np.ndarray, t: np.ndarray) -> np.ndarray:
    """De Casteljau evaluation of a Bezier curve of any degree at parameters ``t``."""
    t = np.asarray(t, dtype=np.float64)[:, None, None]
    pts = np.broadcast_to(np.asarray(ctrl, dtype=np.float64), (len(t), *np.shape(ctrl))).copy()
    while pts.shape[1] > 1:
        pts = (1 - t) * pts[:, :-1] + t * pts[:, 1:]
    return pts[:, 0]


def dist_to_curve(pts: np.ndarray, ctrl: np.ndarray, dense: int = 20001) -> np.ndarray:
    curve = bezier(ctrl, np.linspace(0, 1, dense))
    return cKDTree(curve).query(pts)[0]


coord = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


point = st.tuples(coord, coord)


def fmt(*pts) -> str:
    return " ".join(f"{float(x)!r},{float(y)!r}" for x, y in pts)


# ---------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    "d,expected",
    [
        ("M 10 20", [("M", (10, 20))]),
        ("m 10 20", [("M", (10, 20))]),  # a leading relative move-to is from the origin
        ("M 10 20 L 30 40", [("M", (10, 20)), ("L", (30, 40))]),
        ("M 10 20 l 5 -5", [("M", (10, 20)), ("L", (15, 15))]),
        ("m 10 20 l 5 5 l 1 1", [("M", (10, 20)), ("L", (15, 25)), ("L", (16, 26))]),
        ("M 1 2 H 10", [("M", (1, 2)), ("L", (10, 2))]),
        ("M 1 2 h 10 h -3", [("M", (1, 2)), ("L", (11, 2)), ("L", (8, 2))]),
        ("M 1 2 V 10", [("M", (1, 2)), ("L", (1, 10))]),
        ("M 1 2 v 10 v -4", [("M", (1, 2)), ("L", (1, 12)), ("L", (1, 8))]),
        ("M 0 0 C 1 2 3 4 5 6", [("M", (0, 0)), ("C", (1, 2, 3, 4, 5, 6))]),
        ("M 1 1 c 1 2 3 4 5 6", [("M", (1, 1)), ("C", (2, 3, 4, 5, 6, 7))]),
        # S reflects the previous C's second control point (3, 4) about the current point (5, 6)
        (
            "M 0 0 C 1 2 3 4 5 6 S 7 8 9 10",
            [("M", (0, 0)), ("C", (1, 2, 3, 4, 5, 6)), ("C", (7, 8, 7, 8, 9, 10))],
        ),
        # s: relative to (5, 6); reflected control (7, 8); c2 = (5+1, 6+1); end = (5+2, 6+3)
        (
            "M 0 0 C 1 2 3 4 5 6 s 1 1 2 3",
            [("M", (0, 0)), ("C", (1, 2, 3, 4, 5, 6)), ("C", (7, 8, 6, 7, 7, 9))],
        ),
        # S after an S reflects that S's c2
        (
            "M 0 0 C 1 2 3 4 5 6 S 7 8 9 10 S 0 0 11 12",
            [
                ("M", (0, 0)),
                ("C", (1, 2, 3, 4, 5, 6)),
                ("C", (7, 8, 7, 8, 9, 10)),
                ("C", (11, 12, 0, 0, 11, 12)),
            ],
        ),
        # S with no previous cubic: first control point is the current point
        ("M 2 3 S 7 8 9 10", [("M", (2, 3)), ("C", (2, 3, 7, 8, 9, 10))]),
        ("M 2 3 L 4 5 S 7 8 9 10", [("M", (2, 3)), ("L", (4, 5)), ("C", (4, 5, 7, 8, 9, 10))]),
        ("M 0 0 Q 1 2 3 4", [("M", (0, 0)), ("Q", (1, 2, 3, 4))]),
        ("M 1 1 q 1 2 3 4", [("M", (1, 1)), ("Q", (2, 3, 4, 5))]),
        # T reflects the previous Q's control (1, 2) about (3, 4) -> (5, 6)
        ("M 0 0 Q 1 2 3 4 T 9 9", [("M", (0, 0)), ("Q", (1, 2, 3, 4)), ("Q", (5, 6, 9, 9))]),
        ("M 0 0 Q 1 2 3 4 t 1 1", [("M", (0, 0)), ("Q", (1, 2, 3, 4)), ("Q", (5, 6, 4, 5))]),
        # T after T: reflect the implied control (5, 6) about (9, 9) -> (13, 12)
        (
            "M 0 0 Q 1 2 3 4 T 9 9 T 20 0",
            [("M", (0, 0)), ("Q", (1, 2, 3, 4)), ("Q", (5, 6, 9, 9)), ("Q", (13, 12, 20, 0))],
        ),
        # T with no previous quadratic: the control point is the current point
        ("M 2 3 T 9 9", [("M", (2, 3)), ("Q", (2, 3, 9, 9))]),
        # S after a Q and T after a C do not reflect
        ("M 0 0 Q 1 2 3 4 S 7 8 9 10", [("M", (0, 0)), ("Q", (1, 2, 3, 4)), ("C", (3, 4, 7, 8, 9, 10))]),
        ("M 0 0 C 1 2 3 4 5 6 T 9 9", [("M", (0, 0)), ("C", (1, 2, 3, 4, 5, 6)), ("Q", (5, 6, 9, 9))]),
        # Z closes with a line back to the start; nothing added when already there
        ("M 0 0 L 10 0 L 10 10 Z", [("M", (0, 0)), ("L", (10, 0)), ("L", (10, 10)), ("L", (0, 0))]),
        ("M 0 0 L 10 0 L 0 0 z", [("M", (0, 0)), ("L", (10, 0)), ("L", (0, 0))]),
        # after z the current point is the sub-path start, so relative commands start there
        ("M 5 5 L 10 5 z l 0 3", [("M", (5, 5)), ("L", (10, 5)), ("L", (5, 5)), ("L", (5, 8))]),
        (
            "M 5 5 L 10 5 z c 1 1 2 2 3 3",
            [("M", (5, 5)), ("L", (10, 5)), ("L", (5, 5)), ("C", (6, 6, 7, 7, 8, 8))],
        ),
        # Z resets the reflection state: S after Z uses the current point
        (
            "M 0 0 C 1 2 3 4 5 6 Z S 7 8 9 10",
            [("M", (0, 0)), ("C", (1, 2, 3, 4, 5, 6)), ("L", (0, 0)), ("C", (0, 0, 7, 8, 9, 10))],
        ),
    ],
)
def test_commands(d, expected):
    got = one(d)
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        assert a == pytest.approx(b)


def test_implicit_line_tos_after_move_to():
    assert one("M 0 0 10 10 20 0") == [("M", (0, 0)), ("L", (10, 10)), ("L", (20, 0))]
    assert one("m 1 1 2 2 3 3") == [("M", (1, 1)), ("L", (3, 3)), ("L", (6, 6))]
    # an implicit command then an explicit one
    assert one("M 0 0 1 1 H 5") == [("M", (0, 0)), ("L", (1, 1)), ("L", (5, 1))]


def test_repeated_arguments_repeat_the_command():
    assert one("M 0 0 L 1 1 2 2") == [("M", (0, 0)), ("L", (1, 1)), ("L", (2, 2))]
    assert one("M 0 0 l 1 1 2 2") == [("M", (0, 0)), ("L", (1, 1)), ("L", (3, 3))]
    assert one("M 0 0 h 1 2 3") == [("M", (0, 0)), ("L", (1, 0)), ("L", (3, 0)), ("L", (6, 0))]
    assert one("M 0 0 c 1 1 2 2 3 3 1 1 2 2 3 3") == [
        ("M", (0, 0)),
        ("C", (1, 1, 2, 2, 3, 3)),
        ("C", (4, 4, 5, 5, 6, 6)),
    ]
    # a repeated S reflects the previous repetition
    assert one("M 0 0 S 1 1 2 2 3 3 4 4")[2] == ("C", (3, 3, 3, 3, 4, 4))


def test_multiple_subpaths():
    subs = parse_path("M 0 0 L 1 1 M 5 5 L 6 6 m 1 0 l 0 1")
    assert subs == [
        [("M", (0, 0)), ("L", (1, 1))],
        [("M", (5, 5)), ("L", (6, 6))],
        [("M", (7, 6)), ("L", (7, 7))],  # m is relative to the end of the previous sub-path
    ]
    # m after z is relative to the closed sub-path's start
    subs = parse_path("M 5 5 L 9 5 z m 1 1 l 1 0")
    assert subs[1] == [("M", (6, 6)), ("L", (7, 6))]
    # a lone move-to is a sub-path of its own
    assert parse_path("M 1 1 M 2 2 L 3 3") == [[("M", (1, 1))], [("M", (2, 2)), ("L", (3, 3))]]


def test_empty_path_data():
    assert parse_path("") == []
    assert parse_path("  \n\t ") == []
    assert sample_path("", 1.0) == []


@pytest.mark.parametrize(
    "d,point",
    [
        ("M1.5.5", (1.5, 0.5)),
        ("M-1-2", (-1, -2)),
        ("M.5.5", (0.5, 0.5)),
        ("M-.5-.5", (-0.5, -0.5)),
        ("M+1+2", (1, 2)),
        ("M1e2 2E-1", (100, 0.2)),
        ("M1e+2,3.5e1", (100, 35)),
        ("M1.5e1-2e-1", (15, -0.2)),
        ("M1.-2.", (1, -2)),
        ("M 0010 , 007", (10, 7)),
        ("M\n1\t,\r2", (1, 2)),
    ],
)
def test_number_syntax(d, point):
    assert one(d) == [("M", point)]


def test_numbers_run_together_in_a_curve():
    # KanjiVG style: commas, signs and dots as separators
    assert one("M31.5,23.13c0.09,1.06-0.3,2.81-0.78,3.85") == [
        ("M", (31.5, 23.13)),
        ("C", pytest.approx((31.59, 24.19, 31.2, 25.94, 30.72, 26.98))),
    ]


@pytest.mark.parametrize(
    "d",
    [
        "10 10",  # starts with a number
        "L 1 1",  # no move-to
        "Z",  # close before move-to
        "H 3",
        "M 1",  # too few numbers
        "M 0 0 L 1",
        "M 0 0 C 1 2 3 4 5",
        "M 0 0 L 1 1 2",  # trailing odd number
        "M 0 0 Z 5",  # numbers after Z
        "M 0 0 L 1 L 2 2",  # command in the middle of arguments
        "M 0 0 A 1 1 0 0 1 2 2",  # arcs are not supported: an unexpected character
        "M 0 0 X 1",
        "M 0 0 L 1e 2",  # incomplete exponent
        "M 0 0 L 1 # 2",
        "M 0 0 L 1 1 ;",
    ],
)
def test_malformed_raises(d):
    with pytest.raises(PathSyntaxError):
        parse_path(d)
    with pytest.raises(PathSyntaxError):
        sample_path(d, 1.0)


def test_path_syntax_error_is_value_error_and_says_where():
    assert issubclass(PathSyntaxError, ValueError)
    with pytest.raises(PathSyntaxError, match="offset"):
        parse_path("M 0 0 L 1 # 2")


def test_bezier_helper_known_values():
    # a quadratic at t = 1/2: (P0 + 2 P1 + P2) / 4; a cubic: (P0 + 3 P1 + 3 P2 + P3) / 8
    np.testing.assert_allclose(bezier([[0, 0], [2, 4], [4, 0]], [0.5]), [[2, 2]])
    np.testing.assert_allclose(bezier([[0, 0], [0, 8], [8, 8], [8, 0]], [0.5]), [[4, 6]])


def test_line_sampling_known_values():
    (pts,) = sample_path("M 0 0 L 10 0", 1.0)
    np.testing.assert_allclose(pts, np.column_stack([np.arange(11), np.zeros(11)]))
    (pts,) = sample_path("M 0 0 L 10 0", 3.0)  # ceil(10 / 3) = 4 intervals of 2.5
    np.testing.assert_allclose(pts[:, 0], [0, 2.5, 5, 7.5, 10])
    (pts,) = sample_path("M 0 0 L 10 0", 100.0)  # at least one interval
    np.testing.assert_allclose(pts, [[0, 0], [10, 0]])
    (pts,) = sample_path("M 0 0 H 3 V 4", 1.0)
    np.testing.assert_allclose(pts, [[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]])


def test_lone_move_to_gives_one_point_and_subpaths_are_separate():
    out = sample_path("M 1 1 M 2 2 L 4 2", 1.0)
    assert len(out) == 2
    np.testing.assert_allclose(out[0], [[1, 1]])
    np.testing.assert_allclose(out[1], [[2, 2], [3, 2], [4, 2]])
    assert all(a.dtype == np.float64 and a.ndim == 2 and a.shape[1] == 2 for a in out)


def test_closed_path_sampling_returns_to_start():
    (pts,) = sample_path("M 0 0 L 4 0 L 4 4 Z", 1.0)
    assert len(pts) == 1 + 4 + 4 + 6  # the closing diagonal is 4 sqrt(2) = 5.66 long: 6 intervals
    np.testing.assert_allclose(pts[-1], [0, 0], atol=1e-12)
    np.testing.assert_allclose(pts[0], [0, 0])


@pytest.mark.parametrize("step", [0.0, -1.0])
def test_bad_step(step):
    with pytest.raises(ValueError):
        sample_path("M 0 0 L 1 1", step)


@settings(max_examples=50, deadline=None)
@given(st.lists(point, min_size=2, max_size=6), st.floats(0.5, 20.0))
def test_line_spacing_at_most_step(pts, step):
    d = "M " + fmt(pts[0]) + " L " + fmt(*pts[1:])
    (out,) = sample_path(d, step)
    np.testing.assert_allclose(out[0], pts[0])
    np.testing.assert_allclose(out[-1], pts[-1], atol=1e-9)
    gaps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert gaps.max() <= step * (1 + 1e-9) + 1e-9
    # every sample lies on its segment, and every vertex is sampled
    verts = np.asarray(pts, dtype=np.float64)
    k = 0
    for a, b in zip(verts[:-1], verts[1:]):
        length = float(np.linalg.norm(b - a))
        n = max(1, math.ceil(length / step))
        seg = out[k : k + n + 1]
        assert len(seg) == n + 1
        np.testing.assert_allclose(seg, a + np.linspace(0, 1, n + 1)[:, None] * (b - a), atol=1e-9)
        k += n
    assert k == len(out) - 1


@settings(max_examples=50, deadline=None)
@given(st.tuples(point, point, point, point), st.floats(0.5, 20.0), st.booleans())
def test_cubic_samples_on_curve(ctrl, step, relative):
    ctrl = np.asarray(ctrl, dtype=np.float64)
    if relative:
        d = "M " + fmt(ctrl[0]) + " c " + fmt(*(ctrl[1:] - ctrl[0]))
    else:
        d = "M " + fmt(ctrl[0]) + " C " + fmt(*ctrl[1:])
    (out,) = sample_path(d, step)
    n = len(out) - 1
    # equal parameter intervals, evaluated independently by de Casteljau
    np.testing.assert_allclose(out, bezier(ctrl, np.linspace(0, 1, n + 1)), atol=1e-9)
    poly = np.linalg.norm(np.diff(ctrl, axis=0), axis=1).sum()
    assert n == max(1, math.ceil(poly / step))
    # and on the curve independently of the parametrisation
    assert dist_to_curve(out, ctrl).max() <= 2 * poly / 20000 + 1e-9
    # spacing: the control polygon bounds the arc length, but equal parameter steps are not equal
    # arc steps; |B'| <= 3 * (longest control leg) bounds each gap by 3 * step
    gaps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert gaps.max() <= 3 * step + 1e-9


@settings(max_examples=50, deadline=None)
@given(st.tuples(point, point, point), st.floats(0.5, 20.0), st.booleans())
def test_quadratic_samples_on_curve(ctrl, step, relative):
    ctrl = np.asarray(ctrl, dtype=np.float64)
    if relative:
        d = "M " + fmt(ctrl[0]) + " q " + fmt(*(ctrl[1:] - ctrl[0]))
    else:
        d = "M " + fmt(ctrl[0]) + " Q " + fmt(*ctrl[1:])
    (out,) = sample_path(d, step)
    n = len(out) - 1
    # evaluated as a quadratic (not the degree-elevated cubic the sampler uses)
    np.testing.assert_allclose(out, bezier(ctrl, np.linspace(0, 1, n + 1)), atol=1e-9)
    poly = np.linalg.norm(np.diff(ctrl, axis=0), axis=1).sum()
    assert dist_to_curve(out, ctrl).max() <= 2 * poly / 20000 + 1e-9
    gaps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert gaps.max() <= 3 * step + 1e-9


@settings(max_examples=50, deadline=None)
@given(st.tuples(point, point, point, point, point, point), st.floats(1.0, 20.0))
def test_smooth_cubic_chain_on_curve(ctrl, step):
    """``C`` then ``S``: the second curve's first control point is the reflection of the first's second."""
    p0, c1, c2, p1, d2, p2 = (np.asarray(c, dtype=np.float64) for c in ctrl)
    d = "M " + fmt(p0) + " C " + fmt(c1, c2, p1) + " S " + fmt(d2, p2)
    (out,) = sample_path(d, step)
    first = np.array([p0, c1, c2, p1])
    second = np.array([p1, 2 * p1 - c2, d2, p2])
    n1 = max(1, math.ceil(np.linalg.norm(np.diff(first, axis=0), axis=1).sum() / step))
    np.testing.assert_allclose(out[: n1 + 1], bezier(first, np.linspace(0, 1, n1 + 1)), atol=1e-9)
    rest = out[n1:]
    np.testing.assert_allclose(rest, bezier(second, np.linspace(0, 1, len(rest))), atol=1e-9)


def test_sampled_kanjivg_stroke_is_continuous():
    # a real KanjiVG stroke (U+4E00, 一): consecutive samples stay close and the ends are the path's
    d = "M11,54.25c3.19,0.62,6.25,0.75,9.73,0.5c20.64-1.5,50.39-5.12,68.58-5.24c3.6-0.02,5.77,0.24,7.57,0.49"
    (pts,) = sample_path(d, 109 * 0.025)
    np.testing.assert_allclose(pts[0], [11, 54.25])
    # each relative c ends at its last pair: x = 11 + 9.73 + 68.58 + 7.57, y = 54.25 + 0.5 - 5.24 + 0.49
    np.testing.assert_allclose(pts[-1], [96.88, 50.0], atol=1e-9)
    gaps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    assert gaps.max() <= 109 * 0.025 * 1.5
