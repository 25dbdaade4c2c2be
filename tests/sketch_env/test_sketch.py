"""The canonical Sketch: conversions round-trip, frame normalisation, validation, prefix and pen flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketch_env.errors import SketchError
from sketch_env.render import RenderConfig, render_sketch
from sketch_env.sketch import Sketch, normalise_frame

FRAMES = [(256.0, 256.0), (640.0, 480.0), (480.0, 640.0), (1.0, 1.0)]


@st.composite
def strokes_in_frame(draw, max_strokes: int = 6, max_points: int = 12):
    """(frame, list of (n_i, 2) float64 arrays of absolute points inside the frame)."""
    frame = draw(st.sampled_from(FRAMES))
    n_strokes = draw(st.integers(1, max_strokes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    strokes = []
    for _ in range(n_strokes):
        n = draw(st.integers(1, max_points))
        strokes.append(rng.uniform(0.0, 1.0, size=(n, 2)) * np.array(frame))
    return frame, strokes


def _tol(frame) -> float:
    # points are stored as float32 in the unit frame: about 1e-7 relative to the frame's longer side
    return 4e-7 * max(frame) + 1e-9


# ---------------------------------------------------------------------------------------------- prefix / pen
def _sketch() -> Sketch:
    return Sketch.from_strokes(
        [
            np.array([[0.1, 0.1], [0.2, 0.1], [0.3, 0.1]]),
            np.array([[0.5, 0.5]]),
            np.array([[0.6, 0.6], [0.7, 0.7]]),
        ]
    )


# ---------------------------------------------------------------------------------------------- round trips
@settings(max_examples=50, deadline=None)
@given(strokes_in_frame())
def test_from_strokes_to_strokes_round_trip(case):
    frame, strokes = case
    sketch = Sketch.from_strokes(strokes, frame=frame)
    assert sketch.num_strokes == len(strokes)
    assert sketch.num_points == sum(len(s) for s in strokes)
    assert sketch.points.dtype == np.float32 and sketch.points.shape == (sketch.num_points, 2)
    # in the unit square
    assert sketch.points.min() >= -1e-6 and sketch.points.max() <= 1 + 1e-6
    back = sketch.to_strokes(frame)
    assert len(back) == len(strokes)
    for a, b in zip(back, strokes):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=_tol(frame))
    # and back into a sketch: identical to float32 precision
    again = Sketch.from_strokes(back, frame=frame)
    assert again.allclose(sketch, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(strokes_in_frame())
def test_absolute_round_trip(case):
    frame, strokes = case
    sketch = Sketch.from_strokes(strokes, frame=frame)
    absolute = sketch.to_absolute(frame)
    assert absolute.shape == (sketch.num_points, 3)
    assert absolute.dtype == np.float64
    np.testing.assert_allclose(absolute[:, :2], np.concatenate(strokes), atol=_tol(frame))
    # the pen column marks the last point of each stroke
    ends = np.cumsum([len(s) for s in strokes])
    np.testing.assert_array_equal(np.flatnonzero(absolute[:, 2] == 1) + 1, ends)
    assert set(np.unique(absolute[:, 2]).tolist()) <= {0.0, 1.0}
    back = Sketch.from_absolute(absolute, frame=frame)
    np.testing.assert_array_equal(back.stroke_ends, sketch.stroke_ends)
    assert back.allclose(sketch, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(strokes_in_frame())
def test_stroke3_round_trip(case):
    frame, strokes = case
    sketch = Sketch.from_strokes(strokes, frame=frame)
    s3 = sketch.to_stroke3(frame)
    assert s3.shape == (sketch.num_points, 3)
    # first delta from the frame's origin; the cumulative sum gives the absolute points back
    np.testing.assert_allclose(np.cumsum(s3[:, :2], axis=0), np.concatenate(strokes), atol=4 * _tol(frame))
    np.testing.assert_array_equal(s3[:, 2], sketch.pen)
    back = Sketch.from_stroke3(s3, frame=frame)
    np.testing.assert_array_equal(back.stroke_ends, sketch.stroke_ends)
    assert back.allclose(sketch, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(strokes_in_frame())
def test_stroke3_fit_frame_fills_unit_square(case):
    frame, strokes = case
    pts = np.concatenate(strokes)
    if np.ptp(pts, axis=0).max() == 0:
        return
    sketch = Sketch.from_stroke3(Sketch.from_strokes(strokes, frame=frame).to_stroke3(frame))  # "fit"
    lo, hi = sketch.points.min(axis=0), sketch.points.max(axis=0)
    # the longer side spans [0, 1]; the shorter one is centred
    longer = int(np.argmax(hi - lo))
    assert lo[longer] == pytest.approx(0.0, abs=1e-5) and hi[longer] == pytest.approx(1.0, abs=1e-5)
    assert (lo + hi)[1 - longer] == pytest.approx(1.0, abs=1e-5)


def test_from_absolute_last_point_always_ends_a_stroke():
    arr = np.array([[0, 0, 0], [10, 0, 1], [10, 10, 0], [0, 10, 0]], dtype=float)
    sketch = Sketch.from_absolute(arr, frame=(10, 10))
    np.testing.assert_array_equal(sketch.stroke_ends, [2, 4])
    arr[-1, 2] = 1
    np.testing.assert_array_equal(Sketch.from_absolute(arr, frame=(10, 10)).stroke_ends, [2, 4])


def test_from_stroke3_known_values():
    s3 = np.array([[1, 1, 0], [2, 0, 1], [0, 2, 0], [-2, 0, 1]], dtype=float)
    sketch = Sketch.from_stroke3(s3, frame=(4.0, 4.0))
    np.testing.assert_allclose(sketch.points, [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
    np.testing.assert_array_equal(sketch.stroke_ends, [2, 4])


# ---------------------------------------------------------------------------------------------- frames
def test_normalise_frame_keeps_aspect_landscape():
    pts = np.array([[0, 0], [640, 480], [320, 240], [640, 0]], dtype=float)
    out = normalise_frame(pts, (640, 480))
    # divided by the longer side (640), the shorter (480) centred: y offset (640 - 480) / 2 = 80 px
    np.testing.assert_allclose(out, [[0, 0.125], [1, 0.875], [0.5, 0.5], [1, 0.125]])


def test_normalise_frame_keeps_aspect_portrait():
    pts = np.array([[0, 0], [480, 640]], dtype=float)
    np.testing.assert_allclose(normalise_frame(pts, (480, 640)), [[0.125, 0], [0.875, 1]])


def test_normalise_frame_fit_and_degenerate():
    pts = np.array([[10, 10], [30, 20]], dtype=float)
    np.testing.assert_allclose(normalise_frame(pts, "fit"), [[0, 0.25], [1, 0.75]])
    np.testing.assert_allclose(normalise_frame(np.array([[3.0, 4.0]]), "fit"), [[0.5, 0.5]])
    np.testing.assert_allclose(normalise_frame(np.array([[3.0, 4.0], [3.0, 4.0]]), "fit"), [[0.5, 0.5]] * 2)


@pytest.mark.parametrize("frame", [(0, 10), (10, -1), "bogus"])
def test_normalise_frame_rejects_bad_frames(frame):
    with pytest.raises(ValueError):
        normalise_frame(np.zeros((2, 2)), frame)


def test_same_canvas_keeps_relative_placement():
    a = Sketch.from_strokes([[[100, 100], [200, 100]]], frame=(640, 480))
    b = Sketch.from_strokes([[[300, 300], [400, 300]]], frame=(640, 480))
    np.testing.assert_allclose(b.points - a.points, [[200 / 640, 200 / 640]] * 2, atol=1e-6)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises(bad):
    strokes = [np.array([[0.1, 0.2], [0.3, bad]])]
    with pytest.raises(SketchError):
        Sketch.from_strokes(strokes)
    with pytest.raises(SketchError):
        Sketch.from_absolute(np.array([[1, 2, 0], [bad, 3, 1]], dtype=float))
    with pytest.raises(SketchError):
        Sketch.from_absolute(np.array([[1, 2, 0], [3, 3, bad]], dtype=float))
    with pytest.raises(SketchError):
        Sketch.from_stroke3(np.array([[1, 2, 0], [bad, 3, 1]], dtype=float))
    with pytest.raises(SketchError):
        Sketch(np.array([[0.1, 0.2], [bad, 0.3]]), np.array([2]))
    with pytest.raises(SketchError):
        Sketch.from_strokes([[[0, 0], [bad, 1]]], frame="fit")


def test_sketch_error_is_value_error():
    assert issubclass(SketchError, ValueError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Sketch.from_strokes([]),
        lambda: Sketch.from_strokes([np.zeros((0, 2)), []]),
        lambda: Sketch.from_absolute(np.zeros((0, 3))),
        lambda: Sketch.from_stroke3(np.zeros((0, 3))),
        lambda: Sketch(np.zeros((0, 2)), np.array([0])),
    ],
    ids=["no-strokes", "only-empty-strokes", "absolute", "stroke3", "direct"],
)
def test_empty_sketch_raises(make):
    with pytest.raises(SketchError):
        make()


@pytest.mark.parametrize(
    "points,ends",
    [
        (np.zeros((3, 3)), [3]),  # wrong width
        (np.zeros((3, 2)), []),  # no stroke ends
        (np.zeros((3, 2)), [2]),  # does not end at N
        (np.zeros((3, 2)), [0, 3]),  # empty first stroke
        (np.zeros((3, 2)), [2, 2, 3]),  # repeated end
        (np.zeros((3, 2)), [2, 1, 3]),  # decreasing
    ],
)
def test_direct_constructor_validates(points, ends):
    with pytest.raises(SketchError):
        Sketch(points, np.array(ends, dtype=np.int64))


def test_bad_shapes_raise():
    with pytest.raises(SketchError):
        Sketch.from_strokes([np.zeros((3, 3))])
    with pytest.raises(SketchError):
        Sketch.from_absolute(np.zeros((3, 2)))
    with pytest.raises(SketchError):
        Sketch.from_stroke3(np.zeros((3,)))


def test_arrays_are_read_only():
    sketch = Sketch.from_strokes([[[0.1, 0.1], [0.2, 0.2]]])
    with pytest.raises(ValueError):
        sketch.points[0, 0] = 0.5
    with pytest.raises(ValueError):
        sketch.stroke_ends[0] = 1


def test_empty_strokes_dropped_raster_unchanged():
    a = np.array([[0.1, 0.1], [0.9, 0.2], [0.5, 0.8]])
    b = np.array([[0.2, 0.7], [0.8, 0.7]])
    with_empty = Sketch.from_strokes([np.zeros((0, 2)), a, [], np.zeros((0, 2)), b, []])
    plain = Sketch.from_strokes([a, b])
    assert with_empty == plain
    assert with_empty.num_strokes == 2
    np.testing.assert_array_equal(with_empty.stroke_ends, [3, 5])
    for cfg in (RenderConfig(size=64), RenderConfig(size=32, antialias=True, thicken="dilate", line_width=3)):
        np.testing.assert_array_equal(render_sketch(with_empty, cfg), render_sketch(plain, cfg))


def test_single_point_strokes_kept():
    sketch = Sketch.from_strokes([[[0.2, 0.2], [0.8, 0.2]], [[0.5, 0.7]], [[0.1, 0.9], [0.3, 0.9]]])
    assert sketch.num_strokes == 3
    np.testing.assert_array_equal(sketch.stroke_ends, [2, 3, 5])
    assert len(sketch.to_strokes()[1]) == 1


@pytest.mark.parametrize("thicken", ["line", "dilate"])
@pytest.mark.parametrize("width", [1, 3, 5])
def test_single_point_stroke_is_a_visible_dot(width, thicken):
    size = 64
    cfg = RenderConfig(size=size, line_width=width, thicken=thicken)
    raster = render_sketch(Sketch.from_strokes([[[0.5, 0.5]]]), cfg)
    ys, xs = np.nonzero(raster)
    assert raster.max() == 255
    centre = 0.5 * (size - 1)
    # the dot sits at the point and is about line-width wide
    assert np.abs(xs - centre).max() <= width / 2 + 1 and np.abs(ys - centre).max() <= width / 2 + 1
    assert (raster == 255).sum() >= max(1, (width - 1) ** 2)
    # black on white: a dark dot
    inv = render_sketch(
        Sketch.from_strokes([[[0.5, 0.5]]]),
        RenderConfig(size=size, line_width=width, thicken=thicken, polarity="black_on_white"),
    )
    assert inv.min() == 0


@pytest.mark.parametrize("width", [2, 3])
def test_single_point_stroke_is_a_visible_dot_antialiased_thick(width):
    raster = render_sketch(
        Sketch.from_strokes([[[0.5, 0.5]]]), RenderConfig(size=64, line_width=width, antialias=True)
    )
    assert raster.max() >= 128


@pytest.mark.parametrize("thicken,width", [("line", 1), ("dilate", 3)])
def test_single_point_stroke_is_a_visible_dot_antialiased_thin(thicken, width):
    raster = render_sketch(
        Sketch.from_strokes([[[0.5, 0.5]]]),
        RenderConfig(size=64, line_width=width, antialias=True, thicken=thicken),
    )
    assert raster.max() >= 128


def test_prefix_values():
    s = _sketch()
    assert s.prefix(s.num_points) == s
    p1 = s.prefix(1)
    np.testing.assert_array_equal(p1.stroke_ends, [1])
    np.testing.assert_array_equal(p1.points, s.points[:1])
    np.testing.assert_array_equal(s.prefix(2).stroke_ends, [2])
    np.testing.assert_array_equal(s.prefix(3).stroke_ends, [3])
    np.testing.assert_array_equal(s.prefix(4).stroke_ends, [3, 4])
    np.testing.assert_array_equal(s.prefix(5).stroke_ends, [3, 4, 5])
    for bad in (0, -1, s.num_points + 1):
        with pytest.raises(ValueError):
            s.prefix(bad)


@settings(max_examples=50, deadline=None)
@given(strokes_in_frame(), st.data())
def test_prefix_property(case, data):
    frame, strokes = case
    s = Sketch.from_strokes(strokes, frame=frame)
    k = data.draw(st.integers(1, s.num_points))
    p = s.prefix(k)
    assert p.num_points == k
    np.testing.assert_array_equal(p.points, s.points[:k])
    assert p.stroke_ends[-1] == k
    # every full stroke end below k is kept, and nothing else
    np.testing.assert_array_equal(p.stroke_ends[:-1], s.stroke_ends[s.stroke_ends < k])
    # same as building from the truncated strokes
    cut = [
        st_[: max(0, k - start)]
        for st_, start in zip(strokes, np.concatenate([[0], np.cumsum([len(x) for x in strokes])]))
    ]
    assert Sketch.from_strokes(cut, frame=frame).allclose(p, atol=0)


def test_pen_flags():
    s = _sketch()
    np.testing.assert_array_equal(s.pen, [0, 0, 1, 1, 0, 1])
    assert s.pen.dtype == np.int8
    np.testing.assert_array_equal(s.stroke_starts, [0, 3, 4])
    assert len(s) == s.num_points == 6 and s.num_strokes == 3
    assert "num_points=6" in repr(s)


def test_equality():
    a, b = _sketch(), _sketch()
    assert a == b
    assert a != a.prefix(5)
    assert a != "not a sketch"
    c = Sketch(a.points + np.float32(1e-7), a.stroke_ends)
    assert a.allclose(c) and not a.allclose(Sketch(a.points, [3, 6]))
