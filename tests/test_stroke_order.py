"""The PettingZoo stroke-order game: PettingZoo's API and seed tests, the action mask, errors, timing."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

from sketch_env import stroke_order_v0
from sketch_env.envs import rewards


@pytest.fixture(scope="module")
def make(synthetic_checkpoint):
    def _make(**kw):
        return stroke_order_v0.parallel_env(dataset="synthetic", backend=synthetic_checkpoint, split="test",
                                            progress=False, **kw)
    return _make


def _play(env, seed=0, policy="first", options=None):
    """One episode; returns the per-step infos of the retriever and the sketcher's masks seen."""
    obs, _ = env.reset(seed=seed, options=options)
    rng = np.random.default_rng(seed)
    steps, masks = [], []
    while env.agents:
        acts = {"retriever": np.zeros(env.action_space("retriever").shape, np.float32) + 0.1}
        if "sketcher" in env.agents:
            mask = obs["sketcher"]["action_mask"]
            masks.append(mask.copy())
            legal = np.flatnonzero(mask)
            acts["sketcher"] = int(legal[0] if policy == "first" else rng.choice(legal))
        obs, rew, term, trunc, info = env.step(acts)
        steps.append((rew, term, info))
    return steps, masks


def test_pettingzoo_api_tests_pass(make, synthetic_checkpoint):
    parallel_api_test(make(), num_cycles=60)
    # the AEC test also checks every observation lies in its space (the parallel one does not)
    api_test(stroke_order_v0.env(dataset="synthetic", backend=synthetic_checkpoint, split="test", progress=False),
             num_cycles=60)
    parallel_seed_test(make)


def test_mask_never_allows_a_drawn_stroke(make):
    env = make()
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        n = obs["sketcher"]["action_mask"].sum()
        rng = np.random.default_rng(seed)
        drawn = []
        while env.agents:
            acts = {"retriever": env.action_space("retriever").sample()}
            if "sketcher" in env.agents:
                mask = obs["sketcher"]["action_mask"]
                assert not mask[drawn].any() and mask.sum() == n - len(drawn)
                j = int(rng.choice(np.flatnonzero(mask)))
                drawn.append(j)
                acts["sketcher"] = j
            obs, *_ = env.step(acts)
        assert sorted(drawn) == list(range(n))


def test_invalid_actions_are_clear_errors(make):
    env = make()
    fewest = int(np.argmin([s.num_strokes for s in env.sketches]))
    obs, info = env.reset(seed=0, options={"sketch_index": fewest})
    n = info["sketcher"]["strokes"]
    assert n < env.max_strokes  # the synthetic split's sketches have 2 to 5 strokes
    act = np.zeros(env.action_space("retriever").shape, np.float32)
    with pytest.raises(ValueError, match=f"stroke {n}, but sketch {fewest} has only {n} strokes"):
        env.step({"sketcher": n, "retriever": act})
    with pytest.raises(ValueError, match="must be an int in"):
        env.step({"sketcher": env.max_strokes, "retriever": act})
    env.step({"sketcher": 0, "retriever": act})
    if n > 2:  # a scored step too, so the check below covers the ranking state
        env.step({"sketcher": 1, "retriever": act})
    drawn, scored = env.drawn, env._scored
    with pytest.raises(ValueError, match="stroke 0 .* already drawn"):
        env.step({"sketcher": 0, "retriever": act})
    assert (env.drawn == drawn).all() and env._scored == scored  # a refused step changes nothing
    with pytest.raises(ValueError, match=r"retriever action must have shape"):
        env.step({"sketcher": int(np.flatnonzero(~env.drawn)[0]), "retriever": act[:3]})
    with pytest.raises(ValueError, match="missing"):
        env.step({"retriever": act})


def test_timing_rewards_and_sketch_less(make):
    env = make(reward="inverse_rank")
    steps, _ = _play(env)
    n = len(steps) - 1  # n strokes, n + 1 steps
    rew0, _, info0 = steps[0]
    assert rew0["retriever"] == 0 and "rank" not in info0["retriever"]  # the empty canvas is not scored
    for k, (rew, _, info) in enumerate(steps[1:], start=1):
        assert info["retriever"]["canvas_strokes"] == k
        assert rew["retriever"] == pytest.approx(float(rewards.local_reward("inverse_rank", info["retriever"]["rank"])))
    assert steps[n - 1][1]["sketcher"] and set(steps[-1][0]) == {"retriever"}
    # the paper's reward: its episode return is the closed form over the scored ranks and taus
    env = make(reward="paper")
    steps, _ = _play(env, seed=3)
    ranks = np.array([s[2]["retriever"]["rank"] for s in steps[1:]])
    taus = np.array([s[2]["retriever"]["kendall_tau"] for s in steps[1:]])
    total = sum(s[0]["retriever"] for s in steps)
    assert np.isnan(taus[0])  # the first scored ranking has no predecessor
    assert total == pytest.approx(rewards.paper_return(ranks, taus[1:]))
    # sketch less: the episode ends at the first rank 1
    env = make(reward="inverse_rank", sketch_less=True, action="residual")
    for seed in range(6):
        steps, _ = _play(env, seed=seed)
        ranks = [s[2]["retriever"].get("rank") for s in steps]
        if 1 in ranks:
            assert ranks.index(1) == len(ranks) - 1


