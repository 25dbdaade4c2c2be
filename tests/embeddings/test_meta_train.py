"""Meta-training (embeddings.meta_train): resuming, the k-shot protocol, the env on an adapted model."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import sketch_env  # noqa: F401  (registers the env ids)
from embeddings.base import load_backend
from embeddings.meta_train import (
    MetaTrainConfig,
    adaptation_tasks,
    evaluate_adaptation,
    split_rasters,
    train_meta,
)
from sketch_env.datasets import make_dataset
from tests.helpers import TINY_META


def test_meta_training_resumes_where_it_stopped(tmp_path):
    common = dict(dataset="synthetic", scheme="category", minutes=None, outer_steps=4, meta_batch=2, shots=2,
                  queries=2, gallery=5, device="cpu", checkpoint_every=1, progress=False, augment=False,
                  backend_options=dict(TINY_META))
    straight = load_backend(train_meta(MetaTrainConfig(**common, out=str(tmp_path / "a"))))
    cfg = MetaTrainConfig(**common, out=str(tmp_path / "b"))
    train_meta(cfg, stop_after_steps=2)
    assert not (tmp_path / "b" / "history.json").exists()
    resumed = load_backend(train_meta(cfg))
    assert (tmp_path / "b" / "history.json").exists()
    for (k, a), b in zip(straight.network.state_dict().items(), resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ValueError, match="different configuration"):
        train_meta(MetaTrainConfig(**{**common, "lr": 1e-2}, out=str(tmp_path / "b")))


def test_protocol_and_env_on_an_adapted_model(tmp_path, env_cache):
    cfg = MetaTrainConfig(dataset="synthetic", scheme="category", minutes=None, outer_steps=2, meta_batch=2, shots=2,
                          queries=2, gallery=5, device="cpu", progress=False, backend_options=dict(TINY_META),
                          out=str(tmp_path / "meta"))
    path = train_meta(cfg)
    ds = make_dataset("synthetic", scheme="category")
    backend = load_backend(path)
    tasks = adaptation_tasks(ds, shots=2, seed=0)
    assert [t.name for t in tasks] == ["cross"]
    task = tasks[0]
    assert not set(task.support) & set(task.queries) and len(set(ds.photo_index("test")[task.support])) == 2
    rasters = split_rasters(ds, "test", backend.render_config)
    photos = ds.load_photos(ds.photos("test"), backend.photo_size)
    result = evaluate_adaptation(backend, lambda m, s, p, g: m.adapt((s, p), gallery=g), tasks, rasters, photos,
                                 ds.photo_index("test"))
    assert 0 <= result["A@1"] <= result["A@5"] <= 100 and result["tasks"]["cross"]["gallery"] == len(task.gallery)

    env = gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", scheme="category", backend=str(path), split="test",
                   steps=4, progress=False, adapt={"shots": 2, "category": "cross", "split": "test"})
    used = env.unwrapped.backend_checkpoint
    assert "adapted" in used and load_backend(used).config["adaptation"]["shots"] == 2
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    with pytest.raises(ValueError, match="no category 'tree'"):
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", scheme="category", backend=str(path), split="test",
                 progress=False, adapt={"category": "tree", "split": "test"})
    with pytest.raises(ValueError, match="unknown key"):
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", scheme="category", backend=str(path), split="test",
                 progress=False, adapt={"shot": 2})
