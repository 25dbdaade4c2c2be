"""The feature store and evaluation, with a tiny fake backend (a fixed random projection) on synthetic data."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from embeddings.base import EmbeddingBackend, l2_normalise
from embeddings.evaluate import evaluate_store, format_table, plot_curves, write_curves_csv
from embeddings.store import FeatureStore, feature_store_key, open_feature_store
from sketch_env.datasets import make_dataset
from sketch_env.render import render_progressive
from sketch_env.schedule import PointSchedule

CONFIG = {"embed_dim": 8, "render": {"size": 16}, "photo_size": 16}
SCHEDULE = PointSchedule(5)


def _downsample(images: np.ndarray) -> np.ndarray:
    """(B, 16, 16) float -> (B, 16): 4x4 block means."""
    b = len(images)
    return images.reshape(b, 4, 4, 4, 4).mean(axis=(2, 4)).reshape(b, 16)


class FakeBackend(EmbeddingBackend):
    """Features = a fixed random projection of 4x4-downsampled rasters; photos likewise (inverted grey)."""

    name = "fake"

    def __init__(self, config: Mapping[str, Any] = CONFIG, seed: int = 0) -> None:
        super().__init__(config)
        rng = np.random.default_rng(seed)
        self.proj = rng.normal(size=(12, 16)).astype(np.float32)
        self.weight = rng.normal(size=(self.embed_dim, 12)).astype(np.float32)
        self.bias = rng.normal(size=self.embed_dim).astype(np.float32) * 0.1
        self.sketch_calls = 0
        self.steps_seen: list[np.ndarray] = []

    @property
    def feature_dim(self) -> int:
        return 12

    def sketch_features(self, rasters, step=None):
        self.sketch_calls += 1
        self.steps_seen.append(np.asarray(step))
        return _downsample(rasters.astype(np.float32) / 255.0) @ self.proj.T

    def photo_embeddings(self, photos):
        grey = 1.0 - photos.astype(np.float32).mean(axis=-1) / 255.0  # ink bright, as in the rasters
        return l2_normalise((_downsample(grey) @ self.proj.T) @ self.weight.T + self.bias)

    def query_layer(self, step=None):
        return self.weight, self.bias

    def state_dict(self):
        return {"w": torch.tensor(self.weight), "b": torch.tensor(self.bias), "p": torch.tensor(self.proj)}

    def load_state_dict(self, state):
        self.weight = state["w"].numpy()
        self.bias = state["b"].numpy()
        self.proj = state["p"].numpy()


@pytest.fixture(scope="module")
def built(dataset, tmp_path_factory):
    """A store built once for the read-only tests."""
    backend = FakeBackend()
    root = tmp_path_factory.mktemp("features")
    store = open_feature_store(backend, dataset, "test", SCHEDULE, batch_size=16, progress=False, root_dir=root)
    return backend, store, root


def _open(backend, dataset, root, **kw):
    return open_feature_store(backend, dataset, "test", SCHEDULE, batch_size=16, progress=False, root_dir=root, **kw)


class PerStepFakeBackend(FakeBackend):
    """A per-step backend: the query layer's bias depends on the step."""

    per_step = True

    def query_layer(self, step=None):
        return self.weight, self.bias + (0.0 if step is None else float(step))


