"""The reward schemes (sketch_env.envs.rewards) on hand-made ranks."""

from __future__ import annotations

import numpy as np
import pytest

import sketch_env  # noqa: F401  (registers the ids)
from sketch_env.envs import rewards

pytestmark = pytest.mark.usefixtures("env_cache")


def test_reward_schemes_on_hand_made_ranks():
    r = np.array([1, 2, 4, 5, 10, 11])
    np.testing.assert_allclose(rewards.local_reward("inverse_rank", r), [1, 0.5, 0.25, 0.2, 0.1, 1 / 11])
    np.testing.assert_allclose(rewards.local_reward("paper", r), 1.0 / r)
    np.testing.assert_allclose(
        rewards.local_reward("inverse_sqrt_rank", r), [1, 2**-0.5, 0.5, 5**-0.5, 10**-0.5, 11**-0.5]
    )
    np.testing.assert_array_equal(rewards.local_reward("neg_rank", r), -r)
    np.testing.assert_array_equal(rewards.local_reward("top1", r), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(rewards.local_reward("top5", r), [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(rewards.local_reward("top10", r), [1, 1, 1, 1, 1, 0])
    # the Kendall term: -max(0, tau_t - tau_{t-1}), 0 where a tau is undefined
    tau = np.array([np.nan, 0.3, 0.2, 0.5])
    before = np.array([np.nan, np.nan, 0.3, 0.2])
    np.testing.assert_allclose(rewards.kendall_term(tau, before), [0, 0, 0, -0.3])
    reward, local, glob = rewards.step_reward("paper", np.array([2, 4, 1, 1]), tau, before, gamma1=2.0, gamma2=10.0)
    np.testing.assert_allclose(reward, [1.0, 0.5, 2.0, 2.0 - 3.0])
    # episode of S = 4: return = gamma1 * sum 1/r + gamma2 * (g_2 + g_3)
    # taus tau(L1,L2) = 0.3, tau(L2,L3) = 0.2, tau(L3,L4) = 0.5 -> g_2 = -max(0, 0.2 - 0.3) = 0, g_3 = -0.3
    assert rewards.paper_return(np.array([2, 4, 1, 1]), np.array([0.3, 0.2, 0.5]), 2.0, 10.0) == pytest.approx(
        2.0 * (0.5 + 0.25 + 1 + 1) - 3.0
    )
    with pytest.raises(ValueError, match="unknown reward scheme"):
        rewards.local_reward("rank_squared", r)
    with pytest.raises(ValueError, match="taus"):
        rewards.paper_return(np.array([1, 2]), np.array([0.1, 0.2]))
