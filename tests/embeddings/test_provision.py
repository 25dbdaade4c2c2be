"""Provisioning (embeddings.provision): missing backends name their command, lookup, splits and distractors."""

from __future__ import annotations

from pathlib import Path

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
    monkeypatch.chdir(tmp_path)  # no runs/ folder here
    with pytest.raises(FileNotFoundError, match="sketch-env embed train --backend b2 --dataset synthetic") as err:
        gym.make("SketchEnv/OnTheFly-v0", dataset="synthetic", backend="b2")
    assert "train_if_missing=True" in str(err.value)
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


def test_kanji_backend_is_trained_on_first_use_then_reused(tmp_path, monkeypatch, capsys):
    """The kanji spec's path when no backend exists: one training run into the cache (here a stand-in that
    writes the file instead of training for 10 minutes), with a message; later uses find it."""
    import embeddings.train as train
    from embeddings.provision import resolve_backend_checkpoint

    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "backend.pt").write_bytes(b"stand-in")
        (out / "history.json").write_text("[]")
        return out / "backend.pt"

    monkeypatch.setattr(train, "train_backend", fake_train)
    assert gym.spec("SketchEnv/OnTheFly-Kanji-v0").kwargs["train_if_missing"] is True
    path = resolve_backend_checkpoint("b1", "kanji", "instance", train_if_missing=True)
    assert len(calls) == 1
    cfg = calls[0]
    assert (cfg.backend, cfg.dataset, cfg.scheme, cfg.minutes, cfg.epochs) == ("b1", "kanji", "instance", 10.0, 60)
    assert path.parent.name == "b1-s0" and path.parent.parent.name == "kanji-instance"
    message = capsys.readouterr().err
    assert "training it now (10 minutes at most" in message
    assert "sketch-env embed train --backend b1 --dataset kanji --scheme instance --minutes 10 --epochs 60" in message
    assert resolve_backend_checkpoint("b1", "kanji", "instance", train_if_missing=True) == path
    assert len(calls) == 1  # found, not trained again
    # a run written by `sketch-env embed train` under ./runs takes precedence
    runs = tmp_path / "runs" / "embeddings" / "kanji-instance" / "b1-s0"
    runs.mkdir(parents=True)
    (runs / "backend.pt").write_bytes(b"x")
    assert resolve_backend_checkpoint("b1", "kanji", "instance").resolve() == (runs / "backend.pt").resolve()
