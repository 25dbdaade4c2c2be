"""Retrieval metrics on cases computed by hand, and rank's defining identity under hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from sketch_env.metrics import (
    acc_at_q,
    ap_at_k,
    ap_at_k_zs_sbir,
    category_retrieval_metrics,
    euclidean_distance,
    l2_normalise,
    m_at_a,
    m_at_b,
    precision_at_k,
    rank,
    ranking_percentile,
    ranks_from_embeddings,
    retrieval_curves,
    summarise,
    top_k_relevance,
)

RANKS = np.array([[1, 2], [4, 1]])  # 2 sketches x 2 steps, gallery N = 5


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


def test_ranking_percentile():
    assert ranking_percentile(1, 5) == 1.0
    assert ranking_percentile(5, 5) == 0.0
    assert ranking_percentile(3, 5) == 0.5
    assert ranking_percentile(1, 1) == 1.0
    np.testing.assert_allclose(ranking_percentile(np.array([1, 2, 11]), 11), [1.0, 0.9, 0.0])


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


def test_precision_and_both_aps_by_hand():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=bool)
    # row 0: P@1 = 1, P@3 = 2/3 -> sum P@j rel_j = 5/3
    np.testing.assert_allclose(precision_at_k(rel, 4), [0.5, 0.0, 1.0, 0.25])
    np.testing.assert_allclose(ap_at_k(rel, 4), [5 / 6, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(ap_at_k_zs_sbir(rel, 4), [5 / 12, 0.0, 1.0, 0.5 / 4])
    # k smaller than the list
    np.testing.assert_allclose(precision_at_k(rel, 2), [0.5, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(ap_at_k_zs_sbir(rel, 2), [0.5, 0.0, 1.0, 0.25])
    # a gallery shorter than k still divides by k
    np.testing.assert_allclose(precision_at_k(rel[:, :2], 4), [0.25, 0.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(rel, 0)


def test_top_k_relevance_orders_by_distance_and_ties_against_the_query():
    d = np.array([[0.4, 0.1, 0.3, 0.3], [0.9, 0.8, 0.7, 0.6]])
    labels = np.array(["a", "b", "a", "b"])
    # row 0 (label a): order 1(b), then the tie 2(a) / 3(b) -> the irrelevant 3 first, then 2(a), 0(a)
    np.testing.assert_array_equal(top_k_relevance(d[:1], ["a"], labels, 4), [[False, False, True, True]])
    np.testing.assert_array_equal(top_k_relevance(d[1:], ["b"], labels, 2), [[True, False]])
    with pytest.raises(ValueError, match="query labels"):
        top_k_relevance(d, ["a"], labels, 2)


def test_category_retrieval_metrics_by_hand():
    gallery = l2_normalise(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32))
    labels = np.array([0, 1, 1, 0])
    queries = l2_normalise(np.array([[1, 0.05], [0.05, 1]], dtype=np.float32))
    m = category_retrieval_metrics(queries, gallery, [0, 1], labels, k=3, chunk=1)
    # query 0 ranks photos 0(rel), 1, 3(rel): P@3 = 2/3, sum P@j rel_j = 1 + 2/3
    # query 1 ranks photos 2(rel), 3, 1(rel): the same pattern
    assert m["P@3"] == pytest.approx(2 / 3)
    assert m["mAP@3 (ZS-SBIR)"] == pytest.approx((1 + 2 / 3) / 3)
    assert m["mAP@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["queries"] == 2 and m["gallery_size"] == 4


def test_l2_normalise_torch_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 7)).astype(np.float32)
    x[3] = 0
    x[5] = l2_normalise(x[5:6])[0]  # already unit: kept bit for bit
    np.testing.assert_array_equal(l2_normalise(torch.from_numpy(x)).numpy(), l2_normalise(x))
    np.testing.assert_array_equal(l2_normalise(x)[5], x[5])
    np.testing.assert_array_equal(l2_normalise(x)[3], 0)
