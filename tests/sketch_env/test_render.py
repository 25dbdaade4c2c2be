"""Progressive rendering: one pass, monotone ink, batch = per sketch, pixel mapping, configuration."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketch_env.render import RenderConfig, render_progressive, render_progressive_batch, render_sketch
from sketch_env.schedule import PointSchedule, StrokeSchedule, point_cuts
from sketch_env.sketch import Sketch
from tests.helpers import sketches

CONFIGS = [
    RenderConfig(size=s, line_width=w, polarity=p, antialias=aa, thicken=th, margin=m)
    for s, w, m in [(32, 1, 0), (48, 3, 2), (64, None, 0), (40, 2, 1)]
    for p in ("white_on_black", "black_on_white")
    for aa in (False, True)
    for th in ("line", "dilate")
]


configs = st.sampled_from(CONFIGS)


# ============================================================================================== rendering
@settings(max_examples=50, deadline=None)
@given(sketches(), configs, st.integers(1, 25))
def test_each_raster_contains_the_previous_ink(sketch, cfg, s):
    rasters = render_progressive(sketch, PointSchedule(s), cfg)
    assert rasters.shape == (s, cfg.size, cfg.size) and rasters.dtype == np.uint8
    diffs = np.diff(rasters.astype(np.int16), axis=0)
    if cfg.polarity == "white_on_black":
        assert (diffs >= 0).all()
    else:
        assert (diffs <= 0).all()
    # the last step is the complete sketch (exactly without anti-aliasing; with it, a stroke drawn in
    # pieces blends its joints' and dots' edge pixels more than once, so they come out somewhat brighter)
    full = render_sketch(sketch, cfg)
    if cfg.antialias:
        ink_full = full if cfg.polarity == "white_on_black" else 255 - full
        ink_last = rasters[-1] if cfg.polarity == "white_on_black" else 255 - rasters[-1]
        assert (ink_last.astype(int) - ink_full >= -4).all()
        assert (ink_last[ink_full == 255] >= 250).all()
    else:
        np.testing.assert_array_equal(rasters[-1], full)


@settings(max_examples=50, deadline=None)
@given(sketches(max_strokes=8), configs)
def test_stroke_schedule_rasters_monotone(sketch, cfg):
    rasters = render_progressive(sketch, StrokeSchedule(), cfg)
    assert len(rasters) == sketch.num_strokes
    sign = 1 if cfg.polarity == "white_on_black" else -1
    assert (sign * np.diff(rasters.astype(np.int16), axis=0) >= 0).all()


@settings(max_examples=50, deadline=None)
@given(
    sketches(),
    st.sampled_from([16, 33, 64]),
    st.sampled_from([1, 2, 3, 5]),
    st.sampled_from(["line", "dilate"]),
    st.integers(0, 3),
    st.integers(1, 30),
)
def test_incremental_equals_prefix_from_scratch(sketch, size, width, thicken, margin, s):
    """LINE_8 (no anti-aliasing): drawing only the new segments at each step gives exactly the raster of
    the prefix drawn from scratch."""
    cfg = RenderConfig(size=size, line_width=width, thicken=thicken, margin=margin)
    cuts = point_cuts(sketch.num_points, s)
    rasters = render_progressive(sketch, cuts, cfg)
    for t, cut in enumerate(cuts):
        np.testing.assert_array_equal(
            rasters[t], render_sketch(sketch.prefix(int(cut)), cfg), err_msg=f"step {t}"
        )


@settings(max_examples=50, deadline=None)
@given(sketches(), st.sampled_from([1, 3]), st.sampled_from(["line", "dilate"]), st.integers(1, 30))
def test_incremental_antialiased_matches_prefix_support(sketch, width, thicken, s):
    """With anti-aliasing, blending order may change grey levels, but not where the ink is (much)."""
    cfg = RenderConfig(size=48, line_width=width, thicken=thicken, antialias=True)
    cuts = point_cuts(sketch.num_points, s)
    rasters = render_progressive(sketch, cuts, cfg)
    for t, cut in enumerate(cuts):
        scratch = render_sketch(sketch.prefix(int(cut)), cfg)
        strong = scratch >= 128
        assert (rasters[t][strong] > 0).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(sketches(), min_size=1, max_size=5), configs, st.integers(1, 20))
def test_batch_equals_per_sketch(sks, cfg, s):
    batch = render_progressive_batch(sks, PointSchedule(s), cfg)
    assert batch.shape == (len(sks), s, cfg.size, cfg.size) and batch.dtype == np.uint8
    for i, sk in enumerate(sks):
        np.testing.assert_array_equal(batch[i], render_progressive(sk, PointSchedule(s), cfg))


def test_batch_fixed_length_stroke_schedule_and_errors():
    a = Sketch.from_strokes([[[0.1, 0.1], [0.9, 0.9]], [[0.1, 0.9], [0.9, 0.1]]])
    b = Sketch.from_strokes([[[0.5, 0.1], [0.5, 0.9]]])
    cfg = RenderConfig(size=32)
    out = render_progressive_batch([a, b], StrokeSchedule(3), cfg)
    assert out.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(out[1], render_progressive(b, StrokeSchedule(3), cfg))
    with pytest.raises(ValueError, match="different step counts"):
        render_progressive_batch([a, b], StrokeSchedule(None), cfg)
    empty = render_progressive_batch([], PointSchedule(7), cfg)
    assert empty.shape == (0, 7, 32, 32) and empty.dtype == np.uint8


@settings(max_examples=50, deadline=None)
@given(
    sketches(),
    st.integers(1, 20),
    st.sampled_from([24, 64]),
    st.sampled_from([1, 3]),
    st.booleans(),
    st.sampled_from(["line", "dilate"]),
)
def test_black_on_white_is_inverse(sketch, s, size, width, aa, thicken):
    kw = dict(size=size, line_width=width, antialias=aa, thicken=thicken)
    wob = render_progressive(sketch, PointSchedule(s), RenderConfig(polarity="white_on_black", **kw))
    bow = render_progressive(sketch, PointSchedule(s), RenderConfig(polarity="black_on_white", **kw))
    np.testing.assert_array_equal(bow, 255 - wob)


def test_pixel_mapping_and_orientation():
    size = 32
    cfg = RenderConfig(size=size, line_width=1)
    top_right = render_sketch(Sketch.from_strokes([[[1.0, 0.0]]]), cfg)
    assert top_right[0, size - 1] == 255 and top_right.sum() == 255  # x is the column, y grows down
    bottom_left = render_sketch(Sketch.from_strokes([[[0.0, 1.0]]]), cfg)
    assert bottom_left[size - 1, 0] == 255 and bottom_left.sum() == 255
    # a horizontal line across the frame
    line = render_sketch(Sketch.from_strokes([[[0.0, 0.5], [1.0, 0.5]]]), RenderConfig(size=33, line_width=1))
    assert (line[16] == 255).all() and line.sum() == 255 * 33


@pytest.mark.parametrize("margin", [0, 1, 4])
def test_margin_keeps_border_blank(margin):
    size = 32
    cfg = RenderConfig(size=size, line_width=1, margin=margin)
    sq = Sketch.from_strokes([[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]])
    r = render_sketch(sq, cfg)
    ys, xs = np.nonzero(r)
    assert ys.min() == margin and xs.min() == margin
    assert ys.max() == size - 1 - margin and xs.max() == size - 1 - margin


def test_line_width_default_and_thickness():
    assert RenderConfig(size=256).width == 3
    assert RenderConfig(size=64).width == 1
    assert RenderConfig(size=128).width == 2
    assert RenderConfig(size=512).width == 6
    assert RenderConfig(size=64, line_width=4).width == 4

    sk = Sketch.from_strokes([[[0.1, 0.5], [0.9, 0.5]]])
    for w in (1, 2, 3, 5):
        dil = render_sketch(sk, RenderConfig(size=65, line_width=w, thicken="dilate"))
        assert (dil[:, 32] > 0).sum() == w
    assert (render_sketch(sk, RenderConfig(size=65, line_width=1))[:, 32] > 0).sum() == 1


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("width", [2, 3, 5])
def test_thick_line_width_is_line_width(width, antialias):
    """The default thickening (dilate) draws exactly line_width px."""
    sk = Sketch.from_strokes([[[0.1, 0.5], [0.9, 0.5]]])
    r = render_sketch(sk, RenderConfig(size=65, line_width=width, antialias=antialias))
    # ink across a horizontal stroke, in pixels (grey levels counted by their coverage)
    assert r[:, 32].sum() / 255 == pytest.approx(width, abs=0.75)


@pytest.mark.parametrize("width", [2, 3, 5])
def test_line_thickening_is_opencv_thickness(width):
    """thicken='line' is documented as OpenCV's thickness: the same pixels as cv2.line with it."""
    sk = Sketch.from_strokes([[[0.1, 0.5], [0.9, 0.5]]])
    r = render_sketch(sk, RenderConfig(size=65, line_width=width, thicken="line"))
    ref = np.zeros((65, 65), np.uint8)
    cv2.line(ref, (int(round(0.1 * 64)), 32), (int(round(0.9 * 64)), 32), 255, width, cv2.LINE_8)
    assert (r[:, 32] > 0).sum() == (ref[:, 32] > 0).sum() >= width


