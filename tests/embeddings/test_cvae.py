"""The zero-shot CVAE / CAAE backends (embeddings.cvae): shapes, the loss terms, sampling, save/load,
the feature store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import BackendMismatchError, backend_names, l2_normalise, load_backend, make_backend
from embeddings.cvae import backbone_photo_features, layer_sizes, unit_rms
from embeddings.evaluate import evaluate_store
from embeddings.store import open_feature_store
from embeddings.zero_shot import (
    fit_cvae,
)
from sketch_env.metrics import (
    euclidean_distance,
)
from sketch_env.render import render_progressive_batch
from sketch_env.schedule import PointSchedule
from tests.helpers import TINY_FEATURES, TINY_TRIPLET

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rasters(dataset):
    sketches = [r.sketch for r in dataset.sketches("test")]
    out = render_progressive_batch(sketches, PointSchedule(3), make_backend("b1", **TINY_TRIPLET).render_config)
    return out.reshape(-1, 32, 32)


def _cvae(backbone_path, **kw):
    torch.manual_seed(kw.pop("init_seed", 0))
    return make_backend(kw.pop("name", "cvae"), backbone=str(backbone_path), **kw)


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    s = torch.from_numpy(unit_rms(rng.random((n, TINY_FEATURES), dtype=np.float32)))
    x = torch.from_numpy(unit_rms(rng.random((n, TINY_FEATURES), dtype=np.float32)))
    return x, s


def test_registry_and_layer_sizes(backbone_path):
    assert {"cvae", "caae"} <= set(backend_names())
    assert layer_sizes(4096) == ([4096, 2048], 1024)  # the paper's sizes for VGG-16 fc7
    b = _cvae(backbone_path)
    assert b.feature_dim == b.embed_dim == TINY_FEATURES
    assert b.config["hidden"] == [TINY_FEATURES, TINY_FEATURES // 2] and b.config["latent"] == TINY_FEATURES // 4
    m = b.model
    assert m.encoder[0].in_features == 2 * TINY_FEATURES and m.encoder[0].out_features == TINY_FEATURES
    assert m.mu.out_features == TINY_FEATURES // 4 and m.decoder_out.out_features == TINY_FEATURES
    assert m.decoder_hidden.in_features == TINY_FEATURES // 4 + TINY_FEATURES
    assert m.regressor.in_features == TINY_FEATURES
    assert m.discriminator is None and _cvae(backbone_path, name="caae").model.logvar is None
    with pytest.raises(ValueError, match="unknown cvae options"):
        _cvae(backbone_path, nope=1)
    with pytest.raises(ValueError, match="needs backbone"):
        make_backend("cvae")


def test_interface_shapes(backbone_path, rasters, dataset):
    b = _cvae(backbone_path, samples=7)
    feats = b.sketch_features(rasters)
    photos = dataset.load_photos(dataset.photos("test"), 32)
    gallery = b.photo_embeddings(photos)
    q = b.queries(feats)
    assert feats.shape == (len(rasters), TINY_FEATURES) and q.shape == (len(rasters), TINY_FEATURES)
    assert gallery.shape == (len(photos), TINY_FEATURES)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(gallery, l2_normalise(backbone_photo_features(b.backbone, photos)), atol=1e-6)
    np.testing.assert_array_equal(feats, b.backbone.sketch_features(rasters))
    assert b.codes().shape == (7, TINY_FEATURES // 4)
    with pytest.raises(NotImplementedError, match="no linear query layer"):
        b.query_layer()
    with pytest.raises(ValueError, match="features must have shape"):
        b.queries(feats[:, :5])


def test_loss_terms_follow_the_formulas(backbone_path):
    m = _cvae(backbone_path).model.eval()
    x, s = _batch()
    torch.manual_seed(3)
    terms = m.losses(x, s, regression_weight=10.0, prior_weight=0.5)
    # the same computation by hand, with the same noise
    torch.manual_seed(3)
    mu, logvar = m.encode(x, s)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    gen = m.decode(z, s)
    recon = ((gen - x) ** 2).sum(1).mean()
    kl = (0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)).mean()
    reg = ((m.regressor(gen) - s) ** 2).sum(1).mean()
    for name, want in (("reconstruction", recon), ("prior", kl), ("regression", reg)):
        torch.testing.assert_close(terms[name], want)
    torch.testing.assert_close(terms["total"], recon + 0.5 * kl + 10.0 * reg)
    assert float(kl.detach()) > 0.0
    # log-variance and mean are tanh-bounded as in the paper's encoder
    assert mu.abs().max() <= 1.0 and logvar.abs().max() <= 1.0


def test_regression_weight_reaches_the_decoder(backbone_path):
    m = _cvae(backbone_path).model.eval()
    x, s = _batch()

    def decoder_grad(weight):
        m.zero_grad()
        torch.manual_seed(1)
        m.losses(x, s, regression_weight=weight, prior_weight=1.0)["total"].backward()
        return m.decoder_out.weight.grad.clone()

    m.zero_grad()
    torch.manual_seed(1)
    m.losses(x, s, 1.0, 1.0)["regression"].backward()
    reg_grad = m.decoder_out.weight.grad.clone()
    assert reg_grad.abs().sum() > 0
    torch.testing.assert_close(decoder_grad(10.0) - decoder_grad(0.0), 10.0 * reg_grad, rtol=1e-4, atol=1e-5)


def test_regression_weight_changes_what_is_learnt(backbone_path):
    """Trained with lambda = 10 the generated features keep the sketch's information: the regression
    term ends lower than with lambda = 0 (same data, same seed)."""
    rng = np.random.default_rng(0)
    s = rng.random((256, TINY_FEATURES), dtype=np.float32)
    x = rng.random((256, TINY_FEATURES), dtype=np.float32)
    finals = {}
    for w in (0.0, 10.0):
        b = _cvae(backbone_path, regression_weight=w)
        finals[w] = fit_cvae(b, s, x, epochs=6, batch_size=32, progress=False)[-1]["regression"]
    assert finals[10.0] < 0.5 * finals[0.0]


def test_mean_of_samples_is_computed_exactly(backbone_path):
    b = _cvae(backbone_path, samples=5)
    x, s = _batch(6)
    codes = b.codes()
    with torch.no_grad():
        fast = b.model.generate_mean(s, codes, chunk_elems=50)  # several chunks
        slow = torch.stack([b.model.decode(codes, si.expand(len(codes), -1)).mean(0) for si in s])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_sampling_is_seeded_and_queries_do_not_depend_on_the_batch(backbone_path, rasters):
    a = _cvae(backbone_path, samples=10, sample_seed=4)
    b = _cvae(backbone_path, samples=10, sample_seed=4)
    c = _cvae(backbone_path, samples=10, sample_seed=5)
    feats = a.sketch_features(rasters)
    np.testing.assert_array_equal(a.queries(feats), a.queries(feats))
    np.testing.assert_array_equal(a.queries(feats), b.queries(feats))
    assert not np.allclose(a.queries(feats), c.queries(feats), atol=1e-6)
    np.testing.assert_allclose(a.queries(feats[3:4]), a.queries(feats)[3:4], atol=1e-6)
    torch.testing.assert_close(a.codes(), b.codes())


def test_min_over_samples_distance(backbone_path, rasters, dataset):
    b = _cvae(backbone_path, samples=6)
    feats = b.sketch_features(rasters[:9])
    gallery = b.photo_embeddings(dataset.load_photos(dataset.photos("test"), 32))
    samples = b.query_samples(feats)
    assert samples.shape == (9, 6, TINY_FEATURES)
    brute = np.stack([euclidean_distance(samples[i], gallery).min(axis=0) for i in range(9)])
    np.testing.assert_allclose(b.sample_distance(feats, gallery, chunk=4), brute, atol=1e-4)
    one = _cvae(backbone_path, samples=1)  # one sample: the min is the distance to the query itself
    np.testing.assert_allclose(
        one.sample_distance(feats, gallery), euclidean_distance(one.queries(feats), gallery), atol=1e-4
    )


def test_save_load_round_trip_and_backbone_check(backbone_path, rasters, tmp_path):
    b = _cvae(backbone_path, name="caae", samples=8)
    path = b.save(tmp_path / "caae.pt")
    loaded = load_backend(path)
    assert loaded.name == "caae" and loaded.config == b.config
    feats = b.sketch_features(rasters)
    np.testing.assert_array_equal(loaded.queries(feats), b.queries(feats))
    assert loaded.fingerprint() == b.fingerprint()

    # a backbone replaced under the same path is refused
    moved = tmp_path / "backbone.pt"
    moved.write_bytes(backbone_path.read_bytes())
    c = _cvae(moved)
    cpath = c.save(tmp_path / "cvae.pt")
    other = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="instance")
    with torch.no_grad():
        next(other.photo_branch.parameters()).add_(1.0)
    other.save(moved)
    with pytest.raises(BackendMismatchError, match="fingerprint"):
        load_backend(cpath)
    moved.unlink()
    with pytest.raises(FileNotFoundError, match="backbone checkpoint"):
        load_backend(cpath)


def test_feature_store_with_the_cvae_backend(backbone_path, dataset, tmp_path):
    b = _cvae(backbone_path, samples=4)
    store = open_feature_store(b, dataset, "test", PointSchedule(3), progress=False, root_dir=tmp_path)
    n, p = len(dataset.sketches("test")), len(dataset.photos("test"))
    assert store.sketch_features.shape == (n, 3, TINY_FEATURES) and store.queries.shape == (n, 3, TINY_FEATURES)
    assert store.gallery.shape == (p, TINY_FEATURES)
    flat = np.asarray(store.sketch_features).reshape(-1, TINY_FEATURES)
    np.testing.assert_allclose(np.asarray(store.queries).reshape(-1, TINY_FEATURES), b.queries(flat), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(store.gallery, axis=1), 1.0, atol=1e-5)
    result = evaluate_store(store)
    assert result["ranks"].shape == (n, 3) and result["gallery_size"] == p
    # the second open reuses the store
    again = open_feature_store(b, dataset, "test", PointSchedule(3), progress=False, root_dir=tmp_path)
    assert again.path == store.path


def test_cvae_learns_a_feature_mapping(backbone_path):
    """On features where the photo is a fixed noisy linear map of the sketch, the trained CVAE's query
    is nearer its own photo than the other photos are, on held-out pairs."""
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(TINY_FEATURES, TINY_FEATURES)).astype(np.float32)
    s = rng.normal(size=(500, TINY_FEATURES)).astype(np.float32)
    x = s @ mix + 0.3 * rng.normal(size=(500, TINY_FEATURES)).astype(np.float32)
    b = _cvae(backbone_path, samples=20)
    g = l2_normalise(x[400:])

    def ranks(q):
        d = euclidean_distance(q, g)
        return (d <= np.diag(d)[:, None]).sum(1)

    before = ranks(b.queries(s[400:]))
    fit_cvae(b, s[:400], x[:400], epochs=25, batch_size=50, lr=1e-3, progress=False)
    after = ranks(b.queries(s[400:]))
    assert np.mean(after) < 0.5 * np.mean(before) and np.mean(after <= 5) > 0.3


def test_caae_trains_its_discriminator(backbone_path):
    rng = np.random.default_rng(2)
    s, x = rng.random((128, TINY_FEATURES), dtype=np.float32), rng.random((128, TINY_FEATURES), dtype=np.float32)
    b = _cvae(backbone_path, name="caae")
    d0 = [p.detach().clone() for p in b.model.discriminator.parameters()]
    hist = fit_cvae(b, s, x, epochs=2, batch_size=32, progress=False)
    assert "discriminator" in hist[-1] and np.isfinite(hist[-1]["total"])
    assert any(not torch.equal(a, p) for a, p in zip(d0, b.model.discriminator.parameters()))
