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


def test_every_pettingzoo_test_passes(make_game, synthetic_checkpoint):
    """api_test, parallel_api_test, seed_test, parallel_seed_test, max_cycles_test and render_test, on the
    module's env / raw_env / parallel_env (data arguments bound: the synthetic test split; max_cycles_test
    needs episodes longer than its 4 cycles, so sketches of 4 strokes or more)."""
    import functools
    import types

    from pettingzoo.test import max_cycles_test, render_test, seed_test

    data = {"dataset": "synthetic", "backend": synthetic_checkpoint, "split": "test", "progress": False}
    mod = types.SimpleNamespace(**{name: functools.partial(getattr(stroke_order_v0, name), **data, min_strokes=4)
                                   for name in ("env", "raw_env", "parallel_env")})
    parallel_api_test(make_game(), num_cycles=60)
    # the AEC test also checks every observation lies in its space (the parallel one does not)
    api_test(stroke_order_v0.env(**data), num_cycles=60)
    seed_test(functools.partial(stroke_order_v0.env, **data), num_cycles=60)
    parallel_seed_test(make_game)
    max_cycles_test(mod)
    render_test(functools.partial(stroke_order_v0.env, **data))
    from pettingzoo import AECEnv, ParallelEnv
    from pettingzoo.utils.wrappers import OrderEnforcingWrapper

    assert isinstance(stroke_order_v0.raw_env(**data), AECEnv)
    assert not isinstance(stroke_order_v0.raw_env(**data), OrderEnforcingWrapper)
    assert isinstance(stroke_order_v0.env(**data), OrderEnforcingWrapper)
    assert isinstance(stroke_order_v0.parallel_env(**data), ParallelEnv)


def test_no_info_value_is_nan_and_random_unmasked_play_runs(make_game):
    env = make_game()
    env.reset(seed=0)
    illegal = 0
    while env.agents:
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        for info in infos.values():
            assert not any(isinstance(v, float) and np.isnan(v) for v in info.values())
        illegal += bool(infos.get("sketcher", {}).get("illegal_stroke"))
    assert env.drawn.all()


def test_frames_have_one_size_and_max_cycles_truncates(make_game):
    from sketch_env.envs.render import frame_shape

    env = make_game(render_mode="rgb_array", max_cycles=2)
    assert env.render().shape == frame_shape(5)  # before any reset too
    env.reset(seed=0)
    shapes = {env.render().shape}
    _, _, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
    shapes.add(env.render().shape)
    _, _, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
    shapes.add(env.render().shape)
    assert shapes == {frame_shape(5)}
    assert not env.agents and all(trunc[a] or term[a] for a in trunc)
    with pytest.raises(ValueError, match="max_cycles"):
        make_game(max_cycles=0)
    with pytest.raises(ValueError, match="min_strokes=9"):
        make_game(min_strokes=9)


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
    env = make_game(illegal="error")
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
    taus = np.array([s[2]["retriever"].get("kendall_tau", np.nan) for s in steps[1:]])
    total = sum(s[0]["retriever"] for s in steps)
    assert "kendall_tau" not in steps[1][2]["retriever"]  # the first scored ranking has no predecessor
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
