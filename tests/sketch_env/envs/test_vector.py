"""The natively batched env: equal to N single envs, NumPy = torch = numba."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import sketch_env  # noqa: F401  (registers the ids)
from embeddings.evaluate import evaluate_store
from embeddings.store import open_backend_store
from sketch_env.envs import kendall
from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv
from tests.helpers import SYNTHETIC

pytestmark = pytest.mark.usefixtures("env_cache")


def assert_infos_equal(a: dict, b: dict, where: str) -> None:
    """Gymnasium vector infos: same keys and masks, equal values where the mask is set."""
    assert set(a) == set(b), (where, set(a) ^ set(b))
    for key in a:
        if key.startswith("_"):
            continue
        mask = b[f"_{key}"]
        np.testing.assert_array_equal(a[f"_{key}"], mask, err_msg=f"{where} _{key}")
        if key == "final_info":
            assert_infos_equal(a[key], b[key], where + "/final_info")
        elif key == "final_obs":
            for i in np.flatnonzero(mask):
                np.testing.assert_array_equal(a[key][i], b[key][i])
        else:
            np.testing.assert_array_equal(a[key][mask], b[key][mask], err_msg=f"{where} {key}")


def _random_arrays(n=12, steps=6, feat=10, dim=16, photos=300, seed=0):
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(photos, dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery[7] = gallery[3]  # a duplicate photo: exact ties
    features = rng.normal(size=(n, steps, feat)).astype(np.float32)
    queries = rng.normal(size=(n, steps, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=-1, keepdims=True)
    return features, gallery, rng.integers(0, photos, size=n), queries


def _run(env, steps=14, seed=3):
    rng = np.random.default_rng(1)
    out = [env.reset(seed=seed)[0]]
    for t in range(steps):
        actions = rng.normal(size=env.action_space.shape).astype(np.float32)
        if t == 4:
            actions[0] = 0.0  # direct: a zero query, every photo tied; residual: the backend's own query
        obs, reward, term, trunc, info = env.step(actions)
        src = info["final_info"] if term.all() else info  # every episode ends at the same step here
        out += [obs, reward, term, src["rank"], src["topk"], src.get("kendall_tau", np.zeros(0))]
    return out


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
@pytest.mark.parametrize("kw", [{}, {"action": "residual", "observe_progress": True, "reward": "top5"}])
def test_native_equals_sync_vector_env_of_single_envs(synthetic_checkpoint, mode, kw):
    n = 5
    native = gym.make_vec(SYNTHETIC, num_envs=n, autoreset_mode=mode, progress=False, **kw)
    assert isinstance(native, OnTheFlyRetrievalVectorEnv)
    assert native.metadata["autoreset_mode"] == mode
    sync = gym.make_vec(
        SYNTHETIC, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, progress=False, **kw
    )
    obs_a, info_a = native.reset(seed=11)
    obs_b, info_b = sync.reset(seed=11)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert_infos_equal(info_a, info_b, "reset")
    rng = np.random.default_rng(0)
    scale = 0.05 if kw else 1.0
    for t in range(23):  # S = 10: crosses two episode ends
        actions = (scale * rng.normal(size=native.action_space.shape)).astype(np.float32)
        a, b = native.step(actions), sync.step(actions)
        for x, y, name in zip(a[:4], b[:4], ("obs", "reward", "terminated", "truncated")):
            np.testing.assert_array_equal(x, y, err_msg=f"step {t} {name}")
            assert x.dtype == y.dtype, name
        assert_infos_equal(a[4], b[4], f"step {t}")
    # a seeded reset again gives the same sketches as at first
    np.testing.assert_array_equal(native.reset(seed=11)[1]["sketch_index"], info_a["sketch_index"])


def test_reset_mask_and_sketch_index(synthetic_checkpoint):
    env = gym.make_vec(SYNTHETIC, num_envs=3, order="sequential", split="test", progress=False)
    _, info = env.reset(seed=0)
    assert info["sketch_index"].tolist() == [0, 1, 2]
    _, info = env.reset(options={"reset_mask": np.array([False, True, False])})
    assert info["sketch_index"].tolist() == [0, 4, 2] and info["_sketch_index"].tolist() == [False, True, False]
    _, info = env.reset(options={"sketch_index": np.array([5, 6, 7])})
    assert info["sketch_index"].tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.zeros(3, bool)})
    with pytest.raises(ValueError, match="render_mode"):
        gym.make_vec(SYNTHETIC, num_envs=2, render_mode="human")


def test_the_vector_env_renders_one_frame_per_env_of_one_size():
    from sketch_env.envs.render import frame_shape

    env = gym.make_vec(SYNTHETIC, num_envs=2, render_mode="rgb_array", progress=False)
    env.reset(seed=0)
    shapes = set()
    for _ in range(12):  # past the end of the 10-step episodes: autoreset
        env.step(env.action_space.sample())
        frames = env.render()
        assert len(frames) == 2
        shapes |= {f.shape for f in frames}
    assert shapes == {frame_shape(5)}


@pytest.mark.parametrize("action", ["direct", "residual"])
@pytest.mark.parametrize(
    "compute,kernel", [("numpy", "numpy"), ("numpy", "numba"), ("numpy", "numba-parallel"), ("torch", "auto")]
)
def test_compute_paths_agree(compute, kernel, action):
    if kernel.startswith("numba") and not kendall.numba_available():
        pytest.skip("numba is not installed (the [fast] extra)")
    arrays = _random_arrays()
    same = {"autoreset_mode": "same_step"}
    want = _run(OnTheFlyRetrievalVectorEnv.from_arrays(*arrays, num_envs=8, action=action, kernel="numpy", **same))
    got = _run(OnTheFlyRetrievalVectorEnv.from_arrays(*arrays, num_envs=8, action=action, compute=compute,
                                                      kernel=kernel, **same))
    for x, y in zip(want, got):
        np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_numpy():
    arrays = _random_arrays(photos=2000)
    same = {"autoreset_mode": "same_step"}
    want = _run(OnTheFlyRetrievalVectorEnv.from_arrays(*arrays, num_envs=8, kernel="numpy", **same))
    got = _run(OnTheFlyRetrievalVectorEnv.from_arrays(*arrays, num_envs=8, compute="torch", device="cuda", **same))
    for x, y in zip(want, got):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("compute", ["numpy", "torch"])
def test_zero_residual_batch_reproduces_the_backend_ranks(synthetic_checkpoint, compute):
    _, _, store = open_backend_store(synthetic_checkpoint, "test", steps=10, progress=False)
    want = evaluate_store(store)["ranks"]
    n = len(want)
    env = gym.make_vec(SYNTHETIC, num_envs=n, split="test", action="residual", order="sequential", compute=compute,
                       autoreset_mode="same_step", progress=False)
    env.reset(seed=0)
    got = np.zeros_like(want)
    for t in range(10):
        _, _, term, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        got[:, t] = info["final_info"]["rank"] if t == 9 else info["rank"]
    assert term.all()
    np.testing.assert_array_equal(got, want)


def test_gymnasiums_vector_wrappers_work_on_the_native_env():
    """The default next-step autoreset is the one Gymnasium's vector wrappers accept; per-env wrappers go
    through gym.make_vec's sync mode."""
    from gymnasium.wrappers.vector import NormalizeObservation, RecordEpisodeStatistics

    env = RecordEpisodeStatistics(NormalizeObservation(gym.make_vec(SYNTHETIC, num_envs=3, progress=False)))
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    env.reset(seed=0)
    episodes = []
    for _ in range(22):  # two 10-step episodes, and the reset steps between them
        _, _, term, _, info = env.step(env.action_space.sample())
        if "episode" in info:
            episodes += list(info["episode"]["l"][info["_episode"]])
    assert episodes and set(episodes) == {10}
    sync = gym.make_vec(SYNTHETIC, num_envs=2, vectorization_mode="sync", progress=False,
                        wrappers=[lambda e: gym.wrappers.TimeLimit(e, max_episode_steps=4)])
    sync.reset(seed=0)
    for _ in range(4):
        _, _, term, trunc, _ = sync.step(sync.action_space.sample())
    assert trunc.all() and not term.any()


def test_sb3_trains_on_make_sb3_vec_env():
    from stable_baselines3 import PPO

    from sketch_env.envs.sb3 import make_sb3_vec_env

    model = PPO("MlpPolicy", make_sb3_vec_env(SYNTHETIC, num_envs=4, seed=0, progress=False), n_steps=32,
                batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
