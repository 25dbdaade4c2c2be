"""The `sketch-env` program (agents.cli): flags that belong to one trainer are refused on the other."""

from __future__ import annotations


def test_compile_flag_belongs_to_the_fast_trainer(capsys):
    from agents.cli import main

    assert main(["train", "--compile", "--timesteps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--trainer fast" in err and len(err.strip().splitlines()) == 1