def test_shapes_and_meta(built, dataset):
    backend, store, _ = built
    n, p = len(dataset.sketches("test")), len(dataset.photos("test"))
    assert isinstance(store, FeatureStore)
    assert store.sketch_features.shape == (n, 5, 12) and store.sketch_features.dtype == np.float32
    assert store.queries.shape == (n, 5, 8) and store.queries.dtype == np.float32
    assert store.gallery.shape == (p, 8) and store.gallery.dtype == np.float32
    np.testing.assert_array_equal(store.photo_index, dataset.photo_index("test"))
    assert isinstance(store.sketch_features, np.memmap)
    m = store.meta
    assert (m["n"], m["S"], m["F"], m["d"], m["P"]) == (n, 5, 12, 8, p)
    assert m["key"] == feature_store_key(backend, dataset, "test", SCHEDULE) == store.path.name
    assert m["schedule"] == SCHEDULE.key() and m["backend_fingerprint"] == backend.fingerprint()
    assert m["rasters_per_second"] > 0
    # batch_size 16 with S = 5: 3 sketches (15 rasters) per backend call, each raster with its step
    assert all(len(s) <= 16 and len(s) % 5 == 0 for s in backend.steps_seen)
    np.testing.assert_array_equal(backend.steps_seen[0], np.tile(np.arange(5), len(backend.steps_seen[0]) // 5))
    np.testing.assert_allclose(np.linalg.norm(store.gallery, axis=1), 1.0, rtol=1e-5)


def test_features_are_those_of_the_rasters(built, dataset):
    backend, store, _ = built
    rec = dataset.sketches("test")[2]
    rasters = render_progressive(rec.sketch, SCHEDULE, backend.render_config)
    np.testing.assert_allclose(store.sketch_features[2], backend.sketch_features(rasters), rtol=1e-5, atol=1e-6)


def test_queries_equal_backend_queries(built):
    backend, store, _ = built
    f = np.asarray(store.sketch_features).reshape(-1, 12)
    q = backend.queries(f).reshape(store.queries.shape)
    np.testing.assert_allclose(store.queries, q, rtol=1e-5, atol=1e-6)


def test_per_step_queries(dataset, tmp_path):
    backend = PerStepFakeBackend()
    store = _open(backend, dataset, tmp_path)
    for t in range(5):
        want = backend.queries(np.asarray(store.sketch_features[:, t]), step=t)
        np.testing.assert_allclose(store.queries[:, t], want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(store.queries[:, 0], store.queries[:, 4])


def test_second_open_reuses(dataset, tmp_path):
    backend = FakeBackend()
    first = _open(backend, dataset, tmp_path)
    calls = backend.sketch_calls
    mtimes = {f: os.stat(first.path / f).st_mtime_ns for f in os.listdir(first.path)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _open(backend, dataset, tmp_path)
    assert backend.sketch_calls == calls
    assert second.path == first.path
    assert {f: os.stat(second.path / f).st_mtime_ns for f in os.listdir(second.path)} == mtimes
    np.testing.assert_array_equal(second.queries, first.queries)
    # nothing left behind but the store
    assert os.listdir(tmp_path) == [first.path.name]


def test_truncated_file_is_rebuilt(dataset, tmp_path):
    backend = FakeBackend()
    first = _open(backend, dataset, tmp_path)
    want = np.array(first.sketch_features), np.array(first.queries), np.array(first.gallery)
    path = first.path
    del first
    target = path / "sketch_features.npy"
    size = target.stat().st_size
    with open(target, "r+b") as f:
        f.truncate(size // 2)
    calls = backend.sketch_calls
    with pytest.warns(UserWarning, match="sketch_features.npy"):
        again = _open(backend, dataset, tmp_path)
    assert backend.sketch_calls > calls
    assert target.stat().st_size == size
    for got, exp in zip((again.sketch_features, again.queries, again.gallery), want):
        np.testing.assert_array_equal(got, exp)
    assert os.listdir(tmp_path) == [path.name]


def test_stale_meta_and_missing_file_are_rebuilt(dataset, tmp_path):
    backend = FakeBackend()
    store = _open(backend, dataset, tmp_path)
    meta_path = store.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"] = "something-else"
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="key"):
        store = _open(backend, dataset, tmp_path)
    (store.path / "gallery.npy").unlink()
    with pytest.warns(UserWarning, match="gallery.npy"):
        store = _open(backend, dataset, tmp_path)
    assert (store.path / "gallery.npy").is_file()


def test_rebuild_flag_rebuilds(dataset, tmp_path):
    backend = FakeBackend()
    _open(backend, dataset, tmp_path)
    calls = backend.sketch_calls
    _open(backend, dataset, tmp_path, rebuild=True)
    assert backend.sketch_calls > calls


def test_key_depends_on_schedule_backend_and_split(dataset):
    backend = FakeBackend()
    key = feature_store_key(backend, dataset, "test", SCHEDULE)
    assert key == feature_store_key(FakeBackend(), dataset, "test", PointSchedule(5))
    assert key != feature_store_key(backend, dataset, "test", PointSchedule(6))
    assert key != feature_store_key(FakeBackend(seed=1), dataset, "test", SCHEDULE)
    assert key != feature_store_key(PerStepFakeBackend(), dataset, "test", SCHEDULE)
    assert key != feature_store_key(backend, dataset, "train", SCHEDULE)
    assert key != feature_store_key(backend, make_dataset("synthetic", seed=1), "test", SCHEDULE)
    other_render = FakeBackend({**CONFIG, "render": {"size": 16, "line_width": 2}})
    assert key != feature_store_key(other_render, dataset, "test", SCHEDULE)


def test_evaluate_store(built):
    _, store, _ = built
    result = evaluate_store(store)
    n, p = store.num_sketches, store.gallery_size
    assert result["ranks"].shape == (n, 5)
    assert ((result["ranks"] >= 1) & (result["ranks"] <= p)).all()
    assert 0.0 <= result["m@A"] <= 100.0 and 0.0 < result["m@B"] <= 100.0
    assert 0.0 <= result["A@1"] <= result["A@5"] <= result["A@10"] <= 100.0
    assert (result["gallery_size"], result["sketches"], result["steps"]) == (p, n, 5)
    assert result["curves"]["percent"].tolist() == [20.0, 40.0, 60.0, 80.0, 100.0]
    # chunking does not change the ranks
    np.testing.assert_array_equal(evaluate_store(store, chunk=3)["ranks"], result["ranks"])


def test_distractors_can_only_worsen_ranks(built):
    _, store, _ = built
    base = evaluate_store(store)
    rng = np.random.default_rng(0)
    extra = l2_normalise(rng.normal(size=(40, 8)))
    worse = evaluate_store(store, distractors=extra)
    assert worse["gallery_size"] == store.gallery_size + 40
    assert (worse["ranks"] >= base["ranks"]).all()
    # a distractor on the first query of sketch 0 is closer than the true photo there: one rank worse
    hit = evaluate_store(store, distractors=np.asarray(store.queries[0, :1]))
    assert hit["ranks"][0, 0] == base["ranks"][0, 0] + 1
    with pytest.raises(ValueError):
        evaluate_store(store, distractors=np.zeros((3, 5)))


def test_plot_csv_and_table(built, tmp_path):
    _, store, _ = built
    result = evaluate_store(store)
    curves = {"fake": result["curves"], "fake again": result["curves"]}
    png = plot_curves(curves, tmp_path / "curves.png", title="fake backend")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    csv_path = write_curves_csv(curves, tmp_path / "curves.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "method,percent,ranking_percentile,inverse_rank"
    assert len(lines) == 1 + 2 * 5 and lines[1].startswith("fake,20,")
    table = format_table({"fake": result, "empty": {}})
    rows = table.splitlines()
    assert rows[0] == "| method | A@1 | A@5 | A@10 | m@A | m@B |"
    assert rows[2].startswith("| fake | ") and f"{result['m@A']:.1f}" in rows[2]
    assert rows[3] == "| empty | - | - | - | - | - |"


def test_flip_average_switch_changes_features_not_weights(synthetic_checkpoint, tmp_path, monkeypatch):
    """Test-time mirror averaging switched at load: the photo embeddings become the normalised sum of the
    photo's and its mirror image's, and the store is another one (its key follows the setting)."""
    import shutil

    from agents.cli import main as cli
    from embeddings.base import load_backend
    from embeddings.store import backend_and_dataset, open_backend_store
    from sketch_env.errors import ArgumentError

    plain = load_backend(synthetic_checkpoint, device="cpu")
    assert plain.config["flip_average"] is False  # renderings train without it
    mirrored, dataset = backend_and_dataset(synthetic_checkpoint, device="cpu", flip_average=True)
    photos = dataset.load_photos(dataset.photos("test")[:4], plain.photo_size)
    x = plain.preprocess(photos)
    one = plain._run(plain.photo_branch, x).reshape(len(x), -1)
    other = plain._run(plain.photo_branch, x[:, :, ::-1]).reshape(len(x), -1)
    np.testing.assert_allclose(mirrored.photo_embeddings(photos), l2_normalise(one + other), atol=1e-5)
    assert mirrored.fingerprint() != plain.fingerprint()
    assert feature_store_key(mirrored, dataset, "test", SCHEDULE) != feature_store_key(plain, dataset, "test", SCHEDULE)
    _, _, store = open_backend_store(synthetic_checkpoint, "test", steps=3, device="cpu", progress=False,
                                     flip_average=True)
    assert store.meta["n"] == len(dataset.sketches("test"))

    # the command line: --no-flip-average / --flip-average, each in its own default folder beside the checkpoint
    local = tmp_path / "backend.pt"
    shutil.copy(synthetic_checkpoint, local)
    assert cli(["embed", "eval", "--checkpoint", str(local), "--steps", "3", "--device", "cpu", "--flip-average"]) == 0
    assert (tmp_path / "eval-test-flip-average" / "metrics.md").is_file()
    assert not (tmp_path / "eval-test").exists()

    # a backend without the option says so
    monkeypatch.setattr("embeddings.base.load_backend", lambda path, device: FakeBackend())
    with pytest.raises(ArgumentError, match="no test-time mirror averaging"):
        backend_and_dataset(local, dataset, flip_average=False)
