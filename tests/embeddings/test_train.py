"""Training the triplet baselines (embeddings.train): validation split, learning, resuming, B3, precision,
step weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.base import load_backend
from embeddings.train import TrainConfig, train_backend, validation_mask
from tests.helpers import TINY_TRIPLET


def _tiny_train(tmp_path, backend="b1", epochs=2, **kw) -> TrainConfig:
    return TrainConfig(backend=backend, dataset="synthetic", epochs=epochs, batch_size=8, steps=5,
                       val_fraction=0.3, device="cpu", progress=False, out=str(tmp_path / backend),
                       backend_options={**TINY_TRIPLET, **kw.pop("backend_options", {})}, **kw)


def test_validation_split_is_deterministic_and_disjoint():
    names = [f"x{i}" for i in range(1000)]
    m = validation_mask(names, 0.1)
    assert 50 < m.sum() < 150 and (m == validation_mask(names, 0.1)).all()


def test_training_learns_and_resumes_after_a_kill(tmp_path):
    cfg = _tiny_train(tmp_path, epochs=3)
    # "killed" after one epoch: last.pt is on disk, the run is not finished
    train_backend(cfg, stop_after=1)
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


def test_channels_last_training_resumes_exactly_and_trains_the_same_function(tmp_path):
    import json

    cfg = _tiny_train(tmp_path, epochs=3, channels_last=True)
    train_backend(cfg, stop_after=1)
    resumed = load_backend(train_backend(cfg))
    straight = load_backend(train_backend(_tiny_train(tmp_path / "straight", epochs=3, channels_last=True)))
    for key, value in straight.photo_branch.state_dict().items():
        torch.testing.assert_close(resumed.photo_branch.state_dict()[key], value, rtol=0, atol=0)
    # the other layout runs other kernels: after one step, the same function up to float rounding (compared
    # by output: Adam's first step moves a weight whose gradient is rounding noise, such as the attention
    # score's bias under the softmax, by a full learning rate either way)
    one = {"epochs": None, "gradient_steps": 1, "eval_every": 1}
    last = load_backend(train_backend(_tiny_train(tmp_path / "one-cl", channels_last=True, **one)))
    contiguous = load_backend(train_backend(_tiny_train(tmp_path / "one", channels_last=False, **one)))
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(last.photo_branch.eval()(x), contiguous.photo_branch.eval()(x), rtol=0, atol=1e-5)
        assert not torch.allclose(last.photo_branch(x), straight.photo_branch.eval()(x), atol=1e-3)  # it trained
    ckpt = torch.load(tmp_path / "b1" / "last.pt", weights_only=True)  # saved as trained, strides and all
    trained = ckpt["backend"]["photo_branch"]["backbone.body.1.0.weight"]
    assert trained.is_contiguous(memory_format=torch.channels_last) and not trained.is_contiguous()
    assert json.loads(ckpt["run_config"])["train"]["channels_last"] is True
    conv = straight.photo_branch.backbone.body[1][0].weight
    assert conv.is_contiguous()  # a loaded checkpoint is in the contiguous layout whatever it was trained in


def test_a_run_stored_before_the_layout_option_resumes_in_the_default_layout(tmp_path):
    import json

    cfg = _tiny_train(tmp_path, epochs=2, channels_last=False)
    train_backend(cfg, stop_after=1)
    last = tmp_path / "b1" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    stored = json.loads(ckpt["run_config"])
    del stored["train"]["channels_last"]  # as such runs were written (contiguous)
    torch.save(ckpt | {"run_config": json.dumps(stored)}, last)
    train_backend(_tiny_train(tmp_path, epochs=2))  # the same computation in the other layout: it resumes
    assert json.loads(torch.load(last, weights_only=True)["state"])["epoch"] == 2
    with pytest.raises(ValueError, match="different configuration"):  # what is trained still counts
        train_backend(_tiny_train(tmp_path, epochs=2, lr=0.5))


def test_resume_refuses_a_different_configuration(tmp_path):
    train_backend(_tiny_train(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="different configuration"):
        train_backend(_tiny_train(tmp_path, epochs=1, lr=0.5))


def test_a_run_stored_with_its_kinds_weight_average_resumes_under_the_by_kind_default(tmp_path):
    # runs written when ema_horizon was a number by default: the synthetic figures are renderings (0 by kind)
    train_backend(_tiny_train(tmp_path, epochs=1, ema_horizon=0.0))
    train_backend(_tiny_train(tmp_path, epochs=1))  # ema_horizon None: resolves to the same 0.0
    with pytest.raises(ValueError, match="ema_horizon"):
        train_backend(_tiny_train(tmp_path, epochs=1, ema_horizon=0.2))


def test_a_run_stored_before_the_weight_average_existed_counts_as_trained_without_it(tmp_path):
    import json

    cfg = _tiny_train(tmp_path, epochs=2)
    train_backend(cfg, stop_after=1)
    last = tmp_path / "b1" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    stored = json.loads(ckpt["run_config"])
    del stored["train"]["ema_horizon"]  # as such runs were written
    torch.save(ckpt | {"run_config": json.dumps(stored)}, last)
    train_backend(cfg)  # renderings train without the average: the same run, so it resumes
    assert json.loads(torch.load(last, weights_only=True)["state"])["epoch"] == 2
    torch.save(ckpt | {"run_config": json.dumps(stored)}, last)
    with pytest.raises(ValueError, match="ema_horizon"):  # with it, another run
        train_backend(_tiny_train(tmp_path, epochs=2, ema_horizon=0.2))


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


def test_each_b3_model_keeps_the_average_of_its_own_training(tmp_path):
    # two models, one evaluation each: the first call stops once model 0 is trained and saved
    b1 = train_backend(_tiny_train(tmp_path, epochs=1))
    cfg = _tiny_train(tmp_path, backend="b3", epochs=None, gradient_steps=20, eval_every=10, ema_horizon=0.5,
                      backend_options={"models": 2, "init_from": str(b1)})  # an average over 5 of each model's 10 steps
    after_first = load_backend(train_backend(cfg, stop_after=1)).sketch_branches[0].state_dict()
    final = load_backend(train_backend(cfg))  # resumed: model 1 trains
    for key, value in after_first.items():  # model 0's averaged weights are its own, not averaged on with model 1's
        torch.testing.assert_close(final.sketch_branches[0].state_dict()[key], value, rtol=0, atol=0)
    assert not all(torch.equal(final.sketch_branches[1].state_dict()[k], v) for k, v in after_first.items())


def test_a_b3_run_stored_with_one_average_over_all_its_models_resumes(tmp_path, caplog):
    b1 = train_backend(_tiny_train(tmp_path, epochs=1))
    cfg = _tiny_train(tmp_path, backend="b3", epochs=None, gradient_steps=20, eval_every=10, ema_horizon=0.5,
                      backend_options={"models": 2, "init_from": str(b1)})
    train_backend(cfg, stop_after=1)
    last = tmp_path / "b3" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    b3 = load_backend(tmp_path / "b3" / "backend.pt")  # its parameters: each sketch branch's, then the photo branch's
    live = [ckpt["backend"]["sketch_branches"][f"{k}.{n}"] for k, branch in enumerate(b3.sketch_branches)
            for n, _ in branch.named_parameters()]
    live += [ckpt["backend"]["photo_branch"][n] for n, _ in b3.photo_branch.named_parameters()]
    own = len(ckpt["average"])  # model 0's, which come first
    ckpt["average"] = ckpt["average"] + live[own:]  # one average over every parameter, as such runs were written
    torch.save(ckpt, last)
    with caplog.at_level("WARNING"):
        final = load_backend(train_backend(cfg))
    assert "spanned all its models" in caplog.text and len(final.sketch_branches) == 2
    ckpt["average"] = ckpt["average"][:-1]  # neither layout
    torch.save(ckpt, last)
    with pytest.raises(ValueError, match="weight average has"):
        train_backend(cfg)


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


def test_a_run_cut_short_by_its_cap_saves_what_it_reached_says_so_and_finishes_later(tmp_path, caplog):
    import json

    cfg = _tiny_train(tmp_path, epochs=None, gradient_steps=60, eval_every=30, minutes=1e-6)
    path = train_backend(cfg)  # the cap ends it at once, after one step
    record = json.loads((tmp_path / "b1" / "history.json").read_text())
    assert record["cut_short"] is True and record["history"][-1]["step"] < 60
    assert path.is_file() and "cut this training short" in caplog.text
    caplog.clear()
    cfg = _tiny_train(tmp_path, epochs=None, gradient_steps=60, eval_every=30)
    train_backend(cfg)  # the same command without the cap finishes it
    record = json.loads((tmp_path / "b1" / "history.json").read_text())
    assert record["cut_short"] is False and record["history"][-1]["step"] == 60
    assert "cut this training short" not in caplog.text


def test_training_writes_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_backend(_tiny_train(tmp_path, epochs=2))
    events = EventAccumulator(str(tmp_path / "b1" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/m@B", "val/A@1"} <= tags
    assert len(events.Scalars("val/m@B")) == 2  # one per evaluation (an epoch each)


@pytest.mark.parametrize("name", ["shoev2", "sketchy"])
def test_real_photo_datasets_train_with_the_photo_recipe_without_flags(name, tmp_path):
    """QMUL-Shoe-V2 and Sketchy declare real photos, so a run with no recipe option trains with the real-photo
    choices of PHOTO_KINDS and records them."""
    from embeddings.train import PHOTO_KINDS
    from tests.data_formats import write_tiny_qmul
    from tests.sketch_env.datasets.test_sketchy import write_sketchy

    root = write_sketchy(tmp_path / "sketchy") if name == "sketchy" else write_tiny_qmul(tmp_path / "shoe",
                                                                                         variant="ShoeV2")
    cfg = TrainConfig(backend="b1", dataset=name, root=str(root), gradient_steps=2, steps=3, device="cpu",
                      progress=False, out=str(tmp_path / "b1"),
                      backend_options={k: v for k, v in TINY_TRIPLET.items() if k != "photo_size"})
    ckpt = torch.load(train_backend(cfg), weights_only=True)
    training, photo = ckpt["extra"]["training"], PHOTO_KINDS["photo"]
    assert training["photo_kind"] == "photo"
    assert {k: training[k] for k in photo if k != "batch_size"} == {k: v for k, v in photo.items() if k != "batch_size"}
    assert training["batch_size"] <= photo["batch_size"]  # a batch holds at most the training photos
    assert (ckpt["config"]["photo_preprocess"], ckpt["config"]["flip_average"]) == ("edges", False)


def test_validation_scores_the_saved_backend_as_its_photos_embed_from_rgb(tmp_path):
    """Validation embeds the photos preprocessed once at the start; the best checkpoint, embedding the
    validation photos from RGB, scores the recorded validation m@B."""
    import json

    from embeddings.train import _validation_rasters
    from sketch_env.datasets import make_dataset
    from sketch_env.metrics import m_at_b, ranks_from_embeddings

    cfg = _tiny_train(tmp_path, epochs=3)
    b = load_backend(train_backend(cfg), expect={"name": "b1"})
    best = max(json.loads((tmp_path / "b1" / "history.json").read_text())["history"], key=lambda r: r["val_m@B"])
    dataset = make_dataset("synthetic")
    photos, sketch_photo = dataset.photos("train"), dataset.photo_index("train")
    val_photo_ids = np.flatnonzero(validation_mask([p.instance for p in photos], cfg.val_fraction,
                                                   cfg.val_min_photos))
    val_sketch_ids = np.flatnonzero(np.isin(sketch_photo, val_photo_ids))
    assert 0 < len(val_sketch_ids) <= cfg.val_sketches  # every validation sketch is scored
    rasters = _validation_rasters(b, dataset.sketches("train"), val_sketch_ids, cfg.steps)
    step = np.tile(np.arange(cfg.steps), len(val_sketch_ids))
    gallery = b.photo_embeddings(dataset.load_photos([photos[i] for i in val_photo_ids], b.photo_size))
    true = np.repeat(np.searchsorted(val_photo_ids, sketch_photo[val_sketch_ids]), cfg.steps)
    ranks = ranks_from_embeddings(b.queries(b.sketch_features(rasters, step=step), step=step), gallery, true)
    assert 100 * m_at_b(ranks.reshape(-1, cfg.steps)) == pytest.approx(best["val_m@B"], abs=1e-4)
