"""The stroke-order sketcher (agents.stroke_order): orders, the single-agent adapter, the stroke-scoring
policy, training and resuming."""

from __future__ import annotations

import numpy as np
import pytest

from sketch_env import stroke_order_v0


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


def test_orders_and_the_sketcher_adapter(make_game):
    from agents.stroke_order import (
        SketcherGymEnv,
        frozen_retriever,
        greedy_chooser,
        human_chooser,
        play_episode,
        random_chooser,
        strokes_to_top,
    )

    env = make_game()
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
    single = SketcherGymEnv(make_game(reward="inverse_rank"))
    obs, info = single.reset(seed=0, options={"sketch_index": 0})
    total, done = 0.0, False
    while not done:
        assert single.observation_space.contains(obs)
        obs, r, done, _, info = single.step(int(np.flatnonzero(single.action_masks())[0]))
        total += r
    human, _ = play_episode(env, human_chooser, retriever, 0)
    assert total == pytest.approx(float(np.sum(1.0 / human)))


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


def test_sketcher_training_resumes_from_its_checkpoint(synthetic_checkpoint, tmp_path, monkeypatch):
    """A sketcher killed after its first PPO update leaves ``checkpoint.pt``; the next call continues from it
    (same weights, the remaining steps only) and removes it once ``policy.pt`` is written."""
    import json

    import torch

    from agents import stroke_order as sketchers

    folder = tmp_path / "sketcher-strokes-frozen-s0"
    cfg = sketchers.SketcherTrainConfig(out=str(folder), seed=0, timesteps=1024, reward="top5", n_envs=1,
                                        policy="strokes", progress=False)

    def game():
        return stroke_order_v0.parallel_env(dataset="synthetic", backend=str(synthetic_checkpoint), split="train",
                                            progress=False, reward="top5")

    real = sketchers.make_sketcher
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

    monkeypatch.setattr(sketchers, "make_sketcher", killed_at_second_update)
    with pytest.raises(RuntimeError, match="killed"):
        sketchers.train_sketcher(cfg, game, None)
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

    monkeypatch.setattr(sketchers, "make_sketcher", recording)
    path = sketchers.train_sketcher(cfg, game, None)
    assert resumed == [(512, 512)]  # started at the checkpoint's step count, trained the remaining steps
    assert path.is_file() and not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "train.json").read_text())["resumed_from"] == 512
