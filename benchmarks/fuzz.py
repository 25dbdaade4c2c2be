"""Fuzzing every reader of a file someone else may have made, and every argument a user types.

    python -m benchmarks.fuzz                        # the long profile: 2,000 inputs per target
    python -m benchmarks.fuzz --examples 50 --targets pickle svg

Targets (:data:`TARGETS`): the QMUL pickle, a Sketchy SVG, QuickDraw ndjson and sketch-rnn npz, a photo, a
backend checkpoint, an agent zip, a feature-store folder, a hyper-parameter YAML file, the CLI's run
configurations, the env's arguments, and its actions. Each target has valid seed inputs and a corpus of
crafted attacks (code-running pickles, size bombs, deep nesting, foreign env ids, ...; SECURITY.md); the
fuzzer (hypothesis) feeds it those, truncations, byte flips, insertions and garbage. The property: an input
either loads (into valid objects) or is refused with the package's own error (``SketchEnvError``); any
other exception, or a peak of more than :data:`MEMORY_BOUND` bytes of traced allocations for one input, is a
violation. A crash (a segfault) ends the process: run under ``python -m``, a non-zero exit says so.

Prints, per target, the inputs tried and how each class of them ended, writes the table to ``--out``
(``README.md``, the report with command, machine and date, and ``fuzz.md``; default ``benchmarks/results/fuzz/``),
and exits 1 on any violation. The test suite runs the same harness with a few examples per target
(``tests/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.cache import write_text

__all__ = ["TARGETS", "MEMORY_BOUND", "Target", "run_target", "classify", "main"]

#: the most a single input may make a reader allocate (traced by tracemalloc: Python and NumPy)
MEMORY_BOUND = 256 << 20


@dataclass
class Target:
    """A reader: how to make its valid seed inputs, its crafted attacks, and how to feed it one input."""

    name: str
    seeds: Callable[[Path], list[Any]]
    load: Callable[[Any, Path], Any]
    attacks: Callable[[Path], list[tuple[str, Any]]] = field(default=lambda tmp: [])
    binary: bool = True
    """inputs are bytes (mutated by the fuzzer); else structured values drawn by :attr:`draw`"""
    draw: Callable[[Any], Any] | None = None


# ------------------------------------------------------------------------------------ data files


def _qmul_dict() -> dict[str, np.ndarray]:
    a = np.array([[128, 128, 0], [140, 130, 0], [150, 150, 1], [40, 200, 0], [60, 210, 1]], dtype=np.float64)
    return {"/train/abc_def_1": a, "/train/xyz_2": a[:3].copy(), "/test/q_1": a.copy()}


def _load_qmul(payload: bytes, tmp: Path) -> Any:
    from sketch_env.datasets.qmul import chairv2

    (tmp / "ChairV2_Coordinate").write_bytes(payload)
    ds = chairv2(tmp)
    return [ds.sketches(s) for s in ("train", "test")] + [ds.photo_index(s) for s in ("train", "test")]


class _Exec:
    def __reduce__(self):
        return (exec, ("open('/tmp/sketch-env-fuzz-pwned', 'w')",))


class _Raw:
    def __init__(self, *value: Any) -> None:
        self.value = value

    def __reduce__(self):
        return self.value


def _pickle_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    deep = b"\x80\x04}" + b")" + b"\x85" * 200_000 + b"K\x01s."  # a tuple nested 200,000 deep as a dict key
    return [
        ("runs code (exec)", pickle.dumps({"/train/a_1": _Exec()}, protocol=2)),
        ("a tuple nested 200,000 deep", deep),
        ("scalar of a 1 GB string dtype", pickle.dumps(_Raw(multiarray.scalar, (np.dtype("S1000000000"),)), 2)),
        ("object array of 120M items", pickle.dumps(_Raw(multiarray._reconstruct, (np.ndarray, (120_000_000,), "O")),
                                                    2)),
        ("empty array, protocol 2", pickle.dumps({"/train/a_1": np.zeros((0, 3))}, protocol=2)),
        ("truncated", pickle.dumps(_qmul_dict(), protocol=2)[:-40]),
        ("huge bytearray prefix", b"\x80\x05\x96" + (2**62).to_bytes(8, "little") + b"x."),
    ]


def _svg_text(paths: str = '<path d="M 10 10 C 20 20 40 20 50 10"/><path d="M 5 60 l 30 0"/>',
              size: str = 'width="640" height="480"') -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" {size}>{paths}</svg>'.encode()


def _load_svg(payload: bytes, tmp: Path) -> Any:
    from sketch_env.datasets.sketchy import read_sketchy_svg

    (tmp / "s.svg").write_bytes(payload)
    return read_sketchy_svg(tmp / "s.svg")


def _svg_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    corners = "".join('<path d="M0 0 L640 480"/>' for _ in range(3000))
    return [
        ("canvas 2e9 x 2e9", _svg_text('<path d="M0 0 L2e9 2e9"/>', 'width="2e9" height="2e9"')),
        ("3,000 corner-to-corner segments", _svg_text(corners.replace("L640 480", "L64000 48000"),
                                                      'width="64000" height="48000"')),
        ("coordinates far off the canvas", _svg_text('<path d="M0 0 L1e30 1e30"/>')),
        ("entity expansion", b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;'
                             b'&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><svg>&c;</svg>'),
    ]


def _ndjson_text() -> bytes:
    rows = [{"word": "cat", "key_id": str(i), "countrycode": "GB", "drawing": [[[1, 50, 90], [3, 40, 80]]]}
            for i in range(3)]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _load_quickdraw(suffix: str) -> Callable[[bytes, Path], Any]:
    def load(payload: bytes, tmp: Path) -> Any:
        from sketch_env.datasets.quickdraw import QuickDrawDataset

        (tmp / f"cat.{suffix}").write_bytes(payload)
        ds = QuickDrawDataset(tmp)
        return ds.sketches("train"), ds.sketches("test")

    return load


def _ndjson_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    return [
        ("a 100,000-deep JSON array", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        ("not UTF-8", "{\"word\": \"caf\xe9\"}".encode("latin1")),
        ("a million points", json.dumps({"drawing": [[list(range(10**6)), list(range(10**6))]]}).encode()),
    ]


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _stroke3_array() -> np.ndarray:
    seqs = [np.array([[1, 1, 0], [5, 2, 1], [3, 3, 1]], np.int16), np.array([[2, 2, 1]], np.int16)]
    out = np.empty(len(seqs), dtype=object)
    out[:] = seqs
    return out


def _npz_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:  # 1.5 GB of zeros behind a small header
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<i2", "fortran_order": False, "shape": (750_000_000,)})
        with z.open("train.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            block = bytes(1 << 24)
            for _ in range(90):
                f.write(block)
    obj = np.empty(2, dtype=object)
    obj[:] = [np.array([[1, 1, 1]], np.int16), _Exec()]
    return [("a member inflating to 1.5 GB", bomb.getvalue()), ("an object array that runs code",
                                                                  _npz_bytes(train=obj))]


def _png_bytes(h: int = 40, w: int = 30) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 200, np.uint8))
    return buf.tobytes()


def _load_photo(payload: bytes, tmp: Path) -> Any:
    from sketch_env.datasets.base import read_photo_file

    (tmp / "p.png").write_bytes(payload)
    return read_photo_file(str(tmp / "p.png"), 32)


def _photo_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((16000, 16000), np.uint8))  # 249 KB, 1.5 GB decoded as RGB
    return [("16000 x 16000 PNG", buf.tobytes()), ("a text file", b"not an image")]


# ------------------------------------------------------------------------------ model files


_TINY = {"channels": [4, 8, 8, 8], "embed_dim": 8,
         "render": {"size": 16, "line_width": 1, "polarity": "white_on_black", "antialias": False, "thicken": "line",
                    "margin": 0},
         "photo_size": 16}


def _checkpoint_bytes(tmp: Path, **change: Any) -> bytes:
    import torch

    from embeddings.base import make_backend

    b = make_backend("b1", **_TINY, dataset="synthetic", scheme="instance")
    path = b.save(tmp / "ok.pt")
    if change:
        payload = torch.load(path, weights_only=True)
        payload.update(change)
        torch.save(payload, path)
    return path.read_bytes()


def _load_checkpoint(payload: bytes, tmp: Path) -> Any:
    from embeddings.base import load_backend

    (tmp / "b.pt").write_bytes(payload)
    return load_backend(tmp / "b.pt")


def _checkpoint_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    import torch

    good = _checkpoint_bytes(tmp)
    (tmp / "g.pt").write_bytes(good)
    payload = torch.load(tmp / "g.pt", weights_only=True)
    state = payload["state_dict"]
    bad_state = {k: dict(v) for k, v in state.items()}
    first = next(iter(bad_state["sketch_branches"]))
    bad_state["sketch_branches"][first] = torch.zeros(3, 3)
    evil = io.BytesIO()
    pickle.dump({"format": "sketch-env-backend/1", "x": _Exec()}, evil)
    return [
        ("no config", _checkpoint_bytes(tmp, config=None)),
        ("a config that is a list", _checkpoint_bytes(tmp, config=[1, 2])),
        ("embed_dim 0", _checkpoint_bytes(tmp, config=payload["config"] | {"embed_dim": 0})),
        ("mis-shaped weights", _checkpoint_bytes(tmp, state_dict=bad_state)),
        ("unknown backend", _checkpoint_bytes(tmp, backend="nosuch")),
        ("a plain pickle that runs code", evil.getvalue()),
    ]


def _agent_bytes(tmp: Path, env_id: str = "SketchEnv/OnTheFly-Synthetic-v0", env_kwargs: dict | None = None) -> bytes:
    from stable_baselines3.common.env_util import make_vec_env

    from agents.algorithms import algorithm_spec
    from agents.io import save_agent
    from agents.policy import LinearGaussianPolicy

    cls, fixed, policy_kwargs = algorithm_spec("ppo-a-clip")
    model = cls(LinearGaussianPolicy, make_vec_env("Pendulum-v1", n_envs=1, seed=0), policy_kwargs=policy_kwargs,
                n_steps=8, batch_size=8, seed=0, **fixed)
    return save_agent(model, tmp / "agent", "ppo-a-clip", env_id, env_kwargs or {}, {}).read_bytes()


def _rewrite_member(blob: bytes, member: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, data if item.filename == member else zin.read(item.filename))
    return out.getvalue()


def _load_agent(payload: bytes, tmp: Path) -> Any:
    from agents.io import load_agent

    (tmp / "a.zip").write_bytes(payload)
    return load_agent(tmp / "a.zip")


def _agent_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    good = _agent_bytes(tmp)
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        data = z.read("data").decode()
    evil = io.BytesIO()
    pickle.dump(_Exec(), evil)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", b" " * (300 << 20))
    return [
        ("an env id that imports a module", _agent_bytes(tmp, env_id="somemodule:SketchEnv/OnTheFly-Synthetic-v0")),
        ("env arguments that train a backend", _agent_bytes(tmp, env_kwargs={"train_if_missing": True,
                                                                             "train_options": {"epochs": 10**9}})),
        ("its data as UTF-16", _rewrite_member(good, "data", data.encode("utf-16"))),
        ("a data member inflating to 300 MB", bomb.getvalue()),
        ("weights that run code", _rewrite_member(good, "policy.pth", evil.getvalue())),
    ]


# -------------------------------------------------------------------------------- store, YAML


def _store_setup(tmp: Path):
    import torch

    from embeddings.base import make_backend
    from sketch_env.datasets import make_dataset
    from sketch_env.schedule import PointSchedule

    torch.manual_seed(0)
    backend = make_backend("b1", **_TINY, dataset="synthetic", scheme="instance")
    return backend, make_dataset("synthetic", n_instances=6), PointSchedule(3)


def _store_seeds(tmp: Path) -> list[bytes]:
    from embeddings.store import open_feature_store

    backend, ds, schedule = _store_setup(tmp)
    store = open_feature_store(backend, ds, "test", schedule, progress=False, root_dir=tmp / "seed-store")
    return [(store.path / "meta.json").read_bytes()]


def _load_store_meta(payload: bytes, tmp: Path) -> Any:
    """A feature store whose ``meta.json`` is ``payload``: it must be reused or rebuilt, never fail."""
    from embeddings.store import open_feature_store

    backend, ds, schedule = _store_setup(tmp)
    root = tmp / "stores"
    store = open_feature_store(backend, ds, "test", schedule, progress=False, root_dir=root)
    (store.path / "meta.json").write_bytes(payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = open_feature_store(backend, ds, "test", schedule, progress=False, root_dir=root)
    assert np.isfinite(np.asarray(again.queries)).all()
    return again


def _yaml_seed(tmp: Path) -> list[bytes]:
    from agents.config import HYPERPARAMS_DIR

    return [(HYPERPARAMS_DIR / "ppo-a-clip.yml").read_bytes()]


def _load_yaml(payload: bytes, tmp: Path) -> Any:
    from agents.config import load_hyperparams

    (tmp / "h.yml").write_bytes(payload)
    return load_hyperparams("ppo-a-clip", "SketchEnv/OnTheFly-Kanji-v0", path=tmp / "h.yml")


def _yaml_attacks(tmp: Path) -> list[tuple[str, bytes]]:
    return [("a Python object tag", b"default: !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
            ("deep nesting", b"default: " + b"[" * 50_000 + b"]" * 50_000),
            ("an unknown key", b"default: {nosuch: 1}\n"), ("a string count", b"default: {n_steps: abc}\n")]


# --------------------------------------------------------------------------- arguments, actions

_WORDS = ["-5", "0", "1", "1e309", "nan", "True", "abc", "{a: 1}", "!!python/object:os.system x", "[" * 50,
          "1e6", "-1", "0.5", "ppo-a-clip", "bogus", "SketchEnv/NoSuch-v0", "somemodule:Env-v0", "/etc/passwd"]


def _draw_cli(data: Any) -> list[str]:
    from hypothesis import strategies as st

    command = data.draw(st.sampled_from([["train"], ["embed", "train"], ["embed", "meta-train"]]))
    flags = {"train": ["--timesteps", "--minutes", "--seed", "--hp", "--env", "--env-kwarg", "--algo", "--eval-every",
                       "--trainer", "--seeds", "--out"],
             "embed": ["--epochs", "--minutes", "--batch-size", "--lr", "--seed", "--val-fraction", "--steps",
                       "--option", "--backend", "--out"],
             }
    argv = list(command)
    for _ in range(data.draw(st.integers(1, 4))):
        flag = data.draw(st.sampled_from(flags[command[0]]))
        value = data.draw(st.one_of(st.sampled_from(_WORDS), st.text(max_size=12)))
        if flag in ("--hp", "--env-kwarg", "--option"):
            value = f"{data.draw(st.sampled_from(['n_steps', 'learning_rate', 'nosuch', 'reward', 'steps']))}={value}"
        argv += [flag, value]
    return argv


def _load_cli(argv: list[str], tmp: Path) -> Any:
    """The configurations the command would run with, built and checked, without running it."""
    from agents.cli import build_parser, configs_of

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's own usage error: one line, exit code 2
        assert exc.code == 2
        return None
    return configs_of(args)


def _draw_env_kwargs(data: Any) -> dict[str, Any]:
    from hypothesis import strategies as st

    names = ["reward", "gamma1", "gamma2", "reward_scale", "action", "kendall", "topk", "observe_progress",
             "obs_bound", "action_bound", "order", "steps", "split", "val_fraction", "schedule", "distractors",
             "backend_seed", "sketch_index", "rewrd"]
    values = st.one_of(st.integers(-10**7, 10**7), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                       st.sampled_from(["paper", "direct", "residual", "random", "test", "points", "x"]), st.none(),
                       st.complex_numbers(max_magnitude=10))
    return data.draw(st.dictionaries(st.sampled_from(names), values, max_size=4))


def _load_env_kwargs(kwargs: dict[str, Any], tmp: Path) -> Any:
    """The env's arguments checked as ``gym.make`` checks them, before any data is provisioned."""
    from embeddings.provision import DATA_ARGUMENTS, check_data_arguments
    from sketch_env.envs.engine import make_options

    data = {k: v for k, v in kwargs.items() if k in DATA_ARGUMENTS}
    options = {k: v for k, v in kwargs.items() if k not in DATA_ARGUMENTS and k != "sketch_index"}
    check_data_arguments(**data)
    env = _arrays_env(make_options(options, "retrieval env"))
    env.reset(seed=0, options={"sketch_index": kwargs["sketch_index"]} if "sketch_index" in kwargs else None)
    return env


