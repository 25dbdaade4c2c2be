"""Provisioning (embeddings.provision): missing backends name their command, lookup, splits and distractors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sketch_env  # noqa: F401  (registers the ids)
from embeddings.provision import load_retrieval_data
from tests.helpers import make_env

pytestmark = pytest.mark.usefixtures("env_cache")


def test_disk_datasets_ask_for_data_root():
    for env_id in ("SketchEnv/OnTheFly-ShoeV2-v0", "SketchEnv/OnTheFly-ChairV2-v0"):
        with pytest.raises(ValueError, match="data_root=PATH"):
            gym.make(env_id)


def test_missing_backend_names_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="sketch-env embed train --backend b2 --dataset synthetic") as err:
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend="b2")
    assert "b2-s0" in str(err.value)  # where the command writes it, which the lookup reads
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        gym.make("SketchEnv/OnTheFly-v0", backend=str(tmp_path / "nope.pt"))


def test_splits_distractors_and_validation(ckpt):
    train = make_env(ckpt).data
    val = make_env(ckpt, split="val").data
    test = make_env(ckpt, split="test").data
    names = lambda d: {p.instance for p in d.photo_records}  # noqa: E731
    assert names(train).isdisjoint(names(val)) and names(train).isdisjoint(names(test))
    assert {r.instance for r in val.sketch_records} == names(val)
    assert train.num_sketches + val.num_sketches == len(
        load_retrieval_data("synthetic", ckpt, steps=10, split="train").dataset.sketches("train")
    )
    hard = make_env(ckpt, split="test", distractors=True, action="residual")
    assert hard.gallery_size == train.gallery_size + val.gallery_size + test.gallery_size
    np.testing.assert_array_equal(hard.data.photo_index, test.photo_index)
    easy = make_env(ckpt, split="test", action="residual")
    for i in range(easy.num_sketches):
        easy.reset(options={"sketch_index": i})
        hard.reset(options={"sketch_index": i})
        zero = np.zeros(easy.action_space.shape, np.float32)
        assert hard.step(zero)[4]["rank"] >= easy.step(zero)[4]["rank"]


def test_names_resolve_to_the_shipped_then_the_user_folder_never_the_working_directory(tmp_path, monkeypatch):
    """Lookup does not depend on the working directory: a ``runs/`` folder in it is ignored; a name means the
    shipped checkpoint, else what ``sketch-env embed train`` wrote into the per-user data folder."""
    from embeddings.provision import pretrained_checkpoint, resolve_backend_checkpoint, user_backend_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKETCH_ENV_DATA", str(tmp_path / "data"))  # this test's own per-user folder
    runs = tmp_path / "runs" / "embeddings" / "synthetic-instance" / "b2-s0"
    runs.mkdir(parents=True)
    (runs / "backend.pt").write_bytes(b"x")
    (runs / "history.json").write_text("[]")
    with pytest.raises(FileNotFoundError):
        resolve_backend_checkpoint("b2", "synthetic", "instance")
    shipped = resolve_backend_checkpoint("b1", "synthetic", "instance")
    assert shipped == pretrained_checkpoint("b1", "synthetic", "instance") and shipped.is_file()
    trained = user_backend_dir("b2", "synthetic", "instance")
    trained.mkdir(parents=True)
    (trained / "backend.pt").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="has not finished"):  # no history.json: still training
        resolve_backend_checkpoint("b2", "synthetic", "instance")
    (trained / "history.json").write_text("[]")
    assert resolve_backend_checkpoint("b2", "synthetic", "instance") == trained / "backend.pt"


def test_gym_make_of_every_id_never_trains(monkeypatch):
    """Making an env of any id, with or without its backend, starts no training."""
    import embeddings.train as train

    def refuse(*a, **k):
        raise AssertionError("gym.make started a training")

    monkeypatch.setattr(train, "train_backend", refuse)
    for env_id in ("SketchEnv/OnTheFly-Synthetic-v0", "SketchEnv/OnTheFly-v0"):
        kwargs = {"dataset": "synthetic", "backend": "b2"} if env_id.endswith("OnTheFly-v0") else {"progress": False}
        try:
            gym.make(env_id, **kwargs).close()
        except FileNotFoundError as err:
            assert "sketch-env embed train" in str(err)


def test_an_env_made_before_any_feature_store_computes_only_the_sketches_it_draws(tmp_path, monkeypatch, ckpt):
    """precompute=None (default) with an empty cache: nothing is cached on disk, each sketch's features are
    computed on first use; the episodes equal those on the precomputed store (precompute=True)."""
    import embeddings.provision as provision

    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    provision._MEMO.clear()
    lazy = gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, steps=10, order="sequential",
                    progress=False)
    data = lazy.unwrapped.data
    folder = tmp_path / "cache" / "features"
    assert data.lazy and not (folder.exists() and any(folder.iterdir()))
    features = data.sketch_features._owner
    lazy.reset(seed=0, options={"sketch_index": 3})
    assert features.filled.sum() == 1  # the one sketch drawn
    stored = gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, steps=10, order="sequential",
                      progress=False, precompute=True)
    assert not stored.unwrapped.data.lazy and any((tmp_path / "cache" / "features").iterdir())
    for env in (lazy, stored):
        env.action_space.seed(0)
    for sketch in (3, 5):
        a, _ = lazy.reset(seed=1, options={"sketch_index": sketch})
        b, _ = stored.reset(seed=1, options={"sketch_index": sketch})
        # one sketch at a time vs whole batches: the same network, float sums in another order (<= 1 ulp)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for _ in range(10):
            action = lazy.action_space.sample()
            ra = lazy.step(action)
            rb = stored.step(action)
            np.testing.assert_allclose(ra[0], rb[0], rtol=1e-5, atol=1e-6)
            assert ra[1] == pytest.approx(rb[1], abs=1e-5) and ra[4]["rank"] == rb[4]["rank"]
    provision._MEMO.clear()
    with pytest.raises(ValueError, match="precompute"):
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend=ckpt, precompute="yes")
