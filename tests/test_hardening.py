"""Files from someone else and careless arguments (SECURITY.md): nothing runs code or starts work, every
reader is bounded, nothing silently wrong, no unbounded work, locks, no leftovers, one error type. One test
(or a few) per case; each failed before the change it guards."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import pickle
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.cli import main as cli
from embeddings.base import BackendMismatchError, load_backend, make_backend
from sketch_env.errors import ArgumentError, DataFormatError, SketchEnvError
from sketch_env.runs import RunLockedError, run_lock
from sketch_env.safe_pickle import safe_loads
from tests.data_formats import stroke3, write_qmul
from tests.helpers import SYNTHETIC, TINY_TRIPLET, make_env, pendulum_vec_env

pytestmark = pytest.mark.usefixtures("env_cache")


def _one_line_exit_2(capsys, argv) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sketch-env: error:") and "Traceback" not in err
    return err


def _peak(fn) -> int:
    """Peak traced allocation (Python and NumPy) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
    except SketchEnvError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- 1. no code, no work from a loaded file ---------------------------------------------------------------


def _saved_agent(tmp_path, env_id=SYNTHETIC, env_kwargs=None) -> Path:
    from agents.algorithms import algorithm_spec
    from agents.io import save_agent
    from agents.policy import LinearGaussianPolicy

    cls, fixed, policy_kwargs = algorithm_spec("ppo-a-clip")
    model = cls(LinearGaussianPolicy, pendulum_vec_env(), policy_kwargs=policy_kwargs, n_steps=8, batch_size=8,
                seed=0, **fixed)
    return save_agent(model, tmp_path / "agent", "ppo-a-clip", env_id, env_kwargs or {}, {})


def test_an_agent_zip_cannot_make_evaluate_import_a_module(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "somemodule.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for env_id in ("somemodule:SketchEnv/OnTheFly-Synthetic-v0", "this:SketchEnv/OnTheFly-Synthetic-v0"):
        path = _saved_agent(tmp_path, env_id=env_id)
        err = _one_line_exit_2(capsys, ["evaluate", "--model", str(path)])
        assert "env id" in err and str(path) in err
    assert not marker.exists()


def test_an_agent_zip_cannot_start_a_training(tmp_path, capsys):
    path = _saved_agent(tmp_path, env_kwargs={"train_if_missing": True, "train_options": {"epochs": 10**9}})
    err = _one_line_exit_2(capsys, ["evaluate", "--model", str(path)])
    assert "train_if_missing" in err and "would start work" in err


def test_agent_env_arguments_must_be_the_envs(tmp_path):
    from agents.io import read_meta

    with pytest.raises(DataFormatError, match="unknown env argument"):
        read_meta(_saved_agent(tmp_path, env_kwargs={"rewrd": "paper"}))


# -- 2. the restricted unpickler is bounded ---------------------------------------------------------------


def test_deep_nesting_is_refused_not_a_crash():
    deep = b"\x80\x04}" + b")" + b"\x85" * 200_000 + b"K\x01s."  # a tuple 200,000 deep as a dict key
    with pytest.raises(DataFormatError, match="nested more than"):
        safe_loads(deep, "deep.pkl")


def test_allocation_bombs_are_refused_before_allocating():
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray

    class Raw:
        def __init__(self, *value):
            self.value = value

        def __reduce__(self):
            return self.value

    scalar = pickle.dumps(Raw(multiarray.scalar, (np.dtype("S1000000000"),)), protocol=2)
    objects = pickle.dumps(Raw(multiarray._reconstruct, (np.ndarray, (120_000_000,), "O")), protocol=2)
    assert len(scalar) < 200 and len(objects) < 200  # tiny files
    for blob in (scalar, objects):
        with pytest.raises(DataFormatError):
            safe_loads(blob, "bomb.pkl")
        assert _peak(lambda blob=blob: safe_loads(blob, "bomb.pkl")) < 16 << 20  # was about 1 GB


def test_empty_array_in_protocol_2_loads_and_truncation_is_named():
    out = safe_loads(pickle.dumps({"/train/a_1": np.zeros((0, 3))}, protocol=2), "empty.pkl")
    assert out["/train/a_1"].shape == (0, 3)
    good = pickle.dumps({"/train/a_1": np.ones((5, 3))}, protocol=2)
    messages = set()
    for cut in range(1, len(good)):
        with pytest.raises(DataFormatError) as err:
            safe_loads(good[:cut], "t.pkl")
        messages.add("refusing global" in str(err.value))
    assert messages == {False}  # a cut file is never reported as an unsafe global


# -- 3. size bombs are refused before allocation -----------------------------------------------------------


def _sketchy(tmp_path, svg: str):
    from sketch_env.datasets.sketchy import read_sketchy_svg

    (tmp_path / "s.svg").write_text(svg)
    return read_sketchy_svg(tmp_path / "s.svg")


def test_svg_bombs(tmp_path):
    with pytest.raises(DataFormatError, match="width"):
        _sketchy(tmp_path, '<svg width="2e9" height="2e9"><path d="M0 0 L2e9 2e9"/></svg>')
    corners = "".join('<path d="M0 0 L64000 48000"/>' for _ in range(3000))  # 57 KB, 5.4M points
    with pytest.raises(DataFormatError, match="points"):
        _sketchy(tmp_path, f'<svg width="64000" height="48000">{corners}</svg>')
    assert _peak(lambda: _sketchy(tmp_path, f'<svg width="64000" height="48000">{corners}</svg>')) < 64 << 20


def test_npz_member_bomb_is_refused_before_inflating(tmp_path):
    from sketch_env.datasets.quickdraw import QuickDrawDataset

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<i2", "fortran_order": False,
                                                      "shape": (750_000_000,)})
        with z.open("train.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(90):
                f.write(bytes(1 << 24))
    assert (tmp_path / "bomb.npz").stat().st_size < 4 << 20
    ds = QuickDrawDataset(tmp_path)
    with pytest.raises(DataFormatError, match="uncompressed size"):
        ds.sketches("train")
    assert _peak(lambda: QuickDrawDataset(tmp_path).sketches("train")) < 16 << 20


def _announce_compressed_size(path: Path, size: int) -> None:
    """Rewrite the zip directory of ``path`` so that every member announces ``size`` compressed bytes."""
    blob = bytearray(path.read_bytes())
    at = blob.find(b"PK\x01\x02")
    while at >= 0:
        blob[at + 20:at + 24] = size.to_bytes(4, "little")
        at = blob.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(blob))


