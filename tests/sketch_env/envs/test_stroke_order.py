"""The PettingZoo stroke-order game: PettingZoo's API and seed tests, the action mask, errors, timing."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

from sketch_env import stroke_order_v0
from sketch_env.envs import rewards


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


def test_pettingzoo_api_tests_pass(make_game, synthetic_checkpoint):
    parallel_api_test(make_game(), num_cycles=60)
    # the AEC test also checks every observation lies in its space (the parallel one does not)
    api_test(stroke_order_v0.env(dataset="synthetic", backend=synthetic_checkpoint, split="test", progress=False),
             num_cycles=60)
    parallel_seed_test(make_game)


def test_mask_never_allows_a_drawn_stroke(make_game):
    env = make_game()
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


def test_invalid_actions_are_clear_errors(make_game):
    env = make_game()
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


def test_timing_rewards_and_sketch_less(make_game):
    env = make_game(reward="inverse_rank")
    steps, _ = _play(env)
    n = len(steps) - 1  # n strokes, n + 1 steps
    rew0, _, info0 = steps[0]
    assert rew0["retriever"] == 0 and "rank" not in info0["retriever"]  # the empty canvas is not scored
    for k, (rew, _, info) in enumerate(steps[1:], start=1):
        assert info["retriever"]["canvas_strokes"] == k
        assert rew["retriever"] == pytest.approx(float(rewards.local_reward("inverse_rank", info["retriever"]["rank"])))
    assert steps[n - 1][1]["sketcher"] and set(steps[-1][0]) == {"retriever"}
    # the paper's reward: its episode return is the closed form over the scored ranks and taus
    env = make_game(reward="paper")
    steps, _ = _play(env, seed=3)
    ranks = np.array([s[2]["retriever"]["rank"] for s in steps[1:]])
    taus = np.array([s[2]["retriever"]["kendall_tau"] for s in steps[1:]])
    total = sum(s[0]["retriever"] for s in steps)
    assert np.isnan(taus[0])  # the first scored ranking has no predecessor
    assert total == pytest.approx(rewards.paper_return(ranks, taus[1:]))
    # sketch less: the episode ends at the first rank 1
    env = make_game(reward="inverse_rank", sketch_less=True, action="residual")
    for seed in range(6):
        steps, _ = _play(env, seed=seed)
        ranks = [s[2]["retriever"].get("rank") for s in steps]
        if 1 in ranks:
            assert ranks.index(1) == len(ranks) - 1


def test_canvas_features_match_the_backend_and_are_cached(make_game):
    env = make_game(cache_size=3)
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
