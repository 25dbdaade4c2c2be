"""The zero-shot CVAE / CAAE backends, their training, the baseline heads and the category-retrieval metrics,
on tiny data (a random small B1 backbone, the synthetic dataset; seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import BackendMismatchError, backend_names, l2_normalise, load_backend, make_backend
from embeddings.cvae import backbone_photo_features, layer_sizes, unit_rms
from embeddings.evaluate import evaluate_store
from embeddings.store import open_feature_store
from embeddings.zero_shot import (
    ZeroShotTrainConfig,
    category_triplet_loss,
    contrastive_loss,
    fit_category_head,
    fit_cvae,
    fit_regression,
    split_features,
    train_zero_shot,
)
from sketch_env.datasets import make_dataset
from sketch_env.metrics import (
    ap_at_k,
    ap_at_k_zs_sbir,
    category_retrieval_metrics,
    euclidean_distance,
    precision_at_k,
    top_k_relevance,
)
from sketch_env.render import render_progressive_batch
from sketch_env.schedule import PointSchedule

SMALL = {
    "channels": [8, 16, 16, 16],
    "embed_dim": 16,
    "render": {
        "size": 32,
        "line_width": 1,
        "polarity": "white_on_black",
        "antialias": False,
        "thicken": "line",
        "margin": 0,
    },
    "photo_size": 32,
}
F_DIM = 16 * 5  # pyramid pooling of the last 16 channels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train much faster on one thread, above all on a busy machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backbone_path(tmp_path_factory):
    torch.manual_seed(0)
    b = make_backend("b1", **SMALL, dataset="synthetic", scheme="instance")
    return b.save(tmp_path_factory.mktemp("backbone") / "backend.pt")


@pytest.fixture(scope="module")
def dataset():
    return make_dataset("synthetic")


@pytest.fixture(scope="module")
def rasters(dataset):
    sketches = [r.sketch for r in dataset.sketches("test")]
    out = render_progressive_batch(sketches, PointSchedule(3), make_backend("b1", **SMALL).render_config)
    return out.reshape(-1, 32, 32)


def _cvae(backbone_path, **kw):
    torch.manual_seed(kw.pop("init_seed", 0))
    return make_backend(kw.pop("name", "cvae"), backbone=str(backbone_path), **kw)


# ----------------------------------------------------------------------------- the model


def test_registry_and_layer_sizes(backbone_path):
    assert {"cvae", "caae"} <= set(backend_names())
    assert layer_sizes(4096) == ([4096, 2048], 1024)  # the paper's sizes for VGG-16 fc7
    b = _cvae(backbone_path)
    assert b.feature_dim == b.embed_dim == F_DIM
    assert b.config["hidden"] == [F_DIM, F_DIM // 2] and b.config["latent"] == F_DIM // 4
    m = b.model
    assert m.encoder[0].in_features == 2 * F_DIM and m.encoder[0].out_features == F_DIM
    assert m.mu.out_features == F_DIM // 4 and m.decoder_out.out_features == F_DIM
    assert m.decoder_hidden.in_features == F_DIM // 4 + F_DIM and m.regressor.in_features == F_DIM
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
    assert feats.shape == (len(rasters), F_DIM) and q.shape == (len(rasters), F_DIM)
    assert gallery.shape == (len(photos), F_DIM)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(gallery, l2_normalise(backbone_photo_features(b.backbone, photos)), atol=1e-6)
    np.testing.assert_array_equal(feats, b.backbone.sketch_features(rasters))
    assert b.codes().shape == (7, F_DIM // 4)
    with pytest.raises(NotImplementedError, match="no linear query layer"):
        b.query_layer()
    with pytest.raises(ValueError, match="features must have shape"):
        b.queries(feats[:, :5])


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    s = torch.from_numpy(unit_rms(rng.random((n, F_DIM), dtype=np.float32)))
    x = torch.from_numpy(unit_rms(rng.random((n, F_DIM), dtype=np.float32)))
    return x, s


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
    s = rng.random((256, F_DIM), dtype=np.float32)
    x = rng.random((256, F_DIM), dtype=np.float32)
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
    assert samples.shape == (9, 6, F_DIM)
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
    other = make_backend("b1", **SMALL, dataset="synthetic", scheme="instance")
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
    assert store.sketch_features.shape == (n, 3, F_DIM) and store.queries.shape == (n, 3, F_DIM)
    assert store.gallery.shape == (p, F_DIM)
    flat = np.asarray(store.sketch_features).reshape(-1, F_DIM)
    np.testing.assert_allclose(np.asarray(store.queries).reshape(-1, F_DIM), b.queries(flat), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(store.gallery, axis=1), 1.0, atol=1e-5)
    result = evaluate_store(store)
    assert result["ranks"].shape == (n, 3) and result["gallery_size"] == p
    # the second open reuses the store
    again = open_feature_store(b, dataset, "test", PointSchedule(3), progress=False, root_dir=tmp_path)
    assert again.path == store.path


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
    assert backend.name == "cvae" and dataset.name == "synthetic" and store.queries.shape[1:] == (3, F_DIM)


def test_env_runs_zero_shot_episodes_on_unseen_categories(tmp_path, monkeypatch):
    """``gym.make(..., backend=<cvae on a category split>, split="test")``: partial sketches of categories
    the CVAE never saw retrieve among the photos of those categories only."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the env ids)

    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    backbone = make_backend("b1", **SMALL, dataset="synthetic", scheme="category").save(tmp_path / "b1" / "backend.pt")
    path = train_zero_shot(ZeroShotTrainConfig(backend="cvae", backbone=str(backbone), epochs=1, batch_size=16,
                                               device="cpu", progress=False, out=str(tmp_path / "cvae"),
                                               backend_options={"samples": 5}))
    env = gym.make("SketchEnv/OnTheFly-v0", backend=str(path), split="test", steps=3, progress=False).unwrapped
    data = make_dataset("synthetic", scheme="category")
    unseen = {p.category for p in data.photos("test")}
    assert unseen.isdisjoint({p.category for p in data.photos("train")})
    assert env.gallery_size == len(data.photos("test"))
    obs, info = env.reset(seed=0)
    assert obs.shape == (F_DIM,)
    ranks, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        ranks.append(info["rank"])
        done = terminated or truncated
    assert len(ranks) == 3 and all(1 <= r <= env.gallery_size for r in ranks)


