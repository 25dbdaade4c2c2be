"""The single retrieval env: determinism, pickling, rewards, ranks, rendering, errors."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import sketch_env  # noqa: F401  (registers the ids)
from embeddings.evaluate import evaluate_store
from embeddings.store import open_backend_store
from sketch_env import metrics
from sketch_env.envs import kendall, rewards
from sketch_env.envs.render import frame_shape
from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv
from tests.helpers import make_env

pytestmark = pytest.mark.usefixtures("env_cache")


def rollout(env, seed: int, episodes: int = 2, action_seed: int = 0, zero: bool = False):
    rng = np.random.default_rng(action_seed)
    out = []
    obs, info = env.reset(seed=seed)
    out.append((obs, info["sketch_index"]))
    for _ in range(episodes):
        done = False
        while not done:
            a = (
                np.zeros(env.action_space.shape, np.float32)
                if zero
                else env.action_space.sample() * 0 + rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            )
            obs, r, term, trunc, info = env.step(a)
            out.append((obs, r, term, trunc, {k: np.asarray(v) for k, v in info.items()}))
            done = term or trunc
        obs, info = env.reset()
        out.append((obs, info["sketch_index"]))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                for k in u:
                    np.testing.assert_array_equal(u[k], v[k], err_msg=k)
            else:
                np.testing.assert_array_equal(u, v)


def test_same_seed_same_rollout(ckpt):
    a = rollout(make_env(ckpt), seed=3)
    b = rollout(make_env(ckpt), seed=3)
    assert_same(a, b)
    c = rollout(make_env(ckpt), seed=4, action_seed=1)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_env_pickles_mid_episode(ckpt):
    env = make_env(ckpt, observe_progress=True)
    env.reset(seed=1)
    for _ in range(3):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    # store-backed data pickle as their load arguments, not their arrays
    assert len(pickle.dumps(env.data)) < 4000
    assert_same(rollout(env, seed=7), rollout(clone, seed=7))
    env.reset(seed=2)
    clone.reset(seed=2)
    a = np.full(env.action_space.shape, 0.3, np.float32)
    assert_same([env.step(a)[:4]], [clone.step(a)[:4]])


def test_observations_are_fresh_copies_within_bounds(ckpt):
    env = make_env(ckpt, observe_progress=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert obs[-1] == pytest.approx(1 / env.steps)
    before = np.array(env.data.sketch_features[env.data.rows(np.array([env._engine.sketch[0]])), 0])
    obs[:] = 123.0  # must not write through to the store
    np.testing.assert_array_equal(env.data.sketch_features[env.data.rows(np.array([env._engine.sketch[0]])), 0], before)
    fractions = []
    for _ in range(env.steps):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        fractions.append(obs[-1])
    np.testing.assert_allclose(fractions, [min(t + 2, env.steps) / env.steps for t in range(env.steps)], rtol=1e-6)


def test_residual_zero_action_reproduces_the_backend_ranks_exactly(ckpt):
    _, _, store = open_backend_store(ckpt, "test", steps=10, progress=False)
    want = evaluate_store(store)["ranks"]
    env = make_env(ckpt, split="test", action="residual", order="sequential", reward="inverse_rank")
    got = np.zeros_like(want)
    env.reset(seed=0)
    for i in range(env.num_sketches):
        _, info = env.reset(options={"sketch_index": i})
        for t in range(env.steps):
            _, r, term, _, step = env.step(np.zeros(env.action_space.shape, np.float32))
            got[i, t] = step["rank"]
            assert r == 1.0 / step["rank"]
        assert term
    np.testing.assert_array_equal(got, want)


def test_ranks_taus_and_paper_return_recomputed_independently(ckpt):
    env = make_env(ckpt, split="test", gamma1=0.7, gamma2=2.5)
    data = env.data
    rng = np.random.default_rng(5)
    for episode in range(3):
        _, info = env.reset(seed=episode)
        true = info["photo_index"]
        ranks, taus, total, prev = [], [], 0.0, None
        for t in range(env.steps):
            a = rng.normal(size=env.action_space.shape).astype(np.float32)
            _, r, term, _, step = env.step(a)
            q = a.astype(np.float64) / np.linalg.norm(a.astype(np.float64))
            d = np.linalg.norm(q[None] - data.gallery.astype(np.float64), axis=1)
            assert step["rank"] == int((d <= d[true]).sum())
            assert step["percentile"] == metrics.ranking_percentile(step["rank"], data.gallery_size)
            assert step["topk"].tolist() == np.argsort(d, kind="stable")[:5].tolist()
            if prev is None:
                assert "kendall_tau" not in step
            else:
                assert step["kendall_tau"] == pytest.approx(kendall.kendall_tau_distance(prev, d), abs=1e-12)
                taus.append(step["kendall_tau"])
            if t < 2:
                assert step["global_reward"] == 0.0
            assert r == pytest.approx(0.7 * step["local_reward"] + 2.5 * step["global_reward"])
            prev = d
            ranks.append(step["rank"])
            total += r
        assert term and step["step"] == env.steps
        assert total == pytest.approx(rewards.paper_return(np.array(ranks), np.array(taus), 0.7, 2.5), abs=1e-12)


@pytest.mark.parametrize("scheme", rewards.REWARD_SCHEMES)
def test_each_scheme_in_the_env(ckpt, scheme):
    env = make_env(ckpt, reward=scheme, reward_scale=2.0)
    env.reset(seed=0)
    for _ in range(env.steps):
        _, r, _, _, info = env.step(env.action_space.sample())
        local = rewards.local_reward(scheme, info["rank"])
        assert info["local_reward"] == local
        assert r == pytest.approx(2.0 * (local + info["global_reward"]))


def test_zero_direct_action_ties_every_photo(ckpt):
    env = make_env(ckpt)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["rank"] == env.gallery_size and np.isfinite(r)
    assert info["topk"].tolist() == list(range(5))  # all tied: the ranking is the index order


def test_sequential_order_and_sketch_index_option(ckpt):
    env = make_env(ckpt, order="sequential", split="test")
    seen = [env.reset(seed=0)[1]["sketch_index"]] + [env.reset()[1]["sketch_index"] for _ in range(env.num_sketches)]
    assert seen == list(range(env.num_sketches)) + [0]
    assert env.reset(seed=0)[1]["sketch_index"] == 0
    assert env.reset(options={"sketch_index": 3})[1]["sketch_index"] == 3
    with pytest.raises(ValueError, match="sketch_index"):
        env.reset(options={"sketch_index": env.num_sketches})


def test_record_video_writes_one_file_per_episode_with_every_frame(ckpt, tmp_path):
    """gymnasium's RecordVideo (moviepy, ffmpeg) on the env: a video per episode, S + 1 frames (the reset's and
    one per step) of the documented size."""
    import imageio.v3 as iio
    from gymnasium.wrappers import RecordVideo

    env = gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, steps=10, render_mode="rgb_array",
                   progress=False)
    env = RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda e: True, disable_logger=True)
    for episode in range(2):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, done, _, _ = env.step(env.action_space.sample())
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2
    frames = np.stack(list(iio.imiter(videos[0])))
    assert frames.shape == (11, *frame_shape(5))


def test_render_rgb_array(ckpt):
    env = gym.make(
        "SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, steps=10, render_mode="rgb_array", progress=False
    )
    env.reset(seed=0)
    before = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape == frame_shape(5)
    env.step(env.action_space.sample())
    image = env.render()
    assert image.shape == before.shape  # one frame size at every step
    assert (image != before).any()  # the top-k photos (and the true one) are drawn
    green = (image[..., 1] > 150) & (image[..., 0] < 60) & (image[..., 2] < 60)
    assert green.sum() > 100  # the true photo's frame
    shapes = set()
    for episode in range(3):  # and in every episode, whatever the ranking
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, done, _, _ = env.step(env.action_space.sample())
            shapes.add(env.render().shape)
    assert shapes == {frame_shape(5)}
    with pytest.raises(ValueError, match="render_mode"):
        OnTheFlyRetrievalEnv.from_arrays(
            np.zeros((2, 3, 4), np.float32), np.eye(4, dtype=np.float32), np.array([0, 1]), render_mode="rgb_array"
        )


def test_random_and_zero_residual_agents_end_to_end(ckpt):
    """A random agent and the frozen model (zero residual) over the whole train split."""
    scores = {}
    for name, kw in {"random": {}, "zero residual": {"action": "residual"}}.items():
        env = gym.make(
            "SketchEnv/OnTheFly-v0",
            dataset="synthetic",
            backend=ckpt,
            steps=10,
            order="sequential",
            progress=False,
            **kw,
        )
        env.reset(seed=0)
        ranks = np.zeros((env.unwrapped.num_sketches, 10))
        for i in range(len(ranks)):
            env.reset()
            for t in range(10):
                a = env.action_space.sample() if name == "random" else np.zeros(env.action_space.shape, np.float32)
                _, _, term, _, info = env.step(a)
                ranks[i, t] = info["rank"]
            assert term
        scores[name] = metrics.summarise(ranks, env.unwrapped.gallery_size)
    # a random query ranks the true photo uniformly: percentile about 1/2
    assert 35 < scores["random"]["m@A"] < 65
    assert scores["zero residual"]["m@B"] > scores["random"]["m@B"]


def test_errors_name_what_is_wrong(ckpt):
    with pytest.raises(ValueError, match="unknown reward"):
        make_env(ckpt, reward="ranks")
    with pytest.raises(TypeError, match="unknown argument"):
        make_env(ckpt, gamma=1.0)
    with pytest.raises(ValueError, match="split must be one of"):
        make_env(ckpt, split="dev")
    with pytest.raises(ValueError, match="kendall=False"):
        make_env(ckpt, kendall=False)
    env = make_env(ckpt)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_space.shape, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(env.action_space.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    arrays = (np.ones((2, 3, 4), np.float32), np.eye(4, dtype=np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="residual"):
        OnTheFlyRetrievalEnv.from_arrays(*arrays, action="residual")
    with pytest.raises(ValueError, match="obs_bound"):
        OnTheFlyRetrievalEnv.from_arrays(arrays[0] * 5000, *arrays[1:])
    with pytest.raises(ValueError, match="L2-normalised"):
        OnTheFlyRetrievalEnv.from_arrays(arrays[0], arrays[1] * 2, arrays[2])
    with pytest.raises(ValueError, match="photo_index"):
        OnTheFlyRetrievalEnv.from_arrays(arrays[0], arrays[1], np.array([0, 9]))
    env = make_env(ckpt, reward="top5", kendall=False)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "kendall_tau" not in env.step(env.action_space.sample())[4]
