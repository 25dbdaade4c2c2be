"""benchmarks.adaptation end to end on the synthetic data."""

from __future__ import annotations

import csv

import sketch_env  # noqa: F401  (registers the env ids)


def test_adaptation_benchmark_end_to_end_and_reuses_its_runs(tmp_path, capsys):
    """The benchmark on synthetic data: B1, one meta row, scoring; a second call trains nothing again."""
    from benchmarks.adaptation import main

    args = ["--dataset", "synthetic", "--seeds", "0", "--shots", "1", "--base-minutes", "0.02", "--meta-minutes",
            "0.02", "--rows", "this method", "--no-cost", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    table = (tmp_path / "out" / "adaptation.md").read_text()
    assert "`python -m benchmarks.adaptation --dataset synthetic" in (tmp_path / "out" / "README.md").read_text()
    for row in ("no adaptation (B1)", "fine-tuning (B1, all layers)", "this method before adaptation", "this method"):
        assert f"| {row} |" in table
    with open(tmp_path / "out" / "adaptation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["no adaptation (B1)", "fine-tuning (B1, all layers)",
                                           "this method before adaptation", "this method"]
    assert all(0 <= float(r["A@1"]) <= float(r["A@5"]) <= 100 and r["shots"] == "1" for r in rows)
    trained = (tmp_path / "runs" / "this-method-s0" / "backend.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "meta-trained in" not in capsys.readouterr().out  # the finished runs are reused
    assert (tmp_path / "runs" / "this-method-s0" / "backend.pt").stat().st_mtime_ns == trained
