"""benchmarks.main_job: the main job run twice with one seed, each in a fresh cache, gives the same table."""

from __future__ import annotations

import csv


def test_two_runs_of_the_main_job_with_one_seed_give_the_same_table(tmp_path):
    from benchmarks.main_job import main

    argv = ["--dataset", "synthetic", "--repeats", "2", "--runs", str(tmp_path / "runs"), "--out",
            str(tmp_path / "out"), "--", "--gradient-steps", "6", "--steps", "5", "--no-distractors",
            "--rl-timesteps", "320", "--rl-eval-every", "160"]
    assert main(argv) == 0
    with open(tmp_path / "out" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["method"] for r in rows}) == ["RL (ppo-a-clip)", "frozen B1"]
    for method in ("RL (ppo-a-clip)", "frozen B1"):
        first, second = [r for r in rows if r["method"] == method]
        assert (first["repeat"], second["repeat"]) == ("0", "1")
        for key in ("A@1", "A@5", "A@10", "m@A", "m@B"):
            assert first[key] == second[key], (method, key)  # same seed, same machine: the same figures
    report = (tmp_path / "out" / "README.md").read_text()
    assert "largest difference, 2 runs" in report and "sketch-env run" in report
    # one run (read back from its folder): its rows alone, no spread of one run
    assert main([a if a != "2" else "1" for a in argv]) == 0
    report = (tmp_path / "out" / "README.md").read_text()
    assert "seed 0, run 1 | frozen B1" in report and "largest difference" not in report