def test_render_config_key():
    assert RenderConfig(size=256).key() == RenderConfig(size=256, line_width=3).key()
    assert RenderConfig(size=64).key() != RenderConfig(size=64, antialias=True).key()
    assert "size=64" in RenderConfig(size=64).key()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=3),
        dict(size=0),
        dict(line_width=0),
        dict(line_width=-2),
        dict(polarity="black"),
        dict(thicken="erode"),
        dict(margin=-1),
        dict(size=8, margin=4),  # 2 * 4 = 8 is not < 8 - 1: no canvas left
        dict(size=64, margin=32),
    ],
)
def test_render_config_validation(kwargs):
    with pytest.raises(ValueError):
        RenderConfig(**kwargs)


def test_render_config_smallest_valid():
    RenderConfig(size=4)
    RenderConfig(size=8, margin=3)  # 2 * 3 < 7: a 1-px span, allowed
    RenderConfig(
        size=64, line_width=1, polarity="black_on_white", antialias=True, thicken="dilate", margin=30
    )


@pytest.mark.parametrize("cuts", [[], [0, 3], [2, 1], [1, 7], [-1]])
def test_render_progressive_rejects_bad_cuts(cuts):
    sk = Sketch.from_strokes([[[0, 0], [1, 1], [0, 1]], [[0.5, 0.5], [0.2, 0.2]]])
    with pytest.raises(ValueError):
        render_progressive(sk, np.array(cuts, dtype=np.int64), RenderConfig(size=16))


def test_render_progressive_out_and_repeated_cuts():
    sk = Sketch.from_strokes([[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], [[0.5, 0.5]]])
    cfg = RenderConfig(size=16)
    out = np.full((4, 16, 16), 7, dtype=np.uint8)
    res = render_progressive(sk, np.array([1, 1, 3, 4]), cfg, out=out)
    assert res is out
    np.testing.assert_array_equal(out[0], out[1])  # a repeated cut shows the same raster
    assert out[0].sum() == 255  # the first point alone: a dot
    np.testing.assert_array_equal(out[3], render_sketch(sk, cfg))