def _arrays_env(options: Any):
    from dataclasses import asdict

    from sketch_env.envs.retrieval import OnTheFlyRetrievalEnv

    rng = np.random.default_rng(0)
    g = rng.normal(size=(12, 4)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(5, 3, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    return OnTheFlyRetrievalEnv.from_arrays(rng.normal(size=(5, 3, 6)).astype(np.float32), g,
                                            rng.integers(0, 12, 5), q, **asdict(options))


def _draw_action(data: Any) -> Any:
    from hypothesis import strategies as st

    kind = data.draw(st.sampled_from(["ok", "shape", "nan", "complex", "object", "str", "huge"]))
    return {"ok": np.ones(4), "shape": np.ones(data.draw(st.integers(0, 9))), "nan": np.full(4, np.nan),
            "complex": np.ones(4) * (1 + 2j), "object": np.array([None] * 4, dtype=object), "str": "abcd",
            "huge": np.full(4, 1e300)}[kind]


def _load_action(action: Any, tmp: Path) -> Any:
    from sketch_env.envs.engine import EnvOptions

    env = _arrays_env(EnvOptions(action="residual"))
    env.reset(seed=0)
    out = env.step(action)
    assert np.isfinite(out[1])
    return out


TARGETS: dict[str, Target] = {
    "pickle": Target("pickle", lambda tmp: [pickle.dumps(_qmul_dict(), protocol=p) for p in (2, 4)], _load_qmul,
                     _pickle_attacks),
    "svg": Target("svg", lambda tmp: [_svg_text()], _load_svg, _svg_attacks),
    "ndjson": Target("ndjson", lambda tmp: [_ndjson_text()], _load_quickdraw("ndjson"), _ndjson_attacks),
    "npz": Target("npz", lambda tmp: [_npz_bytes(train=_stroke3_array(), test=_stroke3_array())],
                  _load_quickdraw("npz"), _npz_attacks),
    "photo": Target("photo", lambda tmp: [_png_bytes()], _load_photo, _photo_attacks),
    "checkpoint": Target("checkpoint", lambda tmp: [_checkpoint_bytes(tmp)], _load_checkpoint, _checkpoint_attacks),
    "agent": Target("agent", lambda tmp: [_agent_bytes(tmp)], _load_agent, _agent_attacks),
    "store": Target("store", _store_seeds, _load_store_meta),
    "yaml": Target("yaml", _yaml_seed, _load_yaml, _yaml_attacks),
    "cli": Target("cli", lambda tmp: [["train", "--timesteps", "10"]], _load_cli, binary=False, draw=_draw_cli),
    "env": Target("env", lambda tmp: [{}], _load_env_kwargs, binary=False, draw=_draw_env_kwargs),
    "action": Target("action", lambda tmp: [np.ones(4)], _load_action, binary=False, draw=_draw_action),
}


# ------------------------------------------------------------------------------------ harness


def classify(target: Target, payload: Any, tmp: Path) -> str:
    """Feed ``payload`` to ``target``: ``"loaded"``, ``"refused: <ErrorClass>"``, or ``"VIOLATION: ..."``."""
    from sketch_env.errors import SketchEnvError

    tracemalloc.reset_peak()
    try:
        with tempfile.TemporaryDirectory(dir=tmp) as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.load(payload, Path(d))
        outcome = "loaded"
    except SketchEnvError as exc:
        outcome = f"refused: {type(exc).__name__}"
    except MemoryError:
        outcome = "VIOLATION: MemoryError"
    except Exception as exc:  # noqa: BLE001 - anything else is what the fuzzer looks for
        outcome = f"VIOLATION: {type(exc).__name__}: {str(exc)[:200]}"
    peak = tracemalloc.get_traced_memory()[1]
    if peak > MEMORY_BOUND and not outcome.startswith("VIOLATION"):
        outcome = f"VIOLATION: allocated {peak / 2**20:.0f} MiB"
    return outcome


def _mutations(seed: bytes):
    from hypothesis import strategies as st

    def truncate(data):
        return seed[: data.draw(st.integers(0, max(len(seed) - 1, 0)))]

    def flip(data):
        blob = bytearray(seed)
        for _ in range(data.draw(st.integers(1, 4))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        return bytes(blob)

    def insert(data):
        at = data.draw(st.integers(0, len(seed)))
        return seed[:at] + data.draw(st.binary(min_size=1, max_size=64)) + seed[at:]

    def garbage(data):
        return data.draw(st.binary(max_size=512))

    return {"truncated": truncate, "bytes flipped": flip, "bytes inserted": insert, "garbage": garbage}


def run_target(target: Target, examples: int, tmp: Path, seed: int = 0) -> Counter:
    """Every crafted attack, the valid seeds, and ``examples`` fuzzed inputs of ``target``: ``Counter`` of
    ``(input class, outcome)``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    outcomes: Counter = Counter()
    base = tmp / target.name
    base.mkdir(parents=True, exist_ok=True)
    seeds = target.seeds(base)
    for payload in seeds:
        outcomes[("valid seed", classify(target, payload, base))] += 1
    for label, payload in target.attacks(base):
        outcomes[(f"attack: {label}", classify(target, payload, base))] += 1
    if examples <= 0:
        return outcomes
    mutations = _mutations(seeds[0]) if target.binary else None

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        if target.binary:
            kind = data.draw(st.sampled_from(sorted(mutations)))
            payload = mutations[kind](data)
        else:
            kind, payload = "drawn", target.draw(data)
        outcomes[(kind, classify(target, payload, base))] += 1

    fuzz()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=2000, help="fuzzed inputs per target")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--out", default="benchmarks/results/fuzz",
                   help="report folder: README.md and fuzz.md (the table in markdown)")
    args = p.parse_args(argv)
    os.environ.setdefault("SKETCH_ENV_CACHE", tempfile.mkdtemp(prefix="sketch-env-fuzz-cache-"))
    from benchmarks.common import command_line, write_readme

    started = not tracemalloc.is_tracing()
    tracemalloc.start()
    t0 = time.perf_counter()
    lines = ["| target | inputs | input class | outcome | count |", "| --- | ---: | --- | --- | ---: |"]
    violations = 0
    total = 0
    try:
        with tempfile.TemporaryDirectory(prefix="sketch-env-fuzz-") as tmp:
            for name in args.targets:
                counts = run_target(TARGETS[name], args.examples, Path(tmp))
                n = sum(counts.values())
                total += n
                for (kind, outcome), count in sorted(counts.items()):
                    lines.append(f"| {name} | {n} | {kind} | {outcome} | {count} |")
                    if outcome.startswith("VIOLATION"):
                        violations += count
                print(f"[{name}] {n} inputs, {sum(c for (k, o), c in counts.items() if o.startswith('VIOLATION'))} "
                      f"violations", flush=True)
    finally:
        if started:
            tracemalloc.stop()
    table = "\n".join(lines)
    command = command_line("fuzz", argv)
    summary = (f"{total} inputs in {time.perf_counter() - t0:.0f} s, {violations} violations (memory bound "
               f"{MEMORY_BOUND >> 20} MiB traced per input)")
    text = f"`{command}`: {summary}\n\n{table}\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "fuzz.md", text)
    write_readme(out, "Fuzzing the readers, the run configurations and the env", command, table,
                 seconds=time.perf_counter() - t0,
                 notes=f"{args.examples:,} fuzzed inputs per target, besides its valid seeds and crafted attacks; "
                 f"{summary}.", files=["fuzz.md"])
    with contextlib.suppress(OSError):
        if Path("/tmp/sketch-env-fuzz-pwned").exists():
            print("VIOLATION: an input ran code (/tmp/sketch-env-fuzz-pwned exists)")
            return 1
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
