"""Shared fixtures: a private cache, the tiny synthetic backend the environment tests run on, the synthetic
dataset, a tiny untrained backbone, one torch thread, and the stroke-order game on the synthetic data."""

from __future__ import annotations

import os

import pytest
import torch

from embeddings.base import make_backend
from sketch_env.cache import DATA_ENV_VAR, ENV_VAR
from sketch_env.datasets import make_dataset
from tests.helpers import TINY_TRIPLET


@pytest.fixture(scope="session", autouse=True)
def env_cache(tmp_path_factory):
    """``$SKETCH_ENV_CACHE`` and ``$SKETCH_ENV_DATA`` pointed at fresh folders for the whole session: feature
    stores and trained models go there, never into the user's cache or data folder."""
    saved = {var: os.environ.get(var) for var in (ENV_VAR, DATA_ENV_VAR)}
    root = tmp_path_factory.mktemp("sketch-env-cache")
    os.environ[ENV_VAR] = str(root)
    os.environ[DATA_ENV_VAR] = str(tmp_path_factory.mktemp("sketch-env-data"))
    yield root
    for var, old in saved.items():
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


@pytest.fixture(scope="session")
def synthetic_checkpoint(env_cache) -> str:
    """The tiny B1 of ``SketchEnv/OnTheFly-Synthetic-v0``: the one the package ships."""
    from embeddings.provision import pretrained_checkpoint

    path = pretrained_checkpoint("b1", "synthetic", "instance")
    assert path.is_file(), f"the package ships {path}"
    return str(path)


@pytest.fixture(scope="module")
def ckpt(synthetic_checkpoint) -> str:
    return synthetic_checkpoint


@pytest.fixture(scope="module")
def make_game(synthetic_checkpoint):
    """The stroke-order game on the synthetic test split (keyword arguments: the game's)."""
    from sketch_env import stroke_order_v0

    def make(**kw):
        return stroke_order_v0.parallel_env(dataset="synthetic", backend=synthetic_checkpoint, split="test",
                                            progress=False, **kw)
    return make


@pytest.fixture(scope="module")
def dataset():
    return make_dataset("synthetic")


@pytest.fixture(scope="module")
def backbone_path(tmp_path_factory):
    """A tiny untrained B1 (32 px), the frozen backbone of the zero-shot backends."""
    torch.manual_seed(0)
    b = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="instance")
    return b.save(tmp_path_factory.mktemp("backbone") / "backend.pt")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train much faster on one thread, above all on a busy machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def package_logger():
    """The ``sketch_env`` logger as a library leaves it (a CLI test configures it for its process): each test
    starts with it propagating to the root, where pytest's ``caplog`` reads it."""
    import logging

    logger = logging.getLogger("sketch_env")
    yield logger
    logger.handlers[:] = []
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
