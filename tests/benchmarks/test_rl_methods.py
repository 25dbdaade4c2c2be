"""benchmarks.rl_methods with the fast trainer, end to end on tiny runs."""

from __future__ import annotations

import pytest


def test_rl_methods_benchmark_with_the_fast_trainer(tmp_path, synthetic_checkpoint):
    """`benchmarks/rl_methods.py --trainer fast`: the seeds of a method side by side, evaluated as SB3 runs."""
    from benchmarks.rl_methods import main

    code = main(["--dataset", "synthetic", "--backend", synthetic_checkpoint, "--methods", "ppo-a-clip",
                 "--trainer", "fast", "--seeds", "0", "1", "--timesteps", "640", "--eval-every", "320",
                 "--hp", "n_envs=8", "--hp", "batch_size=40", "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    table = (tmp_path / "out" / "rl_methods.md").read_text()
    assert "trainer: fast" in table and "(`ppo-a-clip`)" in table
    assert len((tmp_path / "out" / "rl_methods.csv").read_text().splitlines()) == 3
    with pytest.raises(SystemExit):
        main(["--dataset", "synthetic", "--backend", synthetic_checkpoint, "--methods", "trpo", "--trainer", "fast",
              "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])


def test_the_rl_tables_take_the_dataset_folder_as_root_as_every_benchmark_does():
    import argparse

    from benchmarks.common import add_run_args

    p = argparse.ArgumentParser()
    add_run_args(p, "rl_methods")
    assert p.parse_args(["--root", "/data/ChairV2"]).data_root == "/data/ChairV2"
    assert p.parse_args(["--data-root", "/data/ChairV2"]).data_root == "/data/ChairV2"  # the earlier name