def test_cvae_learns_a_feature_mapping(backbone_path):
    """On features where the photo is a fixed noisy linear map of the sketch, the trained CVAE's query
    is nearer its own photo than the other photos are, on held-out pairs."""
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(F_DIM, F_DIM)).astype(np.float32)
    s = rng.normal(size=(500, F_DIM)).astype(np.float32)
    x = s @ mix + 0.3 * rng.normal(size=(500, F_DIM)).astype(np.float32)
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
    s, x = rng.random((128, F_DIM), dtype=np.float32), rng.random((128, F_DIM), dtype=np.float32)
    b = _cvae(backbone_path, name="caae")
    d0 = [p.detach().clone() for p in b.model.discriminator.parameters()]
    hist = fit_cvae(b, s, x, epochs=2, batch_size=32, progress=False)
    assert "discriminator" in hist[-1] and np.isfinite(hist[-1]["total"])
    assert any(not torch.equal(a, p) for a, p in zip(d0, b.model.discriminator.parameters()))


# ----------------------------------------------------------------------------- baseline heads


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
    assert r.embed(s).shape == (len(s), F_DIM)


def test_category_losses_on_hand_cases():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    same = torch.tensor([[True, False], [False, True]])
    # positives at distance 0, negatives at sqrt(2) > margin 1: no loss
    assert float(contrastive_loss(s, p, same)) == pytest.approx(0.0)
    # swapped labels: positives at sqrt(2) (d^2 = 2), negatives at 0 ((1 - 0)^2 = 1)
    assert float(contrastive_loss(s, p, ~same)) == pytest.approx(3.0)
    # triplet: d(s_i, p+) = 0, d(s_i, p-) = sqrt(2): inactive; swapped: 0.2 + sqrt(2) each
    assert float(category_triplet_loss(s, p, same)) == pytest.approx(0.0)
    assert float(category_triplet_loss(s, p, ~same)) == pytest.approx(0.2 + np.sqrt(2), rel=1e-5)


# ----------------------------------------------------------------------------- metrics


