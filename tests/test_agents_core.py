"""The RL methods' building blocks: losses on hand-computed cases, the adaptive KL coefficient, the policy,
safe save/load. (Learning on the retrieval env is in tests/test_agents.py.)"""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents import losses
from agents.algorithms import ALGORITHMS, SketchPPO, algorithm_spec
from agents.config import load_hyperparams, parse_override
from agents.io import load_agent, save_agent
from agents.policy import LinearGaussianPolicy
from sketch_env.errors import DataFormatError


def test_clipped_surrogate_hand_computed():
    # ratios 1.5 and 0.5 with advantages +1 and -1, clip 0.2:
    # sample 1: min(1.5 * 1, 1.2 * 1) = 1.2; sample 2: min(0.5 * -1, 0.8 * -1) = -0.8; loss = -(1.2 - 0.8) / 2
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    adv = torch.tensor([1.0, -1.0])
    assert losses.clipped_surrogate_loss(new, old, adv, 0.2).item() == pytest.approx(-0.2)


def test_kl_penalty_loss_hand_computed():
    new = torch.log(torch.tensor([2.0, 1.0]))
    adv = torch.tensor([1.0, 3.0])
    kl = torch.tensor([0.1, 0.3])
    # -(2*1 + 1*3)/2 + 0.5 * 0.2
    assert losses.kl_penalty_surrogate_loss(new, torch.zeros(2), adv, kl, 0.5).item() == pytest.approx(-2.4)


def test_vpg_loss_and_value_loss():
    assert losses.vpg_loss(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5])).item() == pytest.approx(1.0)
    assert losses.value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])).item() == pytest.approx(2.5)


def test_diag_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m0, m1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    s0, s1 = torch.randn(3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.3
    ours = losses.diag_gaussian_kl(m0, s0, m1, s1)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m0, s0.exp()),
                                            torch.distributions.Normal(m1, s1.exp())).sum(-1)
    torch.testing.assert_close(ours, ref)


def test_adapt_kl_coef_directions():
    assert losses.adapt_kl_coef(1.0, kl=0.001, target_kl=0.01) == 0.5
    assert losses.adapt_kl_coef(1.0, kl=0.1, target_kl=0.01) == 2.0
    assert losses.adapt_kl_coef(1.0, kl=0.01, target_kl=0.01) == 1.0


def _pendulum(n=2):
    return make_vec_env("Pendulum-v1", n_envs=n, seed=0)


@pytest.mark.parametrize("lr, direction", [(0.3, "up"), (1e-7, "down")])
def test_kl_penalty_coefficient_adapts_in_the_right_direction(lr, direction):
    """A huge step moves the policy far (KL >> target: beta doubles); a tiny one barely (beta halves)."""
    model = SketchPPO(LinearGaussianPolicy, _pendulum(), penalty="kl", kl_coef=1.0, kl_target=0.01,
                      learning_rate=lr, n_steps=64, batch_size=64, n_epochs=4, seed=0,
                      policy_kwargs={"critic": False})
    model.learn(128)
    assert (model.kl_coef > 1.0) if direction == "up" else (model.kl_coef < 1.0)


def test_actor_only_policy_has_no_critic_parameters():
    model = SketchPPO(LinearGaussianPolicy, _pendulum(), n_steps=16, batch_size=16, policy_kwargs={"critic": False})
    names = [n for n, _ in model.policy.named_parameters()]
    assert sorted(names) == ["action_net.bias", "action_net.weight", "log_std"]
    obs = torch.randn(4, 3)
    assert torch.count_nonzero(model.policy.predict_values(obs)) == 0


def test_critic_gets_its_own_learning_rate():
    model = SketchPPO(LinearGaussianPolicy, _pendulum(), learning_rate=3e-4, n_steps=16, batch_size=16,
                      policy_kwargs={"critic": True, "critic_lr": 1e-3})
    model.learn(32)
    lrs = [g["lr"] for g in model.policy.optimizer.param_groups]
    assert lrs == pytest.approx([3e-4, 1e-3])


