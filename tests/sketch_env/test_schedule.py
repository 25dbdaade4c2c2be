"""Schedules: which prefix of the sketch each step shows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketch_env.schedule import PointSchedule, Schedule, StrokeSchedule, make_schedule, point_cuts
from sketch_env.sketch import Sketch
from tests.helpers import sketches


# ============================================================================================== schedules
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.integers(1, 60))
def test_point_cuts_properties(n, s):
    cuts = point_cuts(n, s)
    assert cuts.dtype == np.int64
    assert cuts.shape == (s,)
    assert (np.diff(cuts) >= 0).all()
    assert cuts[-1] == n
    assert cuts.min() >= 1 and cuts.max() <= n


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 60))
def test_point_cuts_match_authors_formula_when_enough_points(n, s):
    if n < s:
        n = s + (n % 50)
    expected = np.round(np.linspace(0, n, s + 1)[1:])
    np.testing.assert_array_equal(point_cuts(n, s), expected)
    # with N >= S every cut is distinct (and so at least 1)
    assert (np.diff(point_cuts(n, s)) > 0).all()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 59), st.integers(2, 60))
def test_point_cuts_fewer_points_than_steps(n, s):
    if n >= s:
        n = s - 1
    cuts = point_cuts(n, s)
    raw = np.round(np.linspace(0, n, s + 1)[1:]).astype(np.int64)
    # documented: the formula's cuts, raised to at least 1 (no empty canvas), still S of them
    np.testing.assert_array_equal(cuts, np.maximum(raw, 1))
    assert len(cuts) == s and cuts[-1] == n and cuts.min() >= 1
    # steps repeat, and every point count 1..N is shown at some step
    assert len(np.unique(cuts)) < s
    assert set(cuts.tolist()) == set(range(1, n + 1))


def test_point_cuts_known_values():
    np.testing.assert_array_equal(point_cuts(3, 5), [1, 1, 2, 2, 3])  # raw [1, 1, 2, 2, 3]
    np.testing.assert_array_equal(point_cuts(2, 5), [1, 1, 1, 2, 2])  # raw [0, 1, 1, 2, 2]
    np.testing.assert_array_equal(point_cuts(1, 4), [1, 1, 1, 1])  # raw [0, 0, 1, 1]
    np.testing.assert_array_equal(point_cuts(10, 4), [2, 5, 8, 10])  # 2.5 -> 2, 7.5 -> 8: half to even
    np.testing.assert_array_equal(point_cuts(100, 20), np.arange(5, 101, 5))


@pytest.mark.parametrize("n,s", [(0, 5), (-1, 5), (5, 0), (5, -2)])
def test_point_cuts_errors(n, s):
    with pytest.raises(ValueError):
        point_cuts(n, s)


@settings(max_examples=50, deadline=None)
@given(sketches(), st.integers(1, 40))
def test_point_schedule(sketch, s):
    cuts = PointSchedule(steps=s).cuts(sketch)
    assert len(cuts) == s
    assert (np.diff(cuts) >= 0).all() and cuts[-1] == sketch.num_points and cuts.min() >= 1
    np.testing.assert_array_equal(cuts, point_cuts(sketch.num_points, s))
    assert PointSchedule(steps=s).num_steps(sketch) == s


@settings(max_examples=50, deadline=None)
@given(sketches(max_strokes=10), st.one_of(st.none(), st.integers(1, 25)))
def test_stroke_schedule(sketch, s):
    cuts = StrokeSchedule(steps=s).cuts(sketch)
    ends = sketch.stroke_ends
    assert (np.diff(cuts) >= 0).all() and cuts[-1] == sketch.num_points and cuts.min() >= 1
    assert np.isin(cuts, ends).all()  # cuts fall on stroke ends only
    k = sketch.num_strokes
    if s is None:
        np.testing.assert_array_equal(cuts, ends)
        assert len(cuts) == k
    else:
        assert len(cuts) == s
        shown = np.ceil(np.arange(1, s + 1) * k / s).astype(int)
        np.testing.assert_array_equal(cuts, ends[shown - 1])
        if k >= s:
            assert (np.diff(cuts) > 0).all()
        else:  # strokes repeat, each one shown at some step
            assert set(cuts.tolist()) == set(ends.tolist())
    # the schedule's cuts never alias the sketch's read-only array
    cuts[...] = 0
    assert sketch.stroke_ends.min() > 0


def test_schedule_names_and_keys():
    assert make_schedule() == PointSchedule(20)
    assert make_schedule("point", 7) == PointSchedule(7)
    assert make_schedule("points", None) == PointSchedule(20)
    assert make_schedule("strokes") == StrokeSchedule(20)  # the default steps=20 applies to both names
    assert make_schedule("strokes", None) == StrokeSchedule(None)
    assert make_schedule("stroke", 5) == StrokeSchedule(5)
    assert PointSchedule(17).key() == "points:17"
    assert StrokeSchedule().key() == "strokes:None"
    assert PointSchedule(5).key() != StrokeSchedule(5).key()
    with pytest.raises(ValueError):
        make_schedule("time")
    with pytest.raises(ValueError):
        PointSchedule(0)
    with pytest.raises(ValueError):
        PointSchedule(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StrokeSchedule(0)
    with pytest.raises(NotImplementedError):
        Schedule().cuts(Sketch.from_strokes([[[0, 0]]]))
