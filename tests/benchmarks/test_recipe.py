"""benchmarks.recipe on the synthetic data: one choice changed per row, each row trained with it, the report."""

from __future__ import annotations

import csv

import pytest
import torch

pytestmark = pytest.mark.usefixtures("env_cache")


def test_each_row_trains_with_its_one_change_and_the_report_gives_deltas(tmp_path):
    from benchmarks.recipe import main

    argv = ["--dataset", "synthetic", "--variants", "default", "photos as edge maps", "mirrored pairs",
            "weight average", "--gradient-steps", "4", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    runs = tmp_path / "runs" / "synthetic-instance"
    default = torch.load(runs / "b1-default-s0" / "backend.pt", weights_only=True)
    edges = torch.load(runs / "b1-photos-as-edge-maps-s0" / "backend.pt", weights_only=True)
    mirrored = torch.load(runs / "b1-mirrored-pairs-s0" / "backend.pt", weights_only=True)
    averaged = torch.load(runs / "b1-weight-average-s0" / "backend.pt", weights_only=True)
    assert default["extra"]["training"]["ema_horizon"] == 0.0 and averaged["extra"]["training"]["ema_horizon"] == 0.2
    assert default["config"]["photo_preprocess"] == "invert" and edges["config"]["photo_preprocess"] == "edges"
    assert default["extra"]["training"]["flip"] is False and mirrored["extra"]["training"]["flip"] is True
    assert mirrored["config"]["photo_preprocess"] == "invert"  # one change per row
    report = (tmp_path / "out" / "README.md").read_text()
    assert "| photos as edge maps |" in report and "Δ m@B" in report
    with open(tmp_path / "out" / "recipe.csv") as f:
        assert [r["variant"] for r in csv.DictReader(f)] == ["default", "photos as edge maps", "mirrored pairs",
                                                                 "weight average"]


def test_the_deltas_are_paired_by_seed_with_their_interval(tmp_path):
    """Each Δ is the mean of the seed-by-seed differences from the default and their 95 % t-interval: two
    rows whose figures swing together over seeds differ by the same amount at every seed, so the interval is
    0 however wide the rows' own intervals are."""
    import argparse

    from benchmarks.common import mean_ci
    from benchmarks.recipe import write_report

    def row(variant, seed, base):
        figures = {c: base + 4.0 * seed for c in ("A@1", "A@5", "A@10", "m@A", "m@B")}
        return {"variant": variant, "seed": seed, "result": figures | {"gallery_size": 10},
                "training": {"gradient_steps": 4}, "train_seconds": 1.0}

    rows = [row("default", s, 50.0) for s in range(3)] + [row("no mirrored pairs", s, 48.0) for s in range(3)]
    args = argparse.Namespace(jobs=1, steps=20, dataset="synthetic", argv=["--seeds", "0", "1", "2"])
    table = write_report(rows, args, tmp_path, seconds=1.0)
    line = next(r for r in table.splitlines() if r.startswith("| no mirrored pairs |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "{:.1f} ± {:.1f}".format(*mean_ci([48.0, 52.0, 56.0]))  # the row's own spread
    assert cells[6:10] == ["-2.0 ± 0.0"] * 4  # Δ A@5, A@10, m@A, m@B: the spread cancels
    assert "| row | A@1 | A@5 | A@10 | m@A | m@B | Δ A@5 | Δ A@10 | Δ m@A | Δ m@B |" in table
