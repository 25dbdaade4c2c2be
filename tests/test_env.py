"""The single retrieval env: every registered spec, determinism, pickling, rewards, ranks, rendering.

All tests run on the synthetic dataset with the tiny B1 that ``SketchEnv/OnTheFly-Synthetic-v0`` trains on
first use (``synthetic_checkpoint``, a few seconds, into a per-session cache). Specs that need a data
folder or a 10-minute backend (kanji, ShoeV2, ChairV2, the generic id) are checked with the overrides
``dataset="synthetic", backend=<that checkpoint>, data_root=None, steps=10``: their own configuration is
checked separately (the data-root error, the missing-backend message).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

import sketch_env  # noqa: F401  (registers the ids)
from embeddings.evaluate import evaluate_store
from embeddings.provision import load_retrieval_data
from embeddings.store import open_backend_store
from sketch_env import metrics
from sketch_env.envs import ENV_IDS, kendall, rewards
from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv

pytestmark = pytest.mark.usefixtures("env_cache")
SYNTHETIC = "SketchEnv/OnTheFly-Synthetic-v0"


@pytest.fixture(scope="module")
def ckpt(synthetic_checkpoint):
    return synthetic_checkpoint


def overrides(env_id: str, ckpt: str) -> dict:
    if env_id == SYNTHETIC:
        return {"progress": False}
    return {"dataset": "synthetic", "backend": ckpt, "data_root": None, "steps": 10, "progress": False}


def make(ckpt, **kw) -> OnTheFlyRetrievalEnv:
    kw = {"dataset": "synthetic", "backend": ckpt, "steps": 10, "progress": False, **kw}
    return gym.make("SketchEnv/OnTheFly-v0", **kw).unwrapped


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


# ------------------------------------------------------------------------------------------ registry


def test_ids_are_registered_with_vector_entry_points():
    sketch_env.envs.register_envs()  # idempotent
    for env_id in ENV_IDS:
        spec = gym.spec(env_id)
        # the provisioning factories of the embedding layer: they turn the spec's names into the env's data
        assert spec.vector_entry_point == "embeddings.provision:make_retrieval_vector_env"
        assert spec.entry_point == "embeddings.provision:make_retrieval_env"
    assert {
        "SketchEnv/OnTheFly-v0",
        "SketchEnv/OnTheFly-Kanji-v0",
        "SketchEnv/OnTheFly-ShoeV2-v0",
        "SketchEnv/OnTheFly-ChairV2-v0",
        SYNTHETIC,
    } == set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_round_trips_through_json(env_id):
    spec = gym.spec(env_id)
    again = EnvSpec.from_json(spec.to_json())
    assert again == spec and again.kwargs == spec.kwargs


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_over_the_registry(env_id, ckpt):
    env = gym.make(env_id, **overrides(env_id, ckpt))
    check_env(env.unwrapped)
    # the overridden spec (what spec.make rebuilds for the render check) also round-trips through JSON
    assert EnvSpec.from_json(env.unwrapped.spec.to_json()).kwargs == env.unwrapped.spec.kwargs
    env.close()


def test_disk_datasets_ask_for_data_root():
    for env_id in ("SketchEnv/OnTheFly-ShoeV2-v0", "SketchEnv/OnTheFly-ChairV2-v0"):
        with pytest.raises(ValueError, match="data_root=PATH"):
            gym.make(env_id)


def test_missing_backend_names_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ folder here
    with pytest.raises(FileNotFoundError, match="sketch-env embed train --backend b2 --dataset synthetic") as err:
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend="b2")
    assert "train_if_missing=True" in str(err.value)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        gym.make("SketchEnv/OnTheFly-v0", backend=str(tmp_path / "nope.pt"))


# ------------------------------------------------------------------------------------- determinism


def test_same_seed_same_rollout(ckpt):
    a = rollout(make(ckpt), seed=3)
    b = rollout(make(ckpt), seed=3)
    assert_same(a, b)
    c = rollout(make(ckpt), seed=4, action_seed=1)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_env_pickles_mid_episode(ckpt):
    env = make(ckpt, observe_progress=True)
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
    env = make(ckpt, observe_progress=True)
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


# ---------------------------------------------------------------------------------- ranks, rewards


def test_residual_zero_action_reproduces_the_backend_ranks_exactly(ckpt):
    _, _, store = open_backend_store(ckpt, "test", steps=10, progress=False)
    want = evaluate_store(store)["ranks"]
    env = make(ckpt, split="test", action="residual", order="sequential", reward="inverse_rank")
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
    env = make(ckpt, split="test", gamma1=0.7, gamma2=2.5)
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
    env = make(ckpt, reward=scheme, reward_scale=2.0)
    env.reset(seed=0)
    for _ in range(env.steps):
        _, r, _, _, info = env.step(env.action_space.sample())
        local = rewards.local_reward(scheme, info["rank"])
        assert info["local_reward"] == local
        assert r == pytest.approx(2.0 * (local + info["global_reward"]))


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


def test_zero_direct_action_ties_every_photo(ckpt):
    env = make(ckpt)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["rank"] == env.gallery_size and np.isfinite(r)
    assert info["topk"].tolist() == list(range(5))  # all tied: the ranking is the index order


def test_sequential_order_and_sketch_index_option(ckpt):
    env = make(ckpt, order="sequential", split="test")
    seen = [env.reset(seed=0)[1]["sketch_index"]] + [env.reset()[1]["sketch_index"] for _ in range(env.num_sketches)]
    assert seen == list(range(env.num_sketches)) + [0]
    assert env.reset(seed=0)[1]["sketch_index"] == 0
    assert env.reset(options={"sketch_index": 3})[1]["sketch_index"] == 3
    with pytest.raises(ValueError, match="sketch_index"):
        env.reset(options={"sketch_index": env.num_sketches})


def test_splits_distractors_and_validation(ckpt):
    train = make(ckpt).data
    val = make(ckpt, split="val").data
    test = make(ckpt, split="test").data
    names = lambda d: {p.instance for p in d.photo_records}  # noqa: E731
    assert names(train).isdisjoint(names(val)) and names(train).isdisjoint(names(test))
    assert {r.instance for r in val.sketch_records} == names(val)
    assert train.num_sketches + val.num_sketches == len(
        load_retrieval_data("synthetic", ckpt, steps=10, split="train").dataset.sketches("train")
    )
    hard = make(ckpt, split="test", distractors=True, action="residual")
    assert hard.gallery_size == train.gallery_size + val.gallery_size + test.gallery_size
    np.testing.assert_array_equal(hard.data.photo_index, test.photo_index)
    easy = make(ckpt, split="test", action="residual")
    for i in range(easy.num_sketches):
        easy.reset(options={"sketch_index": i})
        hard.reset(options={"sketch_index": i})
        zero = np.zeros(easy.action_space.shape, np.float32)
        assert hard.step(zero)[4]["rank"] >= easy.step(zero)[4]["rank"]


def test_render_rgb_array(ckpt):
    env = gym.make(
        "SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, steps=10, render_mode="rgb_array", progress=False
    )
    env.reset(seed=0)
    before = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    env.step(env.action_space.sample())
    image = env.render()
    assert image.shape[1] > before.shape[1]  # the top-k photos (and the true one) are drawn
    green = (image[..., 1] > 150) & (image[..., 0] < 60) & (image[..., 2] < 60)
    assert green.sum() > 100  # the true photo's frame
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
        make(ckpt, reward="ranks")
    with pytest.raises(TypeError, match="unknown argument"):
        make(ckpt, gamma=1.0)
    with pytest.raises(ValueError, match="split must be one of"):
        make(ckpt, split="dev")
    with pytest.raises(ValueError, match="kendall=False"):
        make(ckpt, kendall=False)
    env = make(ckpt)
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
    env = make(ckpt, reward="top5", kendall=False)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "kendall_tau" not in env.step(env.action_space.sample())[4]


def test_kanji_backend_is_trained_on_first_use_then_reused(tmp_path, monkeypatch, capsys):
    """The kanji spec's path when no backend exists: one training run into the cache (here a stand-in that
    writes the file instead of training for 10 minutes), with a message; later uses find it."""
    import embeddings.train as train
    from embeddings.provision import resolve_backend_checkpoint

    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "backend.pt").write_bytes(b"stand-in")
        (out / "history.json").write_text("[]")
        return out / "backend.pt"

    monkeypatch.setattr(train, "train_backend", fake_train)
    assert gym.spec("SketchEnv/OnTheFly-Kanji-v0").kwargs["train_if_missing"] is True
    path = resolve_backend_checkpoint("b1", "kanji", "instance", train_if_missing=True)
    assert len(calls) == 1
    cfg = calls[0]
    assert (cfg.backend, cfg.dataset, cfg.scheme, cfg.minutes, cfg.epochs) == ("b1", "kanji", "instance", 10.0, 60)
    assert path.parent.name == "b1-s0" and path.parent.parent.name == "kanji-instance"
    message = capsys.readouterr().err
    assert "training it now (10 minutes at most" in message
    assert "sketch-env embed train --backend b1 --dataset kanji --scheme instance --minutes 10 --epochs 60" in message
    assert resolve_backend_checkpoint("b1", "kanji", "instance", train_if_missing=True) == path
    assert len(calls) == 1  # found, not trained again
    # a run written by `sketch-env embed train` under ./runs takes precedence
    runs = tmp_path / "runs" / "embeddings" / "kanji-instance" / "b1-s0"
    runs.mkdir(parents=True)
    (runs / "backend.pt").write_bytes(b"x")
    assert resolve_backend_checkpoint("b1", "kanji", "instance").resolve() == (runs / "backend.pt").resolve()
