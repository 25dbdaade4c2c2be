"""The meta-adapted backend (embeddings.meta): inner loop, meta-learned margin, regularisers, adaptation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sketch_env  # noqa: F401  (registers the env ids)
from embeddings.base import backend_names, load_backend, make_backend
from embeddings.losses import gallery_triplet_loss
from embeddings.meta import MetaBackend, merge_gallery
from embeddings.meta_train import (
    MetaTrainConfig,
    adaptation_tasks,
    outer_step,
    split_rasters,
)
from embeddings.semantic import category_word_vectors
from embeddings.train import TrainConfig, TripletSampler
from embeddings.triplet import preprocess_photos
from sketch_env.datasets import make_dataset
from tests.helpers import TINY_META


@pytest.fixture(scope="module")
def data():
    ds = make_dataset("synthetic", scheme="category")
    backend = make_backend("meta", **TINY_META, categories=sorted({p.category for p in ds.photos("train")}))
    rasters = split_rasters(ds, "test", backend.render_config)
    photos = ds.load_photos(ds.photos("test"), backend.photo_size)
    return ds, backend, rasters, photos, ds.photo_index("test")


def _task_arrays(data, shots=2):
    ds, backend, rasters, photos, sketch_photo = data
    task = adaptation_tasks(ds, shots=shots, seed=0)[0]
    return task, rasters[task.support], photos[sketch_photo[task.support]], photos[task.gallery]


def _support_loss(backend: MetaBackend, sketches, photos, gallery) -> float:
    merged, positive = merge_gallery(photos, gallery)
    x_s = torch.from_numpy(sketches).unsqueeze(1).float() / 255
    x_g = torch.from_numpy(preprocess_photos(merged, "invert")).unsqueeze(1).float() / 255
    with torch.no_grad():
        return float(gallery_triplet_loss(backend.network(x_s), backend.network(x_g), torch.as_tensor(positive),
                                          float(backend.config["margin"])))


def test_registered_and_bad_options_are_clear():
    assert "meta" in backend_names()
    with pytest.raises(ValueError, match="inner must be"):
        make_backend("meta", **TINY_META, inner="last")
    with pytest.raises(ValueError, match="margin_range"):
        make_backend("meta", **TINY_META, margin_range=[0.5, 0.1])


def test_inner_loop_changes_only_the_head(data):
    _, backend, *_ = data
    _, sk, ph, gallery = _task_arrays(data)
    adapted = backend.adapt((sk, ph), steps=3, gallery=gallery)
    before, after = dict(backend.network.named_parameters()), dict(adapted.network.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}
    assert adapted.config["adaptation"]["shots"] == 2 and backend.config["adaptation"] is None


def test_adapt_lowers_the_support_loss(data):
    _, backend, *_ = data
    _, sk, ph, gallery = _task_arrays(data)
    backend.inner_lrs.data.fill_(np.log(0.5))
    try:
        adapted = backend.adapt((sk, ph), steps=5, gallery=gallery)
    finally:
        backend.inner_lrs.data.fill_(np.log(backend.config["inner_lr"]))
    assert _support_loss(adapted, sk, ph, gallery) < _support_loss(backend, sk, ph, gallery)


def test_full_maml_inner_loop_changes_every_layer(data):
    ds, *_ = data
    maml = make_backend("meta", **TINY_META, inner="all", margin_net=False, categories=["a"])
    _, sk, ph, gallery = _task_arrays(data)
    adapted = maml.adapt((sk, ph), steps=1, gallery=gallery)
    conv = "backbone.body.0.0.weight"
    assert not torch.equal(dict(maml.network.named_parameters())[conv], dict(adapted.network.named_parameters())[conv])


def test_margin_network_is_learned_through_the_inner_loop(data):
    _, backend, *_ = data
    torch.manual_seed(0)
    fs, fg = torch.randn(3, backend.feature_dim), torch.randn(6, backend.feature_dim)
    fq = torch.randn(4, backend.feature_dim)
    positive = torch.arange(3)

    def outer_grad(create_graph: bool) -> float:
        backend.margin_net.zero_grad()
        margin = backend.task_margin(fs, fg[:3])
        assert 0.05 <= float(margin.detach()) <= 1.0
        w, b = backend.adapt_head(fs, fg, positive, margin, steps=1, create_graph=create_graph)
        zq = F.normalize(F.linear(fq, w, b), dim=-1)
        zg = F.normalize(F.linear(fg, w, b), dim=-1)
        loss = gallery_triplet_loss(zq, zg, torch.tensor([0, 1, 2, 3]), 0.2)
        loss.backward()
        grads = [p.grad for p in backend.margin_net.parameters()]
        return sum(0.0 if g is None else float(g.abs().sum()) for g in grads)

    assert outer_grad(create_graph=True) > 0  # the margin reaches the query loss through theta_M'
    assert outer_grad(create_graph=False) == 0  # first order: no path, as documented
    # and the margin is what the inner loss uses: a larger margin, a larger loss
    zs, zg = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    assert float(gallery_triplet_loss(zs, zg, positive, 0.9)) > float(gallery_triplet_loss(zs, zg, positive, 0.1))


def test_regulariser_switches_change_the_loss(data):
    ds, *_ = data
    photos = ds.photos("train")
    cats = sorted({p.category for p in photos})
    groups = [[] for _ in photos]
    for sid, pid in enumerate(ds.photo_index("train")):
        groups[pid].append(sid)
    category_of = np.array([cats.index(p.category) for p in photos])
    pools = [np.flatnonzero(category_of == c) for c in range(len(cats))]
    cfg = MetaTrainConfig(shots=2, queries=2, gallery=5, meta_batch=2)
    word_vectors = torch.from_numpy(category_word_vectors(cats, 64))

    def parts(**weights):
        torch.manual_seed(0)
        b = make_backend("meta", **TINY_META, categories=cats, **weights)
        photo_rasters = preprocess_photos(ds.load_photos(photos, 64), "invert")
        sampler = TripletSampler(TrainConfig(augment=False, steps=1), b, photo_rasters, groups, ds.sketches("train"))
        return outer_step(b, cfg, sampler, pools, category_of, word_vectors, np.random.default_rng(0),
                           torch.device("cpu"))

    full = parts(domain_weight=0.5, category_weight=0.25, semantic_weight=2.0)
    expect = full["query_loss"] + 0.5 * full["L_D"] + 0.25 * full["L_C"] + 2.0 * full["L_S"]
    assert full["loss"] == pytest.approx(expect, rel=1e-5)
    none = parts(domain_weight=0, category_weight=0, semantic_weight=0)
    assert not {"L_D", "L_C", "L_S"} & set(none)
    assert none["loss"] == pytest.approx(none["query_loss"], rel=1e-6)
    assert none["query_loss"] == pytest.approx(full["query_loss"], rel=1e-5)  # same tasks, same model
    style = parts(task_level="style", intermediate_weight=1.0, domain_weight=0, semantic_weight=0)
    assert "L_ud" in style and "L_C" not in style  # style tasks: L_ud replaces L_C


def test_save_load_round_trip(tmp_path, data):
    _, backend, rasters, photos, _ = data
    _, sk, ph, gallery = _task_arrays(data)
    adapted = backend.adapt((sk, ph), gallery=gallery, description="test")
    path = adapted.save(tmp_path / "backend.pt")
    loaded = load_backend(path)
    assert isinstance(loaded, MetaBackend) and loaded.config["adaptation"]["description"] == "test"
    assert loaded.fingerprint() == adapted.fingerprint() != backend.fingerprint()
    np.testing.assert_array_equal(loaded.photo_embeddings(photos[:4]), adapted.photo_embeddings(photos[:4]))
    np.testing.assert_array_equal(loaded.sketch_features(rasters[:4]), adapted.sketch_features(rasters[:4]))
    for a, b in zip(loaded.margin_net.parameters(), adapted.margin_net.parameters()):
        assert torch.equal(a, b)


def test_merge_gallery_keeps_one_copy_of_each_support_photo():
    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    new = rng.integers(0, 255, (1, 4, 4, 3), dtype=np.uint8)
    merged, positive = merge_gallery(np.concatenate([gallery[[3]], new]), gallery)
    assert len(merged) == 6 and positive.tolist() == [3, 5]