def test_a_zip_directory_announcing_a_huge_compressed_member_is_refused_before_reading(tmp_path):
    # a 1 KB npz whose directory says 1.8 GB: zipfile sizes its read buffer by that and allocated 1 GB
    from agents.io import read_meta
    from sketch_env.cache import load_npz_checked, save_npz_atomic
    from sketch_env.datasets.quickdraw import QuickDrawDataset

    (tmp_path / "qd").mkdir()
    sketch = stroke3([(0, 0, 0), (5, 5, 1)])
    np.savez(tmp_path / "qd" / "cat.npz", train=np.array([sketch, sketch], dtype=object),
             test=np.array([sketch, sketch], dtype=object))
    _announce_compressed_size(tmp_path / "qd" / "cat.npz", 1_795_162_513)
    with pytest.raises(DataFormatError, match="compressed bytes"):
        QuickDrawDataset(tmp_path / "qd").sketches("train")
    assert _peak(lambda: QuickDrawDataset(tmp_path / "qd").sketches("train")) < 16 << 20

    save_npz_atomic(tmp_path / "cache.npz", "key", x=np.zeros(4))
    _announce_compressed_size(tmp_path / "cache.npz", 1_795_162_513)
    with pytest.warns(UserWarning, match="compressed bytes"):
        assert load_npz_checked(tmp_path / "cache.npz", "key") is None  # refused, so the cache is rebuilt

    with zipfile.ZipFile(tmp_path / "agent.zip", "w") as z:
        z.writestr("data", b"{}")
    _announce_compressed_size(tmp_path / "agent.zip", 1_795_162_513)
    with pytest.raises(DataFormatError, match="compressed bytes"):
        read_meta(tmp_path / "agent.zip")


def test_a_checkpoint_not_in_torchs_zip_format_is_refused_before_torch_reads_it(tmp_path):
    # 14 bytes: a pickle string opcode announcing 617 MB; torch's legacy-format reader allocated 655 MiB
    (tmp_path / "b.pt").write_bytes(bytes.fromhex("580518c7245d10d297925159e3b0"))
    with pytest.raises(BackendMismatchError, match="zip-format"):
        load_backend(tmp_path / "b.pt")
    assert _peak(lambda: pytest.raises(BackendMismatchError, load_backend, tmp_path / "b.pt")) < 16 << 20


