"""benchmarks.zero_shot with a given backbone, end to end on tiny data."""

from __future__ import annotations

import pytest
import torch

from embeddings.base import load_backend, make_backend
from tests.helpers import TINY_TRIPLET

pytestmark = pytest.mark.usefixtures("one_thread")


def test_zero_shot_benchmark_with_a_given_backbone(tmp_path, monkeypatch, backbone_path):
    """`benchmarks/zero_shot.py --backbone` end to end on the synthetic category split (tiny settings): the
    given checkpoint is every seed's backbone, its runs go to their own folder, and a backbone trained on
    another split is refused with a message naming it."""
    from benchmarks.zero_shot import main

    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    backbone = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="category")
    backbone = backbone.save(tmp_path / "b1-s0" / "backend.pt")
    template = str(tmp_path / "b1-s{seed}" / "backend.pt")
    args = ["--dataset", "synthetic", "--seeds", "0", "--rows", "baseline", "cvae", "oracle", "--epochs", "1",
            "--samples", "4", "--steps", "3", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert main([*args, "--backbone", template]) == 0
    table = (tmp_path / "out" / "zero_shot.md").read_text()
    assert "`python -m benchmarks.zero_shot --dataset synthetic" in (tmp_path / "out" / "README.md").read_text()
    assert f"backbone: `{template}`" in table and "| CVAE |" in table and "Generation ceiling" in table
    folders = [p.name for p in (tmp_path / "runs").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("synthetic-category-backbone-")
    cvae = load_backend(tmp_path / "runs" / folders[0] / "s0" / "cvae-s0" / "backend.pt")
    assert cvae.config["backbone_fingerprint"] == load_backend(backbone).fingerprint()
    with pytest.raises(SystemExit, match="split scheme 'instance'"):
        main([*args, "--backbone", str(backbone_path)])
