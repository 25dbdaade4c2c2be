"""The `sketch-env` program (agents.cli): flags that belong to one trainer are refused on the other."""

from __future__ import annotations

import pytest


def test_compile_flag_belongs_to_the_fast_trainer():
    from agents.cli import main

    with pytest.raises(SystemExit, match="--trainer fast"):
        main(["train", "--compile", "--timesteps", "0"])
