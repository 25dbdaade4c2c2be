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
