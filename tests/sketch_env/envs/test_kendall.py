"""The exact Kendall-tau distance between gallery rankings: every kernel against SciPy and a brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from sketch_env.envs import kendall

NUMPY_KERNELS = ["numpy"] + (["numba", "numba-parallel"] if kendall.numba_available() else [])


def brute_discordant(d_a: np.ndarray, d_b: np.ndarray) -> int:
    """O(P^2): pairs ordered differently by (d_a, index) and (d_b, index)."""
    p = len(d_a)
    count = 0
    for i in range(p):
        for j in range(i + 1, p):
            before_a = (d_a[i], i) < (d_a[j], j)
            before_b = (d_b[i], i) < (d_b[j], j)
            count += before_a != before_b
    return count


def all_kernels(d_a: np.ndarray, d_b: np.ndarray) -> dict[str, np.ndarray]:
    oa, ob = kendall.ranking_order(d_a), kendall.ranking_order(d_b)
    out = {k: kendall.discordant_pairs(oa, ob, k) for k in NUMPY_KERNELS}
    ta, tb = torch.from_numpy(np.asarray(d_a, np.float32)), torch.from_numpy(np.asarray(d_b, np.float32))
    orders = kendall.ranking_order_torch(ta), kendall.ranking_order_torch(tb)
    out["torch"] = kendall.discordant_pairs_torch(*orders).numpy()
    # the env's fused step: the ranking of d_b (radix sort with numba) and the count against d_a's ranking
    for k in NUMPY_KERNELS:
        order, disc = kendall.ranking_and_discordant(d_b, oa, np.ones(len(oa), bool), k)
        np.testing.assert_array_equal(order, ob, err_msg=f"ranking_and_discordant order, {k}")
        out[f"step {k}"] = disc
    return out


@pytest.mark.parametrize("p", [2, 3, 7, 8, 9, 64, 100, 1000])
def test_matches_scipy_without_ties(p):
    rng = np.random.default_rng(p)
    a = rng.random((3, p)).astype(np.float32)
    b = rng.random((3, p)).astype(np.float32)
    for i in range(3):
        want = (1.0 - kendalltau(a[i], b[i]).statistic) / 2.0
        assert kendall.kendall_tau_distance(a[i], b[i]) == pytest.approx(want, abs=1e-12)
    pairs = p * (p - 1) // 2
    counts = all_kernels(a, b)
    want = np.array([round((1.0 - kendalltau(a[i], b[i]).statistic) / 2.0 * pairs) for i in range(3)])
    for name, got in counts.items():
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("p", [1, 2, 5, 16, 33, 130])
def test_matches_brute_force_with_ties(p):
    # distances on a coarse grid: many ties, broken by photo index in both rankings
    rng = np.random.default_rng(100 + p)
    a = rng.integers(0, 4, size=(4, p)).astype(np.float32)
    b = rng.integers(0, 4, size=(4, p)).astype(np.float32)
    want = np.array([brute_discordant(a[i], b[i]) for i in range(4)])
    for name, got in all_kernels(a, b).items():
        np.testing.assert_array_equal(got, want, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=40))
def test_property_brute_force(pairs):
    a = np.array([[x for x, _ in pairs]], dtype=np.float32)
    b = np.array([[y for _, y in pairs]], dtype=np.float32)
    want = brute_discordant(a[0], b[0])
    for name, got in all_kernels(a, b).items():
        assert int(got[0]) == want, name


def test_ranking_and_discordant_counts_only_where_asked_and_may_overwrite_its_input():
    rng = np.random.default_rng(7)
    a = rng.random((6, 300)).astype(np.float32)
    b = rng.random((6, 300)).astype(np.float32)
    b[:, ::3] = b[:, 1::3]  # ties
    b[0, :] = 2.0  # every photo tied: the ranking is the index order
    oa, ob = kendall.ranking_order(a), kendall.ranking_order(b)
    want = kendall.discordant_pairs(oa, ob, "numpy")
    count = np.array([True, False, True, True, False, True])
    for k in NUMPY_KERNELS:
        prev = oa.copy()
        order, disc = kendall.ranking_and_discordant(b, prev, count, k)
        np.testing.assert_array_equal(order, ob)
        np.testing.assert_array_equal(disc, np.where(count, want, 0))
    np.testing.assert_array_equal(ob[0], np.arange(300))
    with pytest.raises(ValueError, match="do not match"):
        kendall.ranking_and_discordant(b, oa[:, :5], count)


def test_ranking_order_breaks_ties_by_index_and_handles_negative_zero():
    d = np.array([[0.5, 0.0, 0.5, -0.0, 0.25]], dtype=np.float32)
    np.testing.assert_array_equal(kendall.ranking_order(d), [[1, 3, 4, 0, 2]])
    np.testing.assert_array_equal(kendall.ranking_order_torch(torch.from_numpy(d)).numpy(), [[1, 3, 4, 0, 2]])
    np.testing.assert_array_equal(kendall.ranking_positions(np.array([[2, 0, 1]])), [[1, 2, 0]])


def test_extremes_and_symmetry():
    p = 50
    up = np.arange(p, dtype=np.float32)[None]
    assert kendall.kendall_tau_distance(up[0], up[0]) == 0.0
    assert kendall.kendall_tau_distance(up[0], up[0][::-1].copy()) == 1.0
    assert kendall.count_inversions(np.arange(p)[::-1][None])[0] == p * (p - 1) // 2
    assert kendall.count_inversions(np.zeros((2, 0), int)).tolist() == [0, 0]
    assert kendall.kendall_tau_distance(np.zeros(1), np.zeros(1)) == 0.0  # P < 2: no pairs
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 40)), rng.random((5, 40))
    np.testing.assert_array_equal(kendall.kendall_tau_distance(a, b), kendall.kendall_tau_distance(b, a))


def test_errors():
    with pytest.raises(ValueError, match="kernel"):
        kendall.discordant_pairs(np.zeros((1, 3), int), np.zeros((1, 3), int), "fortran")
    with pytest.raises(ValueError, match="same shape"):
        kendall.discordant_pairs(np.zeros((1, 3), int), np.zeros((1, 4), int))
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        kendall.ranking_order(np.zeros(3))


@pytest.mark.skipif(not kendall.numba_available(), reason="needs numba (the [fast] extra)")
def test_numba_parallel_kernel_leaves_torch_thread_count_alone():
    """Launching numba's OpenMP pool after torch ran a parallel region (and its thread count was read) used to
    set torch's intra-op thread count to numba's (1 -> 2), undoing ``torch.set_num_threads(1)``. Checked in a
    fresh process, where the pool is not yet up, with numba asked for two threads."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "torch.nn.Conv2d(1, 8, 3)(torch.randn(4, 1, 32, 32))  # torch's OpenMP runtime in use first\n"
        "assert torch.get_num_threads() == 1  # (without this query before the launch, the flip did not show)\n"
        "from sketch_env.envs import kendall\n"
        "d = np.random.default_rng(0).random((8, 300)).astype(np.float32)\n"
        "prev = np.tile(np.arange(300, dtype=np.int32), (8, 1))\n"
        "kendall.ranking_and_discordant(d, prev, np.ones(8, bool), kernel='numba-parallel')\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"
