"""The main job, `sketch-env run` (agents.run): the backend, then PPO from it, compared on the test split."""

from __future__ import annotations


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