def test_init_mean_from_query_layer_and_progress_column():
    env = _pendulum()  # obs dim 3: pretend the last entry is the completion fraction
    model = SketchPPO(LinearGaussianPolicy, env, n_steps=16, batch_size=16, policy_kwargs={"critic": False})
    w = np.arange(2, dtype=np.float32).reshape(1, 2)
    model.policy.init_mean_from(w, np.array([0.5], np.float32))
    obs = torch.tensor([[1.0, 2.0, 7.0]])
    assert model.policy.mean_actions(obs).item() == pytest.approx(0 * 1 + 1 * 2 + 0.5)
    with pytest.raises(ValueError, match="does not fit"):
        model.policy.init_mean_from(np.zeros((2, 3)), np.zeros(2))


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_save_load_round_trip_without_unpickling(tmp_path, name):
    cls, fixed, policy_kwargs = algorithm_spec(name)
    hp = {"n_steps": 16} | ({} if name == "vpg" else {"batch_size": 16})
    model = cls(LinearGaussianPolicy, _pendulum(), policy_kwargs=policy_kwargs, seed=0, **fixed, **hp)
    model.learn(32)
    path = save_agent(model, tmp_path / "agent", name, "Pendulum-v1", {}, hp)
    loaded = load_agent(path)
    assert type(loaded) is cls
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_load_refuses_foreign_and_tampered_files(tmp_path):
    plain = PPO("MlpPolicy", _pendulum(), n_steps=16, batch_size=16)
    plain.save(tmp_path / "plain.zip")
    with pytest.raises(DataFormatError, match="no sketch-env metadata"):
        load_agent(tmp_path / "plain.zip")
    # a file of ours with one more pickled value than the metadata covers
    model = SketchPPO(LinearGaussianPolicy, _pendulum(), n_steps=16, batch_size=16)
    path = save_agent(model, tmp_path / "ours", "ppo-a-clip", "Pendulum-v1", {}, {})
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = json.loads(members["data"])
    data["evil"] = {":type:": "<class 'function'>", ":serialized:": "gAR9lC4="}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "tampered.zip", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(DataFormatError, match=r"pickled values \['evil'\]"):
        load_agent(tmp_path / "tampered.zip")


def test_hyperparams_files_load_for_every_method():
    for name in ALGORITHMS:
        hp = load_hyperparams(name, "SketchEnv/OnTheFly-Kanji-v0")
        assert hp["n_envs"] > 0 and hp["n_steps"] > 0
    hp = load_hyperparams("ppo-a-clip", "some/other-id", {"learning_rate": 1e-4, "policy_kwargs": {"log_std_init": -1}})
    assert hp["learning_rate"] == 1e-4 and hp["policy_kwargs"]["log_std_init"] == -1
    assert hp["policy_kwargs"]["init_from_backend"] is True  # merged, not replaced
    assert parse_override("policy_kwargs={critic_arch: [32]}") == ("policy_kwargs", {"critic_arch": [32]})
    with pytest.raises(ValueError, match="unknown RL method"):
        load_hyperparams("a2c", "x")


def test_vpg_weights_are_each_steps_own_reward():
    """Without a baseline VPG's weights are the rewards themselves (gamma 0, V = 0), as the authors' code."""
    model = ALGORITHMS["vpg"][0](LinearGaussianPolicy, _pendulum(), n_steps=8, policy_kwargs={"critic": False})
    model.learn(16)
    buf = model.rollout_buffer
    # the buffer's get() flattened advantages env-major: (n_steps, n_envs) -> (n_envs * n_steps, 1)
    np.testing.assert_allclose(buf.advantages.ravel(), buf.rewards.swapaxes(0, 1).ravel(), rtol=1e-6)
    assert math.isclose(model.gamma, 0.0)
