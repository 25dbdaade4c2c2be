"""Hyper-parameter files (agents.config): one for every method."""

from __future__ import annotations

import pytest

from agents.algorithms import ALGORITHMS
from agents.config import load_hyperparams, parse_override


def test_hyperparams_files_load_for_every_method():
    for name in ALGORITHMS:
        hp = load_hyperparams(name, "SketchEnv/OnTheFly-Kanji-v0")
        assert hp["n_envs"] > 0 and hp["n_steps"] > 0
    hp = load_hyperparams("ppo-a-clip", "some/other-id", {"learning_rate": 1e-4, "policy_kwargs": {"log_std_init": -1}})
    assert hp["learning_rate"] == 1e-4 and hp["policy_kwargs"]["log_std_init"] == -1
    assert hp["policy_kwargs"]["init_from_backend"] is True  # merged, not replaced
    assert parse_override("policy_kwargs={critic_arch: [32]}") == ("policy_kwargs", {"critic_arch": [32]})
    with pytest.raises(ValueError, match="unknown RL method"):
        load_hyperparams("a2c", "x")
