"""benchmarks.stroke_order end to end on the synthetic data, with reuse and refusal of a trained sketcher."""

from __future__ import annotations

import pytest


def test_stroke_order_benchmark_end_to_end_and_resume(synthetic_checkpoint, tmp_path):
    """``benchmarks/stroke_order.py`` on synthetic data: trains one sketcher, scores every order, writes the
    table; a second call reuses the sketcher, and one with other training settings refuses it."""
    from benchmarks import stroke_order as bench
    from sketch_env.runs import RunConfigError

    argv = ["--backend", str(synthetic_checkpoint), "--dataset", "synthetic", "--timesteps", "512", "--seeds", "0",
            "--n-envs", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert bench.main(argv) == 0
    text = (tmp_path / "out" / "stroke_order.md").read_text()
    assert "`python -m benchmarks.stroke_order --backend" in (tmp_path / "out" / "README.md").read_text()
    for row in ("| human | frozen |", "| longest stroke first | frozen |",
                "| learned sketcher (stroke scoring) | frozen |"):
        assert row in text
    assert "learned per seed: s0 " in text
    policy = tmp_path / "runs" / "sketcher-strokes-frozen-s0" / "policy.pt"
    stamp = policy.stat().st_mtime_ns
    assert bench.main(argv) == 0 and policy.stat().st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(RunConfigError, match="different configuration"):
        bench.main([*argv[:5], "1024", *argv[6:]])
