"""benchmarks.zero_shot_pixels end to end on the synthetic category split."""

from __future__ import annotations

import numpy as np


def test_zero_shot_pixel_backbone_benchmark_end_to_end(tmp_path):
    """`benchmarks/zero_shot_pixels.py` on the synthetic category split: the features, and every row scored."""
    import csv

    from benchmarks.zero_shot_pixels import main, pixel_features

    f = pixel_features(np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3), 4)
    assert f.shape == (2, 16) and np.allclose(f.mean(axis=1), 0, atol=1e-4)
    assert main(["--dataset", "synthetic", "--size", "8", "--seeds", "0", "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    table = (tmp_path / "zero_shot_pixels.md").read_text()
    assert "`python -m benchmarks.zero_shot_pixels --dataset synthetic" in (tmp_path / "README.md").read_text()
    assert "| CVAE |" in table and "| Coarse-grained triplet |" in table and "F = 64" in table
    with open(tmp_path / "zero_shot_pixels.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 7 and all(0 <= float(r["P@200"]) <= 1 for r in rows.values())
