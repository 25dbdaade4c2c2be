"""Zero-shot training (embeddings.zero_shot): the CVAE end to end, the env on unseen categories, the
baseline heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import load_backend, make_backend
from embeddings.zero_shot import (
    ZeroShotTrainConfig,
    fit_category_head,
    fit_regression,
    split_features,
    train_zero_shot,
)
from sketch_env.datasets import make_dataset
from tests.helpers import TINY_FEATURES, TINY_TRIPLET

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_zero_shot_end_to_end(backbone_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    cfg = ZeroShotTrainConfig(
        backend="cvae",
        backbone=str(backbone_path),
        epochs=2,
        batch_size=16,
        device="cpu",
        progress=False,
        out=str(tmp_path / "cvae"),
        backend_options={"samples": 5},
    )
    path = train_zero_shot(cfg)
    b = load_backend(path, expect={"dataset": "synthetic", "scheme": "instance", "samples": 5})
    assert (tmp_path / "cvae" / "history.json").is_file()
    assert b.config["backbone_fingerprint"] == load_backend(backbone_path).fingerprint()
    with pytest.raises(ValueError, match="'cvae' or 'caae'"):
        train_zero_shot(ZeroShotTrainConfig(backend="b1", backbone=str(backbone_path)))

    # what the retrieval environment does with a checkpoint: its dataset and scheme come from the config
    from embeddings.store import open_backend_store

    backend, dataset, store = open_backend_store(path, "test", steps=3, device="cpu", progress=False)
    assert backend.name == "cvae" and dataset.name == "synthetic" and store.queries.shape[1:] == (3, TINY_FEATURES)


def test_env_runs_zero_shot_episodes_on_unseen_categories(tmp_path, monkeypatch):
    """``gym.make(..., backend=<cvae on a category split>, split="test")``: partial sketches of categories
    the CVAE never saw retrieve among the photos of those categories only."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the env ids)

    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    backbone = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="category")
    backbone = backbone.save(tmp_path / "b1" / "backend.pt")
    path = train_zero_shot(ZeroShotTrainConfig(backend="cvae", backbone=str(backbone), epochs=1, batch_size=16,
                                               device="cpu", progress=False, out=str(tmp_path / "cvae"),
                                               backend_options={"samples": 5}))
    env = gym.make("SketchEnv/OnTheFly-v0", backend=str(path), split="test", steps=3, progress=False).unwrapped
    data = make_dataset("synthetic", scheme="category")
    unseen = {p.category for p in data.photos("test")}
    assert unseen.isdisjoint({p.category for p in data.photos("train")})
    assert env.gallery_size == len(data.photos("test"))
    obs, info = env.reset(seed=0)
    assert obs.shape == (TINY_FEATURES,)
    ranks, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        ranks.append(info["rank"])
        done = terminated or truncated
    assert len(ranks) == 3 and all(1 <= r <= env.gallery_size for r in ranks)


def test_baseline_heads(backbone_path, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path))
    feats = split_features(load_backend(backbone_path), dataset, "train", progress=False)
    s = np.asarray(feats.sketch[:, -1])
    x = feats.photo[feats.photo_index]
    for loss in ("contrastive", "triplet"):
        sh, ph = fit_category_head(
            loss, s, feats.photo, feats.sketch_category, feats.photo_category, embed_dim=8, epochs=1, progress=False
        )
        assert (sh is ph) == (loss == "contrastive")
        e = sh.embed(s)
        assert e.shape == (len(s), 8)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    r = fit_regression(s, x, epochs=1, batch_size=16, progress=False)
    assert r.embed(s).shape == (len(s), TINY_FEATURES)