def test_photo_dimensions_are_checked_before_decoding(tmp_path):
    import cv2

    from sketch_env.datasets.base import read_photo_file

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((16000, 16000), np.uint8))
    assert (tmp_path / "big.png").stat().st_size < 1 << 20
    with pytest.raises(DataFormatError, match="big.png"):
        read_photo_file(str(tmp_path / "big.png"), 64)
    with pytest.raises(DataFormatError, match="pixels"):
        read_photo_file(str(tmp_path / "big.png"), 64, max_pixels=1000)


def test_agent_zip_member_bomb(tmp_path):
    from agents.io import read_meta

    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", b" " * (300 << 20))
    assert (tmp_path / "bomb.zip").stat().st_size < 2 << 20
    with pytest.raises(DataFormatError, match="uncompressed size"):
        read_meta(tmp_path / "bomb.zip")


# -- 4. no silent wrong result ----------------------------------------------------------------------------


def test_nan_in_a_feature_store_is_not_used(synthetic_checkpoint, tmp_path):
    from embeddings.store import open_backend_store

    _, _, store = open_backend_store(synthetic_checkpoint, "test", steps=10, device="cpu", progress=False)
    path = store.path
    queries = np.load(path / "queries.npy", mmap_mode="r+")
    queries[0, 0, 0] = np.nan
    queries.flush()
    del queries, store
    with pytest.warns(UserWarning, match="NaN"):
        _, _, again = open_backend_store(synthetic_checkpoint, "test", steps=10, device="cpu", progress=False)
    assert np.isfinite(np.asarray(again.queries)).all()


def test_a_photo_replaced_in_place_changes_the_store_key(tmp_path):
    from embeddings.store import feature_store_key
    from sketch_env.datasets.qmul import chairv2
    from sketch_env.schedule import PointSchedule

    root = write_qmul(tmp_path / "q")
    backend = make_backend("b1", **TINY_TRIPLET, dataset="chairv2", scheme="published")
    key = feature_store_key(backend, chairv2(root), "test", PointSchedule(3))
    photo = root / "photo" / "xyz_9.png"
    time.sleep(0.01)
    import cv2

    cv2.imwrite(str(photo), np.full((40, 30, 3), 7, np.uint8))  # same name, other content
    assert feature_store_key(backend, chairv2(root), "test", PointSchedule(3)) != key


@pytest.mark.parametrize("kwargs", [{"reward_scale": 1e308}, {"steps": True}, {"topk": True}, {"gamma1": True},
                                    {"val_fraction": -1}, {"steps": 10**7}, {"gamma2": float("nan")}])
def test_bad_env_arguments_are_refused(ckpt, kwargs):
    with pytest.raises(ArgumentError):
        make_env(ckpt, **kwargs)


def test_bad_actions_and_reset_options_are_refused(ckpt):
    env = make_env(ckpt)
    env.reset(seed=0)
    d = env.action_space.shape[0]
    for action in (np.ones(d) * (1 + 1j), np.array(["x"] * d), np.full(d, np.nan), np.ones(d + 1)):
        with pytest.raises(ArgumentError):
            env.step(action)
    with pytest.raises(ArgumentError, match="sketch_index"):
        env.reset(options={"sketch_index": True})


# -- 5. no unbounded work from an argument ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["train", "--timesteps", "-5"],
    ["train", "--minutes", "-1"],
    ["embed", "train", "--epochs", "-1"],
    ["embed", "train", "--batch-size", "0"],
    ["train", "--hp", "nosuch=1"],
    ["train", "--hp", "n_steps=abc"],
    ["train", "--hp", "learning_rate=!!python/object/apply:os.system [x]"],
    ["train", "--env", "Bogus/Env-v0"],
    ["train", "--env-kwarg", "rewrd=paper"],
])
def test_bad_flags_fail_at_once_on_one_line(capsys, argv):
    t0 = time.perf_counter()
    _one_line_exit_2(capsys, argv)
    assert time.perf_counter() - t0 < 30  # refused before any work (a training would take minutes)


def test_main_job_checks_its_rl_method_before_the_backend_stage(tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["run", "--dataset", "synthetic", "--rl-algo", "bogus", "--out",
                                    str(tmp_path / "runs")])
    assert "bogus" in err and not (tmp_path / "runs").exists()


