"""benchmarks.mirror_averaging on the shipped synthetic B1: each checkpoint scored with and without test-time
mirror averaging, the paired difference, the report; bad arguments are one line and exit 2."""

from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.usefixtures("env_cache")


def test_both_settings_on_the_same_weights_and_their_paired_difference(synthetic_checkpoint, tmp_path):
    from benchmarks.mirror_averaging import main

    out = tmp_path / "out"
    assert main(["--checkpoint", synthetic_checkpoint, "--steps", "3", "--out", str(out)]) == 0
    with open(out / "mirror.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"off", "on", "off - on"}
    for c in ("A@1", "A@5", "m@A", "m@B"):
        assert float(rows["off - on"][c]) == pytest.approx(float(rows["off"][c]) - float(rows["on"][c]), abs=2e-4)
    assert rows["off"]["m@B"] != rows["on"]["m@B"]  # the setting reaches the features
    report = (out / "README.md").read_text()
    assert "| difference off - on, paired (`off - on`) |" in report
    assert "python -m benchmarks.mirror_averaging" in report


def test_bad_arguments_are_one_line_and_exit_2(synthetic_checkpoint, tmp_path, capsys):
    from benchmarks.mirror_averaging import main

    assert main(["--checkpoint", synthetic_checkpoint, "--seeds", "0", "1", "--out", str(tmp_path)]) == 2
    assert "{seed}" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "b1-s{seed}.pt"), "--seeds", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "b1-s0.pt" in err and len(err.splitlines()) == 1
