"""The Stable-Baselines3 adapter of the batched env: SB3's conventions, and PPO learns on it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sketch_env  # noqa: F401  (registers the ids)
from tests.helpers import SYNTHETIC

pytestmark = pytest.mark.usefixtures("env_cache")


def test_sb3_adapter_conventions_and_ppo_learns(synthetic_checkpoint):
    from stable_baselines3 import PPO

    from sketch_env.envs.sb3 import SB3VecEnv

    venv = SB3VecEnv(gym.make_vec(SYNTHETIC, num_envs=4, autoreset_mode="same_step", progress=False))
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (4, *venv.observation_space.shape)
    assert [i["sketch_index"] for i in venv.reset_infos] == [
        int(s) for s in gym.make_vec(SYNTHETIC, num_envs=4, progress=False).reset(seed=3)[1]["sketch_index"]
    ]
    for _ in range(10):
        obs, reward, dones, infos = venv.step(np.zeros((4, *venv.action_space.shape), np.float32))
    assert reward.dtype == np.float32 and dones.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is False
        assert info["terminal_observation"].shape == venv.observation_space.shape
        assert info["step"] == 10 and "rank" in info
    assert venv.get_attr("gallery_size") == [venv.venv.gallery_size] * 4
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 4
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(gym.make_vec(SYNTHETIC, num_envs=2, autoreset_mode="next_step", progress=False))
