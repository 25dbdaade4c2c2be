"""Small public helpers shared by tests in several folders (fixtures are in conftest.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from hypothesis import strategies as st

import sketch_env  # noqa: F401  (registers the ids)
from sketch_env.sketch import Sketch

#: the registered id of the tiny synthetic configuration
SYNTHETIC = "SketchEnv/OnTheFly-Synthetic-v0"

#: a triplet backend small enough to train in seconds on 32 px rasters
TINY_TRIPLET = {"channels": [8, 16, 16, 16], "embed_dim": 16,
                "render": {"size": 32, "line_width": 1, "polarity": "white_on_black", "antialias": False,
                           "thicken": "line", "margin": 0},
                "photo_size": 32}
#: its pooled feature size: pyramid pooling of the last 16 channels
TINY_FEATURES = 16 * 5
#: the meta backend's tiny widths
TINY_META = {"channels": [8, 8, 16, 16]}


def make_env(ckpt: str, **kw):
    """The generic retrieval env on the synthetic data with backend ``ckpt`` (unwrapped)."""
    kw = {"dataset": "synthetic", "backend": ckpt, "steps": 10, "progress": False, **kw}
    return gym.make("SketchEnv/OnTheFly-v0", **kw).unwrapped


def pendulum_vec_env(n: int = 2):
    """SB3's vectorised Pendulum (a Box-action env the RL methods train on)."""
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env("Pendulum-v1", n_envs=n, seed=0)


@st.composite
def sketches(draw, max_strokes: int = 6, max_points: int = 15):
    """Random sketches in the unit frame, single-point strokes included."""
    n_strokes = draw(st.integers(1, max_strokes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    strokes = []
    for _ in range(n_strokes):
        n = draw(st.integers(1, max_points))
        # a random walk looks more like ink than uniform noise
        start = rng.uniform(0.1, 0.9, size=2)
        walk = start + np.cumsum(rng.normal(0, 0.08, size=(n, 2)), axis=0)
        strokes.append(np.clip(walk, 0.0, 1.0))
    return Sketch.from_strokes(strokes)
