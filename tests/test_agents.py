"""The six RL methods on the synthetic retrieval env: seconds-long train / save / load / evaluate runs."""

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


def test_main_job_trains_the_backend_then_ppo_and_compares_them(tmp_path, env_cache, capsys):
    """`sketch-env run` end to end on the synthetic data with tiny budgets: backend, features, PPO, table."""
    from agents.cli import main

    out = tmp_path / "runs"
    code = main(["run", "--dataset", "synthetic", "--epochs", "2", "--steps", "5", "--no-distractors",
                 "--val-fraction", "0.3", "--rl-timesteps", "1280", "--rl-eval-every", "640", "--rl-minutes", "2",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "frozen B1" in text and "RL (ppo-a-clip)" in text
    assert (out / "eval-rl" / "curves.png").stat().st_size > 0
    assert (out / "agents" / "synthetic-b1" / "ppo-a-clip-s0" / "best.zip").exists()


def test_reward_ablation_benchmark_runs_end_to_end(tmp_path, synthetic_checkpoint):
    """`benchmarks/reward_schemes.py` (which drives rl_methods' runner): two schemes, one seed, tiny runs."""
    from benchmarks.reward_schemes import main

    code = main(["--dataset", "synthetic", "--backend", synthetic_checkpoint, "--schemes", "paper", "top1",
                 "--seeds", "0", "--timesteps", "640", "--eval-every", "320", "--hp", "n_envs=8",
                 "--hp", "batch_size=40", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert code == 0
    table = (tmp_path / "out" / "reward_schemes.md").read_text()
    assert "(`paper`)" in table and "(`top1`)" in table and "frozen backend" in table
    rows = (tmp_path / "out" / "reward_schemes.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("run,seed,m@A")
