"""benchmarks.trainer_throughput end to end on tiny settings."""

from __future__ import annotations


def test_trainer_throughput_benchmark_runs_with_a_compiled_row(tmp_path, synthetic_checkpoint):
    """`benchmarks/trainer_throughput.py` end to end on tiny settings, with the ``--compile`` row."""
    from benchmarks.trainer_throughput import main

    code = main(["--dataset", "synthetic", "--backend", synthetic_checkpoint, "--algos", "vpg", "--timesteps", "160",
                 "--rounds", "1", "--agents", "2", "--hp", "n_envs=8", "--hp", "n_steps=10", "--learn-timesteps", "0",
                 "--env-seconds", "0.2", "--compile", "aot_eager", "--out", str(tmp_path)])
    assert code == 0
    table = (tmp_path / "throughput.md").read_text()
    assert "`python -m benchmarks.trainer_throughput --dataset synthetic" in (tmp_path / "README.md").read_text()
    for row in ("| SB3 |", "| fast, 1 agent |", "| fast, 1 agent, torch.compile (aot_eager) |",
                "| fast, 2 agents side by side |", "compilation, seconds"):
        assert row in table, row
