"""Retrieval metrics on cases computed by hand, and rank's defining identity under hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from sketch_env.metrics import (
    acc_at_q,
    euclidean_distance,
    m_at_a,
    m_at_b,
    rank,
    ranking_percentile,
    ranks_from_embeddings,
    retrieval_curves,
    summarise,
)

# ----------------------------------------------------------------------------- rank


def test_rank_tie_counts_against_the_query():
    # the true photo (0) is tied with photo 2: both count, so rank 2
    assert rank(np.array([[0.1, 0.3, 0.1]]), np.array([0])).tolist() == [2]


def test_rank_hand_cases():
    d = np.array([[0.5, 0.2, 0.9], [0.5, 0.2, 0.9], [0.5, 0.2, 0.9]])
    # sorted: photo 1 (0.2), photo 0 (0.5), photo 2 (0.9)
    assert rank(d, np.array([1, 0, 2])).tolist() == [1, 2, 3]
    assert rank(d, np.array([1, 0, 2])).dtype == np.int64


def test_rank_rejects_bad_input():
    with pytest.raises(ValueError):
        rank(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError):
        rank(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError):
        rank(np.zeros(3), np.array([0]))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rank_identity(data):
    p = data.draw(st.integers(1, 6), label="P")
    rows = data.draw(st.lists(st.lists(st.integers(0, 4), min_size=p, max_size=p), min_size=1, max_size=5))
    d = np.array(rows, dtype=np.float64)  # small integers: plenty of ties
    b, p = d.shape
    true = np.array([data.draw(st.integers(0, p - 1)) for _ in range(b)])
    r = rank(d, true)
    assert ((r >= 1) & (r <= p)).all()
    for i in range(b):
        dt = d[i, true[i]]
        closer = int((d[i] < dt).sum())
        tied_others = int((d[i] == dt).sum()) - 1
        assert r[i] == 1 + closer + tied_others


# ----------------------------------------------------------------------------- distances and chunking


def test_euclidean_distance_matches_scipy():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    d = euclidean_distance(q, g)
    assert d.shape == (7, 9) and d.dtype == np.float32
    np.testing.assert_allclose(d, cdist(q, g), rtol=1e-4, atol=1e-4)


def test_ranks_from_embeddings_chunked_equals_unchunked():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(53, 8)).astype(np.float32)
    g = rng.normal(size=(31, 8)).astype(np.float32)
    true = rng.integers(0, 31, size=53)
    whole = rank(euclidean_distance(q, g), true)
    for chunk in (1, 7, 53, 4096):
        np.testing.assert_array_equal(ranks_from_embeddings(q, g, true, chunk=chunk), whole)


def test_ranks_from_embeddings_duplicate_photo_is_a_tie():
    # exact arithmetic: the query sits on photos 1 and 2 (duplicates), so the true photo 1 has rank 2
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert ranks_from_embeddings(q, g, np.array([1])).tolist() == [2]
    assert ranks_from_embeddings(q, g, np.array([0])).tolist() == [3]


# ----------------------------------------------------------------------------- percentile, m@A, m@B, A@q


def test_ranking_percentile():
    assert ranking_percentile(1, 5) == 1.0
    assert ranking_percentile(5, 5) == 0.0
    assert ranking_percentile(3, 5) == 0.5
    assert ranking_percentile(1, 1) == 1.0
    np.testing.assert_allclose(ranking_percentile(np.array([1, 2, 11]), 11), [1.0, 0.9, 0.0])


RANKS = np.array([[1, 2], [4, 1]])  # 2 sketches x 2 steps, gallery N = 5


def test_m_at_b_by_hand():
    # sketch 0: (1 + 1/2) / 2 = 0.75; sketch 1: (1/4 + 1) / 2 = 0.625; mean 0.6875
    assert m_at_b(RANKS) == pytest.approx(0.6875)


def test_m_at_a_by_hand():
    # percentiles (5 - r) / 4: [[1, 0.75], [0.25, 1]] -> sketch means 0.875, 0.625 -> 0.75
    assert m_at_a(RANKS, 5) == pytest.approx(0.75)


def test_acc_at_q_by_hand():
    complete = np.array([1, 3, 6, 12])
    assert acc_at_q(complete, 1) == 0.25
    assert acc_at_q(complete, 5) == 0.5
    assert acc_at_q(complete, 10) == 0.75
    assert acc_at_q(complete, 12) == 1.0


def test_retrieval_curves_by_hand():
    c = retrieval_curves(RANKS, 5)
    np.testing.assert_allclose(c["percent"], [50.0, 100.0])
    np.testing.assert_allclose(c["ranking_percentile"], [(1 + 0.25) / 2, (0.75 + 1) / 2])
    np.testing.assert_allclose(c["inverse_rank"], [(1 + 0.25) / 2, (0.5 + 1) / 2])


def test_summarise_by_hand():
    s = summarise(RANKS, 5)
    # complete-sketch ranks are the last column [2, 1]
    assert s["A@1"] == pytest.approx(50.0)
    assert s["A@5"] == pytest.approx(100.0)
    assert s["A@10"] == pytest.approx(100.0)
    assert s["m@A"] == pytest.approx(75.0)
    assert s["m@B"] == pytest.approx(68.75)
    assert (s["gallery_size"], s["sketches"], s["steps"]) == (5, 2, 2)


def test_metrics_reject_impossible_ranks():
    with pytest.raises(ValueError):
        m_at_a(np.array([[0, 1]]), 5)
    with pytest.raises(ValueError):
        m_at_a(np.array([[6, 1]]), 5)
    with pytest.raises(ValueError):
        m_at_b(np.zeros((0, 3), dtype=int))
    with pytest.raises(ValueError):
        summarise(np.array([1, 2]), 5)
