"""Shared fixtures: a private cache and the tiny synthetic backend the environment tests run on."""

from __future__ import annotations

import os

import pytest

from sketch_env.cache import ENV_VAR


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory):
    """``$SKETCH_ENV_CACHE`` pointed at a fresh folder for the rest of the session (backends trained on
    first use and feature stores go there, never into the user's cache)."""
    old = os.environ.get(ENV_VAR)
    root = tmp_path_factory.mktemp("sketch-env-cache")
    os.environ[ENV_VAR] = str(root)
    yield root
    if old is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = old


@pytest.fixture(scope="session")
def synthetic_checkpoint(env_cache) -> str:
    """The tiny B1 of ``SketchEnv/OnTheFly-Synthetic-v0``, trained on first use (a few seconds)."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the ids)

    env = gym.make("SketchEnv/OnTheFly-Synthetic-v0", progress=False)
    path = env.unwrapped.backend_checkpoint
    env.close()
    return path
