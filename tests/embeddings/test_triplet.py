"""The triplet baselines (embeddings.triplet): registry, interface, save/load, per-step routing, photo
preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import BackendMismatchError, backend_names, load_backend, make_backend
from embeddings.nets import SpatialAttention
from embeddings.triplet import preprocess_photos
from sketch_env.datasets import make_dataset
from sketch_env.render import RenderConfig, render_progressive_batch
from sketch_env.schedule import PointSchedule
from tests.helpers import TINY_TRIPLET


@pytest.fixture(scope="module")
def data():
    ds = make_dataset("synthetic")
    sketches = [r.sketch for r in ds.sketches("test")]
    rasters = render_progressive_batch(sketches, PointSchedule(5), RenderConfig(**TINY_TRIPLET["render"]))
    photos = ds.load_photos(ds.photos("test"), 32)
    return rasters.reshape(-1, 32, 32), photos


def test_registry_has_the_baselines():
    assert {"ts", "b1", "b2", "b3"} <= set(backend_names())
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope")
    with pytest.raises(ValueError, match="unknown backend options"):
        make_backend("b1", not_an_option=1)


def test_interface_shapes_and_normalisation(data):
    rasters, photos = data
    b = make_backend("b1", **TINY_TRIPLET)
    gallery = b.photo_embeddings(photos)
    feats = b.sketch_features(rasters)
    queries = b.queries(feats)
    assert gallery.shape == (len(photos), 16) and feats.shape == (len(rasters), b.feature_dim)
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    # the query is the final layer applied to the feature: the same as the network's own embedding
    # same batch as sketch_features used: float32 conv results depend on the batch composition
    with torch.no_grad():
        x = torch.from_numpy(rasters).unsqueeze(1).float() / 255
        direct = b.sketch_branches[0](x).numpy()
    np.testing.assert_allclose(queries, direct, atol=1e-5)
    d = b.distance(queries[:3], gallery)
    np.testing.assert_allclose(d, np.linalg.norm(queries[:3, None] - gallery[None], axis=-1), atol=1e-5)


def test_save_load_round_trip_gives_identical_embeddings(tmp_path, data):
    rasters, photos = data
    b = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="instance")
    path = b.save(tmp_path / "b.pt")
    again = load_backend(path, expect={"dataset": "synthetic", "render.size": 32})
    np.testing.assert_array_equal(b.photo_embeddings(photos), again.photo_embeddings(photos))
    np.testing.assert_array_equal(b.sketch_features(rasters), again.sketch_features(rasters))
    assert b.fingerprint() == again.fingerprint()


def test_mismatching_checkpoint_is_refused(tmp_path):
    b = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="instance")
    path = b.save(tmp_path / "b.pt")
    with pytest.raises(BackendMismatchError, match="dataset: checkpoint has 'synthetic', asked for 'kanji'"):
        load_backend(path, expect={"dataset": "kanji"})
    with pytest.raises(BackendMismatchError, match="render.size"):
        load_backend(path, expect={"render": {"size": 64}})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackendMismatchError, match="not a readable backend checkpoint"):
        load_backend(tmp_path / "junk.pt")


def test_ts_has_no_attention_and_b1_has():
    assert make_backend("ts", **TINY_TRIPLET).sketch_branches[0].backbone.attention is None
    assert isinstance(make_backend("b1", **TINY_TRIPLET).sketch_branches[0].backbone.attention, SpatialAttention)
    assert make_backend("b2", **TINY_TRIPLET).config["partial"] is True


def test_per_step_backend_routes_steps_to_models(data):
    rasters, _ = data
    b = make_backend("b3", **TINY_TRIPLET, steps=5, models=5)
    assert b.per_step and len(b.sketch_branches) == 5
    # make the models differ so routing is visible
    with torch.no_grad():
        for k, branch in enumerate(b.sketch_branches):
            branch.head.bias.fill_(float(k))
    steps = np.arange(len(rasters)) % 5
    q = b.queries(b.sketch_features(rasters, step=steps), step=steps)
    for k in range(5):
        w, bias = b.query_layer(k)
        assert bias[0] == k
        f = b.sketch_features(rasters[steps == k], step=k)
        np.testing.assert_allclose(q[steps == k], b.queries(f, step=k), atol=1e-6)
    assert b.model_of_step(np.arange(20)).tolist() == [0] * 20 if b.config["steps"] == 20 else True
    b2 = make_backend("b3", **TINY_TRIPLET, steps=20, models=4)
    assert b2.model_of_step(np.arange(20)).tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    with pytest.raises(ValueError, match="pass step"):
        b.sketch_features(rasters)


def test_photo_preprocess_modes():
    img = np.full((1, 8, 8, 3), 255, np.uint8)
    img[0, 2:6, 2:6] = 0
    assert preprocess_photos(img, "invert")[0, 3, 3] == 255 and preprocess_photos(img, "invert")[0, 0, 0] == 0
    assert preprocess_photos(img, "gray")[0, 0, 0] == 255
    edges = preprocess_photos(np.repeat(np.repeat(img, 4, 1), 4, 2), "canny")
    assert edges.max() == 255 and edges[0, 0, 0] == 0
    with pytest.raises(ValueError, match="photo_preprocess"):
        preprocess_photos(img, "sepia")
