"""The linear Gaussian policy (agents.policy): actor-only, the critic's learning rate, the mean started
from the backend's query layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.algorithms import SketchPPO
from agents.policy import LinearGaussianPolicy
from tests.helpers import pendulum_vec_env


def test_actor_only_policy_has_no_critic_parameters():
    model = SketchPPO(LinearGaussianPolicy, pendulum_vec_env(), n_steps=16, batch_size=16,
                      policy_kwargs={"critic": False})
    names = [n for n, _ in model.policy.named_parameters()]
    assert sorted(names) == ["action_net.bias", "action_net.weight", "log_std"]
    obs = torch.randn(4, 3)
    assert torch.count_nonzero(model.policy.predict_values(obs)) == 0


def test_critic_gets_its_own_learning_rate():
    model = SketchPPO(LinearGaussianPolicy, pendulum_vec_env(), learning_rate=3e-4, n_steps=16, batch_size=16,
                      policy_kwargs={"critic": True, "critic_lr": 1e-3})
    model.learn(32)
    lrs = [g["lr"] for g in model.policy.optimizer.param_groups]
    assert lrs == pytest.approx([3e-4, 1e-3])


def test_init_mean_from_query_layer_and_progress_column():
    env = pendulum_vec_env()  # obs dim 3: pretend the last entry is the completion fraction
    model = SketchPPO(LinearGaussianPolicy, env, n_steps=16, batch_size=16, policy_kwargs={"critic": False})
    w = np.arange(2, dtype=np.float32).reshape(1, 2)
    model.policy.init_mean_from(w, np.array([0.5], np.float32))
    obs = torch.tensor([[1.0, 2.0, 7.0]])
    assert model.policy.mean_actions(obs).item() == pytest.approx(0 * 1 + 1 * 2 + 0.5)
    with pytest.raises(ValueError, match="does not fit"):
        model.policy.init_mean_from(np.zeros((2, 3)), np.zeros(2))
