"""The RL methods (agents.algorithms): the adaptive KL coefficient, VPG's per-step weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.algorithms import ALGORITHMS, SketchPPO
from agents.policy import LinearGaussianPolicy
from tests.helpers import pendulum_vec_env


@pytest.mark.parametrize("lr, direction", [(0.3, "up"), (1e-7, "down")])
def test_kl_penalty_coefficient_adapts_in_the_right_direction(lr, direction):
    """A huge step moves the policy far (KL >> target: beta doubles); a tiny one barely (beta halves)."""
    model = SketchPPO(LinearGaussianPolicy, pendulum_vec_env(), penalty="kl", kl_coef=1.0, kl_target=0.01,
                      learning_rate=lr, n_steps=64, batch_size=64, n_epochs=4, seed=0,
                      policy_kwargs={"critic": False})
    model.learn(128)
    assert (model.kl_coef > 1.0) if direction == "up" else (model.kl_coef < 1.0)


def test_vpg_weights_are_each_steps_own_reward():
    """Without a baseline VPG's weights are the rewards themselves (gamma 0, V = 0), as the authors' code."""
    model = ALGORITHMS["vpg"][0](LinearGaussianPolicy, pendulum_vec_env(), n_steps=8, policy_kwargs={"critic": False})
    model.learn(16)
    buf = model.rollout_buffer
    # the buffer's get() flattened advantages env-major: (n_steps, n_envs) -> (n_envs * n_steps, 1)
    np.testing.assert_allclose(buf.advantages.ravel(), buf.rewards.swapaxes(0, 1).ravel(), rtol=1e-6)
    assert math.isclose(model.gamma, 0.0)


def test_the_torch_free_method_names_are_the_algorithms():
    from agents.names import METHODS

    assert set(METHODS) == set(ALGORITHMS) and len(METHODS) == len(ALGORITHMS)