# -- 6. locks -----------------------------------------------------------------------------------------------


def _hold(folder: str, seconds: float) -> None:
    with run_lock(folder):
        time.sleep(seconds)


def _start_holder(folder, seconds: float):
    p = mp.get_context("spawn").Process(target=_hold, args=(str(folder), seconds))
    p.start()
    deadline = time.time() + 15
    while not (folder / ".lock.owner").exists() and time.time() < deadline:
        time.sleep(0.1)
    return p


def test_a_second_writer_of_a_run_folder_is_refused_with_the_holder_when_it_will_not_wait(tmp_path):
    p = _start_holder(tmp_path / "run", 20)
    try:
        with pytest.raises(RunLockedError, match=f"process {p.pid}"):
            with run_lock(tmp_path / "run", wait=False):
                pass
    finally:
        p.terminate()
        p.join()
    with run_lock(tmp_path / "run", wait=False):  # released when the holder ends
        pass


def test_a_second_writer_of_a_run_folder_waits_for_the_holder(tmp_path, caplog):
    p = _start_holder(tmp_path / "run", 4)
    try:
        with run_lock(tmp_path / "run"):
            assert not p.is_alive() or p.exitcode is None  # acquired only once the holder let go
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        p.terminate()
        p.join()
    assert f"waiting for process {p.pid}" in caplog.text


def _train_synthetic(out: str, cache: str, data: str) -> None:
    import os

    os.environ.update(SKETCH_ENV_CACHE=cache, SKETCH_ENV_DATA=data)
    from embeddings.train import TrainConfig, train_backend

    train_backend(TrainConfig(backend="b1", dataset="synthetic", gradient_steps=30, eval_every=10, steps=5,
                              progress=False, out=out, backend_options={"channels": [4, 8], "embed_dim": 8}))


