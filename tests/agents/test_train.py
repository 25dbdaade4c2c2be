"""The six RL methods on the synthetic retrieval env (agents.train): seconds-long train / save / load /
evaluate runs, the initial policy, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.algorithms import ALGORITHMS
from agents.envs import evaluate_agent_ranks, frozen_backend_ranks
from agents.evaluate import evaluate_model
from agents.io import load_agent
from agents.train import RLTrainConfig, train_agent
from sketch_env.metrics import m_at_b

ENV = "SketchEnv/OnTheFly-Synthetic-v0"


TINY = {"n_envs": 8, "n_steps": 10, "policy_kwargs": {"log_std_init": -3.0}}


def _train(tmp_path, algo, timesteps=320, **extra):
    hp = dict(TINY) | ({} if algo in ("vpg",) else {"batch_size": 40}) | extra
    cfg = RLTrainConfig(algo=algo, env_id=ENV, timesteps=timesteps, eval_every=160, overrides=hp,
                        out=str(tmp_path / algo), progress=False)
    return train_agent(cfg)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_each_method_trains_saves_loads_and_evaluates(tmp_path, algo):
    best = _train(tmp_path, algo)
    assert best.exists() and (best.parent / "last.zip").exists()
    history = [json.loads(line) for line in (best.parent / "history.jsonl").read_text().splitlines()]
    assert history[0]["timesteps"] < history[-1]["timesteps"] and history[-1]["timesteps"] >= 320
    rows = evaluate_model(best, out=tmp_path / "eval")
    assert set(rows) == {"frozen backend", f"RL ({algo})"}
    import csv

    with open(tmp_path / "eval" / "episodes.csv") as f:  # per-sketch scores, tidy: one row per sketch and method
        episodes = list(csv.DictReader(f))
    n = rows[f"RL ({algo})"]["sketches"]
    assert len(episodes) == 2 * n and {e["method"] for e in episodes} == set(rows)
    assert all((tmp_path / "eval" / f"curves.{ext}").stat().st_size > 0 for ext in ("png", "pdf", "svg"))
    assert (tmp_path / "eval" / "curves.png").stat().st_size > 0
    model = load_agent(best)
    assert model.num_timesteps >= 0 and type(model).__name__ == ALGORITHMS[algo][0].__name__


def test_initialised_policy_reproduces_the_frozen_backend(tmp_path):
    """Before any update, the mean action of a policy started from the backend's query layer ranks exactly
    as the frozen model (the env normalises the action, and the layer is a rescaled copy)."""
    best = _train(tmp_path, "ppo-a-clip", timesteps=0)
    model = load_agent(best)
    ours, gallery = evaluate_agent_ranks(model, ENV, {}, split="test")
    frozen, _ = frozen_backend_ranks(ENV, {}, split="test")
    np.testing.assert_array_equal(ours, frozen)
    # a random policy (fresh, not initialised) is far worse than the frozen model
    random_best = _train(tmp_path / "random", "ppo-a-clip", timesteps=0,
                         policy_kwargs={"init_from_backend": False, "log_std_init": -3.0})
    rnd, _ = evaluate_agent_ranks(load_agent(random_best), ENV, {}, split="test", deterministic=False)
    assert m_at_b(rnd) < m_at_b(frozen)


def test_resume_after_a_stop(tmp_path):
    best = _train(tmp_path, "ppo-a-clip", timesteps=160)
    first = load_agent(best.parent / "last.zip").num_timesteps
    _train(tmp_path, "ppo-a-clip", timesteps=480)
    assert load_agent(best.parent / "last.zip").num_timesteps >= 480 > first
    with pytest.raises(ValueError, match="different configuration"):
        _train(tmp_path, "ppo-a-clip", timesteps=480, learning_rate=1.0e-5)


def test_sb3_logs_episode_return_and_length_to_tensorboard(tmp_path):
    """The training env is in SB3's VecMonitor, so rollout/ep_rew_mean and rollout/ep_len_mean are logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    best = _train(tmp_path, "ppo-a-clip")
    runs = list((best.parent / "tb").glob("*"))
    assert runs
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"rollout/ep_rew_mean", "rollout/ep_len_mean", "eval/m@B"} <= tags
    assert {e.value for e in events.Scalars("rollout/ep_len_mean")} == {10.0}  # the synthetic id's S = 10
