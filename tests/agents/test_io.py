"""Saved agents (agents.io): save/load without unpickling, foreign and tampered files refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from stable_baselines3 import PPO

from agents.algorithms import ALGORITHMS, SketchPPO, algorithm_spec
from agents.io import load_agent, save_agent
from agents.policy import LinearGaussianPolicy
from sketch_env.errors import DataFormatError
from tests.helpers import SYNTHETIC, pendulum_vec_env


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_save_load_round_trip_without_unpickling(tmp_path, name):
    cls, fixed, policy_kwargs = algorithm_spec(name)
    hp = {"n_steps": 16} | ({} if name == "vpg" else {"batch_size": 16})
    model = cls(LinearGaussianPolicy, pendulum_vec_env(), policy_kwargs=policy_kwargs, seed=0, **fixed, **hp)
    model.learn(32)
    path = save_agent(model, tmp_path / "agent", name, SYNTHETIC, {}, hp)
    loaded = load_agent(path)
    assert type(loaded) is cls
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_load_refuses_foreign_and_tampered_files(tmp_path):
    plain = PPO("MlpPolicy", pendulum_vec_env(), n_steps=16, batch_size=16)
    plain.save(tmp_path / "plain.zip")
    with pytest.raises(DataFormatError, match="no sketch-env metadata"):
        load_agent(tmp_path / "plain.zip")
    # a file of ours with one more pickled value than the metadata covers
    model = SketchPPO(LinearGaussianPolicy, pendulum_vec_env(), n_steps=16, batch_size=16)
    path = save_agent(model, tmp_path / "ours", "ppo-a-clip", SYNTHETIC, {}, {})
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