def test_canvas_features_match_the_backend_and_are_cached(make):
    env = make(cache_size=3)
    env.reset(seed=0, options={"sketch_index": 0})
    n = env.sketches[0].num_strokes
    masks = np.eye(n, dtype=bool)
    feats, queries = env.canvas_features(0, masks)
    direct = env.backend.sketch_features(np.stack([env.canvas_raster(0, m) for m in masks]))
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(queries, env.backend.queries(direct), rtol=1e-5, atol=1e-6)
    hits = env.cache_hits
    env.canvas_features(0, masks[-1:])
    assert env.cache_hits == hits + 1 and len(env._cache) <= 3
    full = env.canvas_raster(0, np.ones(n, bool))
    from sketch_env.render import render_sketch
    np.testing.assert_array_equal(full, render_sketch(env.sketches[0], env.render_config))


def test_orders_and_the_sketcher_adapter(make):
    from agents.stroke_order import (
        SketcherGymEnv,
        frozen_retriever,
        greedy_chooser,
        human_chooser,
        play_episode,
        random_chooser,
        strokes_to_top,
    )

    env = make()
    retriever = frozen_retriever(env)
    for i in range(len(env.sketches)):
        human, order = play_episode(env, human_chooser, retriever, i)
        n = env.sketches[i].num_strokes
        assert order == list(range(n)) and len(human) == n
        greedy, _ = play_episode(env, greedy_chooser(retriever), retriever, i)
        assert greedy[0] <= human[0]  # the look-ahead's first canvas is the best single stroke
        shuffled, order = play_episode(env, random_chooser(np.random.default_rng(i)), retriever, i)
        assert sorted(order) == list(range(n))
    assert strokes_to_top(np.array([7, 3, 1]), 1) == 3 and strokes_to_top(np.array([7, 3]), 1) == 3
    # the adapter's observations lie in its space, and its return is the game's, last canvas included
    # (gymnasium's check_env is not used: it steps with unmasked random actions, which the game refuses)
    single = SketcherGymEnv(make(reward="inverse_rank"))
    obs, info = single.reset(seed=0, options={"sketch_index": 0})
    total, done = 0.0, False
    while not done:
        assert single.observation_space.contains(obs)
        obs, r, done, _, info = single.step(int(np.flatnonzero(single.action_masks())[0]))
        total += r
    human, _ = play_episode(env, human_chooser, retriever, 0)
    assert total == pytest.approx(float(np.sum(1.0 / human)))


def _bandit(max_strokes=5, feature_dim=7):
    """A one-step game: random canvas feature and stroke descriptors; reward 1 for the longest stroke."""
    import gymnasium as gym

    from sketch_env.envs.stroke_order import DESCRIPTOR_SIZE

    class LongestStrokeBandit(gym.Env):
        observation_space = gym.spaces.Box(-10, 10, (feature_dim + DESCRIPTOR_SIZE * max_strokes,), np.float32)
        action_space = gym.spaces.Discrete(max_strokes)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.obs = self.np_random.normal(size=self.observation_space.shape).astype(np.float32)
            self.desc[:, 5] = 1.0  # every slot holds a stroke
            return self.obs, {}

        @property
        def desc(self):
            return self.obs[feature_dim:].reshape(max_strokes, DESCRIPTOR_SIZE)

        def step(self, action):
            return self.obs, float(action == np.argmax(self.desc[:, 2])), True, False, {}

        def action_masks(self):
            return np.ones(max_strokes, dtype=bool)

    return LongestStrokeBandit()