def test_precision_and_both_aps_by_hand():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=bool)
    # row 0: P@1 = 1, P@3 = 2/3 -> sum P@j rel_j = 5/3
    np.testing.assert_allclose(precision_at_k(rel, 4), [0.5, 0.0, 1.0, 0.25])
    np.testing.assert_allclose(ap_at_k(rel, 4), [5 / 6, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(ap_at_k_zs_sbir(rel, 4), [5 / 12, 0.0, 1.0, 0.5 / 4])
    # k smaller than the list
    np.testing.assert_allclose(precision_at_k(rel, 2), [0.5, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(ap_at_k_zs_sbir(rel, 2), [0.5, 0.0, 1.0, 0.25])
    # a gallery shorter than k still divides by k
    np.testing.assert_allclose(precision_at_k(rel[:, :2], 4), [0.25, 0.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(rel, 0)


def test_top_k_relevance_orders_by_distance_and_ties_against_the_query():
    d = np.array([[0.4, 0.1, 0.3, 0.3], [0.9, 0.8, 0.7, 0.6]])
    labels = np.array(["a", "b", "a", "b"])
    # row 0 (label a): order 1(b), then the tie 2(a) / 3(b) -> the irrelevant 3 first, then 2(a), 0(a)
    np.testing.assert_array_equal(top_k_relevance(d[:1], ["a"], labels, 4), [[False, False, True, True]])
    np.testing.assert_array_equal(top_k_relevance(d[1:], ["b"], labels, 2), [[True, False]])
    with pytest.raises(ValueError, match="query labels"):
        top_k_relevance(d, ["a"], labels, 2)


def test_category_retrieval_metrics_by_hand():
    gallery = l2_normalise(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32))
    labels = np.array([0, 1, 1, 0])
    queries = l2_normalise(np.array([[1, 0.05], [0.05, 1]], dtype=np.float32))
    m = category_retrieval_metrics(queries, gallery, [0, 1], labels, k=3, chunk=1)
    # query 0 ranks photos 0(rel), 1, 3(rel): P@3 = 2/3, sum P@j rel_j = 1 + 2/3
    # query 1 ranks photos 2(rel), 3, 1(rel): the same pattern
    assert m["P@3"] == pytest.approx(2 / 3)
    assert m["mAP@3 (ZS-SBIR)"] == pytest.approx((1 + 2 / 3) / 3)
    assert m["mAP@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["queries"] == 2 and m["gallery_size"] == 4


def test_zero_shot_benchmark_with_a_given_backbone(tmp_path, monkeypatch, backbone_path):
    """`benchmarks/zero_shot.py --backbone` end to end on the synthetic category split (tiny settings): the
    given checkpoint is every seed's backbone, its runs go to their own folder, and a backbone trained on
    another split is refused with a message naming it."""
    from benchmarks.zero_shot import main

    monkeypatch.setenv("SKETCH_ENV_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    backbone = make_backend("b1", **SMALL, dataset="synthetic", scheme="category")
    backbone = backbone.save(tmp_path / "b1-s0" / "backend.pt")
    template = str(tmp_path / "b1-s{seed}" / "backend.pt")
    args = ["--dataset", "synthetic", "--seeds", "0", "--rows", "baseline", "cvae", "oracle", "--epochs", "1",
            "--samples", "4", "--steps", "3", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert main([*args, "--backbone", template]) == 0
    table = (tmp_path / "out" / "zero_shot.md").read_text()
    assert f"backbone: `{template}`" in table and "| CVAE |" in table and "Generation ceiling" in table
    folders = [p.name for p in (tmp_path / "runs").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("synthetic-category-backbone-")
    assert load_backend(tmp_path / "runs" / folders[0] / "cvae-s0" / "backend.pt").config["backbone_fingerprint"] == (
        load_backend(backbone).fingerprint())
    with pytest.raises(SystemExit, match="split scheme 'instance'"):
        main([*args, "--backbone", str(backbone_path)])


def test_zero_shot_pixel_backbone_benchmark_end_to_end(tmp_path):
    """`benchmarks/zero_shot_pixels.py` on the synthetic category split: the features, and every row scored."""
    import csv

    from benchmarks.zero_shot_pixels import main, pixel_features

    f = pixel_features(np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3), 4)
    assert f.shape == (2, 16) and np.allclose(f.mean(axis=1), 0, atol=1e-4)
    assert main(["--dataset", "synthetic", "--size", "8", "--seeds", "0", "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    table = (tmp_path / "zero_shot_pixels.md").read_text()
    assert "| CVAE |" in table and "| Coarse-grained triplet |" in table and "F = 64" in table
    with open(tmp_path / "zero_shot_pixels.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 7 and all(0 <= float(r["P@200"]) <= 1 for r in rows.values())
