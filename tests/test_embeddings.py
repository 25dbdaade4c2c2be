"""Backends and their training, on the synthetic dataset (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import BackendMismatchError, backend_names, load_backend, make_backend
from embeddings.losses import HOLEFDistance, batch_all_triplet_loss
from embeddings.nets import SpatialAttention
from embeddings.train import TrainConfig, train_backend, validation_mask
from embeddings.triplet import preprocess_photos
from sketch_env.datasets import make_dataset
from sketch_env.render import RenderConfig, render_progressive_batch
from sketch_env.schedule import PointSchedule

SMALL = {"channels": [8, 16, 16, 16], "embed_dim": 16,
         "render": {"size": 32, "line_width": 1, "polarity": "white_on_black", "antialias": False,
                    "thicken": "line", "margin": 0},
         "photo_size": 32}


def _tiny_train(tmp_path, backend="b1", epochs=2, **kw) -> TrainConfig:
    return TrainConfig(backend=backend, dataset="synthetic", epochs=epochs, batch_size=8, steps=5,
                       val_fraction=0.3, device="cpu", progress=False, out=str(tmp_path / backend),
                       backend_options={**SMALL, **kw.pop("backend_options", {})}, **kw)


@pytest.fixture(scope="module")
def data():
    ds = make_dataset("synthetic")
    sketches = [r.sketch for r in ds.sketches("test")]
    rasters = render_progressive_batch(sketches, PointSchedule(5), RenderConfig(**SMALL["render"]))
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
    b = make_backend("b1", **SMALL)
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
    b = make_backend("b1", **SMALL, dataset="synthetic", scheme="instance")
    path = b.save(tmp_path / "b.pt")
    again = load_backend(path, expect={"dataset": "synthetic", "render.size": 32})
    np.testing.assert_array_equal(b.photo_embeddings(photos), again.photo_embeddings(photos))
    np.testing.assert_array_equal(b.sketch_features(rasters), again.sketch_features(rasters))
    assert b.fingerprint() == again.fingerprint()


def test_mismatching_checkpoint_is_refused(tmp_path):
    b = make_backend("b1", **SMALL, dataset="synthetic", scheme="instance")
    path = b.save(tmp_path / "b.pt")
    with pytest.raises(BackendMismatchError, match="dataset: checkpoint has 'synthetic', asked for 'kanji'"):
        load_backend(path, expect={"dataset": "kanji"})
    with pytest.raises(BackendMismatchError, match="render.size"):
        load_backend(path, expect={"render": {"size": 64}})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackendMismatchError, match="not a readable backend checkpoint"):
        load_backend(tmp_path / "junk.pt")


def test_ts_has_no_attention_and_b1_has():
    assert make_backend("ts", **SMALL).sketch_branches[0].backbone.attention is None
    assert isinstance(make_backend("b1", **SMALL).sketch_branches[0].backbone.attention, SpatialAttention)
    assert make_backend("b2", **SMALL).config["partial"] is True


def test_per_step_backend_routes_steps_to_models(data):
    rasters, _ = data
    b = make_backend("b3", **SMALL, steps=5, models=5)
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
    b2 = make_backend("b3", **SMALL, steps=20, models=4)
    assert b2.model_of_step(np.arange(20)).tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    with pytest.raises(ValueError, match="pass step"):
        b.sketch_features(rasters)


def test_batch_all_triplet_loss_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # D = [[0, 0.894], [1.414, 0.632]]: anchor 0 is satisfied by 0.894 > 0 + 0.2;
    # anchor 1: 0.2 + 0.632 - 1.414 < 0 -> no violation
    loss, active = batch_all_triplet_loss(s, p, margin=0.2)
    assert float(loss) == 0.0 and active == 0.0
    loss, active = batch_all_triplet_loss(s, p, margin=1.0)
    # anchor 0: 1 + 0 - 0.8944 = 0.1056; anchor 1: 1 + 0.6325 - 1.4142 = 0.2183
    assert active == 1.0
    assert abs(float(loss) - (0.10557 + 0.21828) / 2) < 1e-4


def test_holef_starts_as_squared_euclidean():
    h = HOLEFDistance(3)
    s, p = torch.randn(4, 3), torch.randn(5, 3)
    np.testing.assert_allclose(h(s, p).detach().numpy(), (torch.cdist(s, p) ** 2).numpy(), rtol=1e-5)
    assert float(h.penalty().detach()) == 0.0


def test_photo_preprocess_modes():
    img = np.full((1, 8, 8, 3), 255, np.uint8)
    img[0, 2:6, 2:6] = 0
    assert preprocess_photos(img, "invert")[0, 3, 3] == 255 and preprocess_photos(img, "invert")[0, 0, 0] == 0
    assert preprocess_photos(img, "gray")[0, 0, 0] == 255
    edges = preprocess_photos(np.repeat(np.repeat(img, 4, 1), 4, 2), "canny")
    assert edges.max() == 255 and edges[0, 0, 0] == 0
    with pytest.raises(ValueError, match="photo_preprocess"):
        preprocess_photos(img, "sepia")


def test_validation_split_is_deterministic_and_disjoint():
    names = [f"x{i}" for i in range(1000)]
    m = validation_mask(names, 0.1)
    assert 50 < m.sum() < 150 and (m == validation_mask(names, 0.1)).all()


def test_training_learns_and_resumes_after_a_kill(tmp_path):
    cfg = _tiny_train(tmp_path, epochs=3)
    # "killed" after one epoch: last.pt is on disk, the run is not finished
    train_backend(cfg, stop_after_epochs=1)
    assert (tmp_path / "b1" / "last.pt").exists()
    ckpt = torch.load(tmp_path / "b1" / "last.pt", weights_only=True)
    import json

    assert json.loads(ckpt["state"])["epoch"] == 1
    # started again, it resumes at epoch 2 and finishes
    path = train_backend(cfg)
    state = json.loads(torch.load(tmp_path / "b1" / "last.pt", weights_only=True)["state"])
    assert [row["epoch"] for row in state["history"]] == [1, 2, 3]
    b = load_backend(path, expect={"dataset": "synthetic", "scheme": "instance", "name": "b1"})
    assert b.config["train_split"]["val_fraction"] == 0.3
    # resuming is exact: an uninterrupted run with the same seed ends with the same weights
    straight = train_backend(_tiny_train(tmp_path / "straight", epochs=3))
    w1 = torch.load(tmp_path / "b1" / "last.pt", weights_only=True)["backend"]
    w2 = torch.load(tmp_path / "straight" / "b1" / "last.pt", weights_only=True)["backend"]
    for key, value in w1["photo_branch"].items():
        torch.testing.assert_close(value, w2["photo_branch"][key])
    assert straight.exists()


def test_resume_refuses_a_different_configuration(tmp_path):
    train_backend(_tiny_train(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="different configuration"):
        train_backend(_tiny_train(tmp_path, epochs=1, lr=0.5))


def test_b3_trains_from_a_b1_checkpoint_with_frozen_photo_branch(tmp_path):
    b1 = train_backend(_tiny_train(tmp_path, epochs=1))
    cfg = _tiny_train(tmp_path, backend="b3", epochs=1,
                      backend_options={"models": 5, "init_from": str(b1)})
    path = train_backend(cfg)
    b3 = load_backend(path)
    source = load_backend(b1)
    for key, value in source.photo_branch.state_dict().items():
        torch.testing.assert_close(value, b3.photo_branch.state_dict()[key])
    with pytest.raises(ValueError, match="init_from"):
        train_backend(_tiny_train(tmp_path / "x", backend="b3", epochs=1, backend_options={"models": 5}))


def test_precision_option(tmp_path):
    from embeddings.train import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16", cpu)
    # bf16 autocast trains (float32 weights and loss) and gives a float32 checkpoint that embeds
    path = train_backend(_tiny_train(tmp_path, epochs=1, precision="bf16"))
    b = load_backend(path)
    assert all(p.dtype == torch.float32 for p in b.photo_branch.parameters())
    history = torch.load(tmp_path / "b1" / "last.pt", weights_only=True)
    import json

    assert np.isfinite(json.loads(history["state"])["history"][0]["loss"])


def test_step_power_weights_later_steps(tmp_path):
    from embeddings.train import TripletSampler

    p = TripletSampler.step_probabilities(np.arange(4), 1.0)
    np.testing.assert_allclose(p, [0.1, 0.2, 0.3, 0.4])  # P(t) = t / (1 + 2 + 3 + 4) for steps t = 1..4
    np.testing.assert_allclose(TripletSampler.step_probabilities(np.arange(4), 0.0), [0.25] * 4)
    # within one B3 model's steps, the weights follow the step index
    np.testing.assert_allclose(TripletSampler.step_probabilities(np.array([2, 3]), 1.0), [3 / 7, 4 / 7])
    with pytest.raises(ValueError, match="step_power"):
        train_backend(_tiny_train(tmp_path / "bad", backend="b2", epochs=1, step_power=-1.0))
    # a B2 run trains with it, and an older run folder (no step_power in its config) still resumes
    path = train_backend(_tiny_train(tmp_path, backend="b2", epochs=1, step_power=1.0))
    assert load_backend(path).config["partial"]
    last = tmp_path / "b2" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    import json

    run_config = json.loads(ckpt["run_config"])
    run_config["train"].pop("step_power")
    ckpt["run_config"] = json.dumps(run_config)
    torch.save(ckpt, last)
    with pytest.raises(ValueError, match="different configuration"):  # its default is 0, not 1
        train_backend(_tiny_train(tmp_path, backend="b2", epochs=1, step_power=1.0))
    assert train_backend(_tiny_train(tmp_path, backend="b2", epochs=1)) == path  # p = 0: the old run resumes