def test_stroke_scoring_policy_is_equivariant_over_slots_and_masks_drawn_strokes():
    import torch

    from agents.stroke_order import make_sketcher
    from sketch_env.envs.stroke_order import DESCRIPTOR_SIZE

    env = _bandit()
    model = make_sketcher(env, seed=0, policy="strokes")
    obs, _ = env.reset(seed=3)
    perm = np.array([3, 0, 4, 1, 2])
    permuted = obs.copy()
    permuted[7:] = obs[7:].reshape(5, DESCRIPTOR_SIZE)[perm].ravel()
    with torch.no_grad():
        logits = model.policy.get_distribution(torch.as_tensor(np.stack([obs, permuted]))).distribution.logits
    # the slot scores move with the strokes: a rule learnt for one slot holds in every slot
    torch.testing.assert_close(logits[1], logits[0][perm])
    # and a masked (drawn) stroke is never chosen, whatever its score
    mask = np.array([False, True, False, True, False])
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        action, _ = model.predict(obs, deterministic=False, action_masks=mask)
        assert mask[int(action)]
    with pytest.raises(ValueError, match="sketcher policy"):
        make_sketcher(env, seed=0, policy="transformer")


def test_stroke_scoring_sketcher_learns_to_pick_the_longest_stroke():
    """A seconds-long learning test: chance is 1 / 5; the shared stroke scorer finds the rule."""
    from agents.stroke_order import longest_first_chooser, make_sketcher

    env = _bandit()
    model = make_sketcher(env, seed=0, policy="strokes", n_steps=64, batch_size=64)
    model.learn(3000)
    hits = 0
    for seed in range(1000, 1200):
        obs, _ = env.reset(seed=seed)
        action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        hits += int(action) == int(np.argmax(env.desc[:, 2]))
        # the fixed rule the benchmark compares with picks the same stroke by construction
        rule = longest_first_chooser(None, {"observation": obs, "action_mask": np.ones(5, np.int8)})
        assert rule == int(np.argmax(env.desc[:, 2]))
    assert hits / 200 > 0.7


def test_stroke_order_benchmark_end_to_end_and_resume(synthetic_checkpoint, tmp_path):
    """``benchmarks/stroke_order.py`` on synthetic data: trains one sketcher, scores every order, writes the
    table; a second call reuses the sketcher, and one with other training settings refuses it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import stroke_order as bench

    argv = ["--backend", str(synthetic_checkpoint), "--dataset", "synthetic", "--timesteps", "512", "--seeds", "0",
            "--n-envs", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert bench.main(argv) == 0
    text = (tmp_path / "out" / "stroke_order.md").read_text()
    for row in ("| human | frozen |", "| longest stroke first | frozen |",
                "| learned sketcher (stroke scoring) | frozen |"):
        assert row in text
    assert "learned per seed: s0 " in text
    policy = tmp_path / "runs" / "sketcher-strokes-frozen-s0" / "policy.pt"
    stamp = policy.stat().st_mtime_ns
    assert bench.main(argv) == 0 and policy.stat().st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(SystemExit, match="was trained with"):
        bench.main([*argv[:5], "1024", *argv[6:]])


def test_sketcher_training_resumes_from_its_checkpoint(synthetic_checkpoint, tmp_path, monkeypatch):
    """A sketcher killed after its first PPO update leaves ``checkpoint.pt``; the next call continues from it
    (same weights, the remaining steps only) and removes it once ``policy.pt`` is written."""
    import argparse
    import json
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import stroke_order as bench

    args = argparse.Namespace(backend=str(synthetic_checkpoint), dataset="synthetic", data_root=None, max_strokes=None,
                              action="direct", timesteps=1024, reward="top5", n_envs=1, policy="strokes",
                              runs=str(tmp_path), no_progress=True)
    real = bench.make_sketcher
    updates = []

    def killed_at_second_update(*a, **k):
        model = real(*a, **k)
        train = model.train

        def once():
            if updates:
                raise RuntimeError("killed")
            train()
            updates.append({k: v.clone() for k, v in model.policy.state_dict().items()})

        model.train = once
        return model

    monkeypatch.setattr(bench, "make_sketcher", killed_at_second_update)
    with pytest.raises(RuntimeError, match="killed"):
        bench.train_sketcher(args, 0, "frozen", None)
    folder = tmp_path / "sketcher-strokes-frozen-s0"
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert saved["num_timesteps"] == 512 and not (folder / "policy.pt").exists()
    for k, v in updates[0].items():  # the checkpoint holds the weights after the first update
        torch.testing.assert_close(saved["policy"][k], v)

    resumed = []

    def recording(*a, **k):
        model = real(*a, **k)
        learn = model.learn

        def spy(total, **kw):
            resumed.append((model.num_timesteps, total))
            return learn(total, **kw)

        model.learn = spy
        return model

    monkeypatch.setattr(bench, "make_sketcher", recording)
    path = bench.train_sketcher(args, 0, "frozen", None)
    assert resumed == [(512, 512)]  # started at the checkpoint's step count, trained the remaining steps
    assert path.is_file() and not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "train.json").read_text())["resumed_from"] == 512
