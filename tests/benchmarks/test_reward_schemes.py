"""benchmarks.reward_schemes end to end on tiny runs."""

from __future__ import annotations


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
