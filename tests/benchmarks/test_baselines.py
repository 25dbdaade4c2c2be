"""benchmarks.baselines end to end on the synthetic data: rows over two seeds, the report and its files, reuse."""

from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.usefixtures("env_cache")


def test_main_table_over_seeds_writes_its_report_and_reuses_its_runs(tmp_path):
    from benchmarks.baselines import LABELS, main

    argv = ["--dataset", "synthetic", "--rows", "b1", "ts", "rl", "--seeds", "0", "1", "--gradient-steps", "6",
            "--rl-timesteps", "320", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    report = (tmp_path / "out" / "README.md").read_text()
    for label in (LABELS["b1"], LABELS["ts"], LABELS["rl"]):
        assert f"| {label} |" in report
    assert "python -m benchmarks.baselines --dataset synthetic" in report and "± " in report
    with open(tmp_path / "out" / "baselines.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (LABELS[m], s) for m in ("b1", "ts", "rl") for s in ("0", "1"))
    with open(tmp_path / "out" / "episodes.csv") as f:
        episodes = list(csv.DictReader(f))
    from sketch_env.datasets import make_dataset

    n = len(make_dataset("synthetic").sketches("test"))
    assert len(episodes) == 6 * n
    assert all(1 <= int(e["rank_complete"]) <= int(e["gallery_size"]) for e in episodes)
    b1 = tmp_path / "runs" / "synthetic-instance" / "s0" / "b1-s0" / "backend.pt"  # in the seed's grid run folder
    stamp = b1.stat().st_mtime_ns
    assert main(argv) == 0 and b1.stat().st_mtime_ns == stamp  # finished runs are reused, not retrained