def test_two_concurrent_starts_of_one_training_train_it_once(tmp_path):
    import json
    import os

    ctx = mp.get_context("spawn")
    args = (str(tmp_path / "run"), os.environ["SKETCH_ENV_CACHE"], os.environ["SKETCH_ENV_DATA"])
    procs = [ctx.Process(target=_train_synthetic, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    record = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in record["history"]] == [10, 20, 30]  # one run's evaluations, not two


def test_concurrent_first_builds_of_a_store_build_it_once(synthetic_checkpoint, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from embeddings.store import open_feature_store
    from sketch_env.datasets import make_dataset
    from sketch_env.schedule import PointSchedule

    backend = load_backend(synthetic_checkpoint)
    calls = []
    real = backend.sketch_features

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    backend.sketch_features = counted
    ds = make_dataset("synthetic")
    with ThreadPoolExecutor(2) as pool:
        stores = list(pool.map(lambda _: open_feature_store(backend, ds, "test", PointSchedule(4), progress=False,
                                                            root_dir=tmp_path), range(2)))
    assert stores[0].path == stores[1].path
    n_batches = len(calls)
    open_feature_store(backend, ds, "test", PointSchedule(4), progress=False, root_dir=tmp_path)
    assert len(calls) == n_batches  # reused
    # built once: the rasters of one build, not two
    assert n_batches <= -(-len(ds.sketches("test")) // max(1, 256 // 4))


# -- 7. faults leave nothing behind -------------------------------------------------------------------------


def test_a_killed_store_build_leaves_nothing_forever(synthetic_checkpoint, tmp_path):
    from embeddings.store import feature_store_key, open_feature_store
    from sketch_env.datasets import make_dataset
    from sketch_env.schedule import PointSchedule

    backend, ds = load_backend(synthetic_checkpoint), make_dataset("synthetic")
    key = feature_store_key(backend, ds, "test", PointSchedule(4))
    (tmp_path / f".{key}.build.abc123").mkdir()  # what a SIGKILL mid-build leaves
    (tmp_path / f".{key}.build.abc123" / "queries.npy").write_bytes(b"half")
    open_feature_store(backend, ds, "test", PointSchedule(4), progress=False, root_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == [key]


def _tiny_backend_training(tmp_path, epochs=2):
    from embeddings.train import TrainConfig

    return TrainConfig(backend="b1", dataset="synthetic", epochs=epochs, batch_size=8, steps=5, val_fraction=0.3,
                       device="cpu", progress=False, out=str(tmp_path / "b1"), backend_options=dict(TINY_TRIPLET))


def test_interrupted_writes_and_truncated_resume_files(tmp_path):
    from embeddings.train import train_backend

    cfg = _tiny_backend_training(tmp_path)
    train_backend(cfg, stop_after=1)
    run = tmp_path / "b1"
    (run / ".last.pt.xyz.tmp").write_bytes(b"")  # an interrupted atomic write
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated by a kill
    with pytest.warns(UserWarning, match="last.pt is unreadable"):
        path = train_backend(cfg)
    assert path.is_file() and not (run / ".last.pt.xyz.tmp").exists() and (run / "last.pt.corrupt").exists()
    assert json.loads(torch.load(last, weights_only=True)["state"])["epoch"] == 2  # started over, finished


# -- 8. one error type, one line ---------------------------------------------------------------------------


def _checkpoint(tmp_path, **change) -> Path:
    b = make_backend("b1", **TINY_TRIPLET, dataset="synthetic", scheme="instance")
    path = b.save(tmp_path / "b.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(change)
    torch.save(payload, path)
    return path


def test_malformed_checkpoints_are_the_packages_error(tmp_path):
    good = torch.load(_checkpoint(tmp_path), weights_only=True)
    state = {k: dict(v) for k, v in good["state_dict"].items()}
    state["photo_branch"][next(iter(state["photo_branch"]))] = torch.zeros(2, 2)
    for change in ({"config": None}, {"config": [1, 2]}, {"config": good["config"] | {"embed_dim": 0}},
                   {"state_dict": state}, {"backend": "nosuch"}):
        with pytest.raises(BackendMismatchError, match="b.pt"):
            load_backend(_checkpoint(tmp_path, **change))


def test_file_errors_name_the_file(tmp_path, capsys):
    from agents.train import read_run_config
    from sketch_env.datasets.quickdraw import QuickDrawDataset

    (tmp_path / "deep.ndjson").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataFormatError, match="deep.ndjson"):
        QuickDrawDataset(tmp_path / "deep.ndjson").sketches("train")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{garbage")
    with pytest.raises(DataFormatError, match="config.json"):
        read_run_config(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    err = _one_line_exit_2(capsys, ["embed", "train", "--dataset", "synthetic", "--out", str(tmp_path / "afile")])
    assert "afile" in err


def test_agent_zip_with_utf16_data_or_foreign_weights(tmp_path):
    from agents.io import load_agent, read_meta

    good = _saved_agent(tmp_path)
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}

    def rewrite(name, data) -> Path:
        out = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(out, "w") as z:
            for n, blob in members.items():
                z.writestr(n, data if n == name else blob)
        return out

    with pytest.raises(DataFormatError, match="UTF-8"):
        read_meta(rewrite("data", members["data"].decode().encode("utf-16")))

    class Exec:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    evil = io.BytesIO()
    pickle.dump(Exec(), evil)
    with pytest.raises(DataFormatError, match="policy.pth.zip|cannot load"):
        load_agent(rewrite("policy.pth", evil.getvalue()))


def test_stroke3_fixture_still_loads(tmp_path):
    """The bounds do not refuse real data: a QuickDraw npz of ordinary sketches loads."""
    from sketch_env.datasets.quickdraw import QuickDrawDataset

    seqs = np.empty(2, dtype=object)
    seqs[:] = [stroke3([(1, 1, 0), (5, 2, 1)]), stroke3([(2, 2, 1)])]
    buf = io.BytesIO()
    np.savez(buf, train=seqs)
    (tmp_path / "ok.npz").write_bytes(buf.getvalue())
    assert len(QuickDrawDataset(tmp_path).sketches("train")) == 2


@pytest.mark.parametrize("text", ["default:\n", "default: 3\n", "default: [1, 2]\n", "default: {policy_kwargs: 3}\n"])
def test_a_hyperparameter_block_that_is_not_a_mapping_is_refused(tmp_path, text):
    # found by benchmarks.fuzz: an empty block raised AttributeError ('NoneType' object has no attribute 'items')
    from agents.config import load_hyperparams

    (tmp_path / "h.yml").write_text(text)
    with pytest.raises(DataFormatError, match="h.yml"):
        load_hyperparams("ppo-a-clip", "SketchEnv/OnTheFly-Kanji-v0", path=tmp_path / "h.yml")
