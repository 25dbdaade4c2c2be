"""The fast trainer's device env (agents.fast.env): equal to the Gymnasium vector env, seeded groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.fast.env import DeviceRetrievalEnv
from sketch_env.envs.data import RetrievalData
from sketch_env.envs.engine import EnvOptions


def _random_data(rng, n=12, steps=4, f=6, d=5, p=30, queries=True):
    gallery = rng.normal(size=(p, d)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    q = rng.normal(size=(n, steps, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    return RetrievalData.from_arrays(rng.normal(size=(n, steps, f)).astype(np.float32), gallery,
                                     rng.integers(0, p, size=n), q if queries else None)


@pytest.mark.parametrize("compute", ["torch", "numpy"])
@pytest.mark.parametrize("reward,action", [("paper", "direct"), ("inverse_rank", "residual"), ("top5", "direct")])
def test_device_env_equals_the_gymnasium_vector_env(compute, reward, action):
    """Same sketches and actions -> the same observations, ranks and rewards as the native vector env,
    over two episodes (the second started by the device env's own autoreset, matched by resetting the
    Gymnasium env on the sketches the device env drew)."""
    from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv

    rng = np.random.default_rng(1)
    data = _random_data(rng)
    n = 6
    opts = EnvOptions(reward=reward, action=action)
    fast = DeviceRetrievalEnv(data, n, opts, seeds=(3, 4), compute=compute)
    ref = OnTheFlyRetrievalVectorEnv(n, data=data, reward=reward, action=action, autoreset_mode="next_step")
    obs = fast.reset()
    for _episode in range(2):
        ref_obs, _ = ref.reset(options={"sketch_index": fast.sketch.numpy()})
        np.testing.assert_array_equal(obs.numpy(), ref_obs)
        for t in range(data.steps):
            a = rng.normal(size=(n, data.embed_dim)).astype(np.float32) * 0.5
            if t == 1:
                a[0] = 0  # a zero action (all photos tie in direct mode)
            ref_obs, ref_r, ref_term, _, info = ref.step(a)
            obs, r, rank, done = fast.step(torch.from_numpy(a))
            np.testing.assert_array_equal(rank.numpy(), info["rank"])
            np.testing.assert_allclose(r.numpy(), ref_r.astype(np.float32), rtol=0, atol=0)
            assert done == bool(ref_term.all()) and ref_term.all() == ref_term.any()
            if not done:
                np.testing.assert_array_equal(obs.numpy(), ref_obs)


def test_device_env_groups_draw_from_their_own_seeds():
    data = _random_data(np.random.default_rng(2), n=50)
    a = DeviceRetrievalEnv(data, 8, seeds=(5, 6), compute="torch")
    b = DeviceRetrievalEnv(data, 4, seeds=(6,), compute="torch")
    a.reset(), b.reset()
    np.testing.assert_array_equal(a.sketch[4:].numpy(), b.sketch.numpy())
    with pytest.raises(ValueError, match="multiple"):
        DeviceRetrievalEnv(data, 5, seeds=(1, 2))
    with pytest.raises(ValueError, match="actions must have shape"):
        a.step(torch.zeros(3, data.embed_dim))
