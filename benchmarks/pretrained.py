"""The pretrained checkpoints the package ships, and their model cards: one command makes them all.

    python -m benchmarks.pretrained                 # every shipped checkpoint (kanji B1, B2, PPO; synthetic B1)
    python -m benchmarks.pretrained --only synthetic-b1

Each entry of :data:`SHIPPED` is trained from scratch here with fixed seeds and a fixed length (gradient
steps for the backends, env steps for the agent), then written into the package (``embeddings/pretrained/``,
``agents/pretrained/``) with a model card (``<file>.json`` beside it, and a ``README.md`` index in each
folder): the command, the training data and split, the configuration, the SHA-256 of the file, and the
figures on the test split, in full and on a fixed subset of its sketches (every photo of the gallery) that
``tests/test_pretrained.py`` recomputes. Rerunning the command reproduces the checkpoints' weights bit
for bit on the same machine (the file's SHA-256 still changes, since the training history records wall
seconds); on another machine the weights differ in the last float digits (about 1e-6 after 60 steps of
the synthetic B1), which longer training can grow into differences of a point or more in the figures. The
agent is trained on the env id a user makes, from the backend shipped just before it, so it needs nothing
that is not shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT
from sketch_env.cache import write_text
from sketch_env.device import machine_name

__all__ = ["SHIPPED", "card_of", "subset_data", "backend_figures", "agent_figures", "main"]

BACKEND_DIR = ROOT / "embeddings" / "pretrained"
AGENT_DIR = ROOT / "agents" / "pretrained"
#: the test sketches whose figures a card records for the test to recompute: this many, spread evenly
SUBSET = 200
FIGURES = ("A@1", "A@5", "A@10", "m@A", "m@B", "gallery_size", "sketches")

KANJI_LICENSE = ("trained on KanjiVG data (c) Ulrich Apel and the KanjiVG contributors, CC BY-SA 3.0 "
                 "(https://kanjivg.tagaini.net): this checkpoint is shared under the same licence")

#: name -> what it is; backends: TrainConfig fields; the agent: RLTrainConfig fields. Order matters: the
#: agent starts from the kanji B1 shipped before it.
SHIPPED: dict[str, dict[str, Any]] = {
    "synthetic-b1": {
        "kind": "backend", "file": "synthetic-instance-b1-s0.pt", "steps": 10,
        "train": {"backend": "b1", "dataset": "synthetic", "gradient_steps": 60, "batch_size": 16,
                  "val_fraction": 0.25, "val_min_photos": 0, "steps": 10, "seed": 0, "device": "cpu",
                  "backend_options": {"channels": [8, 16, 16, 16], "embed_dim": 16, "photo_size": 32,
                                      "render": {"size": 32, "line_width": 1, "polarity": "white_on_black",
                                                 "antialias": False, "thicken": "line", "margin": 0}}},
        "license": "trained on the package's generated synthetic figures (MIT, as the code)",
        "purpose": "the tiny backend of SketchEnv/OnTheFly-Synthetic-v0: tests and demos, not a benchmark",
    },
    "kanji-b1": {
        "kind": "backend", "file": "kanji-instance-b1-s0.pt", "steps": 20,
        "train": {"backend": "b1", "dataset": "kanji", "seed": 0, "device": "cpu"},
        "license": KANJI_LICENSE,
        "purpose": "B1 (triplet + attention, complete sketches) of SketchEnv/OnTheFly-Kanji-v0 (backend='b1', "
                   "the default)",
    },
    "kanji-b2": {
        "kind": "backend", "file": "kanji-instance-b2-s0.pt", "steps": 20,
        "train": {"backend": "b2", "dataset": "kanji", "seed": 0, "device": "cpu", "step_power": 0.5},
        "license": KANJI_LICENSE,
        "purpose": "B2 (B1 trained on partial sketches too) of SketchEnv/OnTheFly-Kanji-v0 (backend='b2')",
    },
    "kanji-b1-ppo-a-clip": {
        "kind": "agent", "file": "kanji-b1-ppo-a-clip-s0.zip", "steps": 20,
        "rl": {"algo": "ppo-a-clip", "env_id": "SketchEnv/OnTheFly-Kanji-v0", "env_kwargs": {"backend": "b1"},
               "seed": 0, "device": "cpu"},
        "license": KANJI_LICENSE,
        "purpose": "the paper's final method (PPO, actor only, clipped) started from the shipped kanji B1; "
                   "`sketch-env evaluate --model kanji-b1-ppo-a-clip-s0`",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def subset_rows(n: int) -> np.ndarray:
    """The fixed subset of ``n`` test sketches a card records: ``SUBSET`` of them spread evenly."""
    return np.unique(np.linspace(0, n - 1, min(SUBSET, n)).astype(np.int64))


def subset_data(checkpoint: str | Path, steps: int, rows: np.ndarray | None = None):
    """The backend's retrieval data of the test split (:class:`~sketch_env.envs.data.RetrievalData`): every
    test photo in the gallery, the sketches ``rows`` (default all) drawn over ``steps`` steps and embedded."""
    from embeddings.base import load_backend
    from embeddings.store import embed_progressive, gallery_embeddings
    from sketch_env.datasets import make_dataset
    from sketch_env.envs.data import RetrievalData
    from sketch_env.schedule import PointSchedule

    backend = load_backend(checkpoint, device="cpu")
    dataset = make_dataset(backend.config["dataset"], scheme=backend.config["scheme"])
    records = dataset.sketches("test")
    rows = np.arange(len(records)) if rows is None else np.asarray(rows)
    sketches = [records[i].sketch for i in rows]
    features = np.empty((len(rows), steps, backend.feature_dim), np.float32)
    queries = np.empty((len(rows), steps, backend.embed_dim), np.float32)
    for lo, hi, f, q in embed_progressive(backend, sketches, PointSchedule(steps)):
        features[lo:hi], queries[lo:hi] = f, q
    gallery = gallery_embeddings(backend, dataset, "test")
    return RetrievalData.from_arrays(features, gallery, dataset.photo_index("test")[rows], queries,
                                     description=f"{Path(checkpoint).name} test sketches {len(rows)}")


def _figures(ranks: np.ndarray, gallery: int) -> dict[str, float]:
    from sketch_env.metrics import summarise

    return {k: v for k, v in summarise(ranks, gallery).items() if k in FIGURES}


def backend_figures(checkpoint: str | Path, steps: int, subset: bool) -> dict[str, float]:
    """The frozen backend's figures on the test split (its own queries), on every sketch or the subset."""
    from sketch_env.metrics import ranks_from_embeddings

    data = subset_data(checkpoint, steps, subset_rows(_test_size(checkpoint)) if subset else None)
    n, s, d = data.queries.shape
    true = np.repeat(np.asarray(data.photo_index), s)
    ranks = ranks_from_embeddings(data.queries.reshape(n * s, d), data.gallery, true).reshape(n, s)
    return _figures(ranks, data.gallery_size)


def agent_figures(agent: str | Path, subset: bool) -> dict[str, float]:
    """The agent's figures (mean action) on its env's test split, on every sketch or the subset."""
    from agents.envs import evaluate_agent_ranks
    from agents.io import load_agent, read_meta

    meta = read_meta(agent)
    kwargs = dict(meta["env_kwargs"])
    checkpoint = _agent_backend(meta["env_id"], kwargs)
    steps = int(kwargs.get("steps", 20))
    data = subset_data(checkpoint, steps, subset_rows(_test_size(checkpoint)) if subset else None)
    ranks, gallery = evaluate_agent_ranks(load_agent(agent), meta["env_id"], kwargs, data=data)
    return _figures(ranks, gallery)


def _agent_backend(env_id: str, env_kwargs: dict[str, Any]) -> Path:
    """The backend checkpoint an agent's env uses (the id's dataset and scheme, the ``backend`` argument)."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the ids)
    from embeddings.provision import resolve_backend_checkpoint
    from sketch_env.datasets import make_dataset

    defaults = gym.spec(env_id).kwargs
    dataset = env_kwargs.get("dataset", defaults.get("dataset"))
    scheme = env_kwargs.get("scheme", defaults.get("scheme")) or make_dataset(dataset).scheme
    return resolve_backend_checkpoint(env_kwargs.get("backend", defaults.get("backend", "b1")), dataset=dataset,
                                      scheme=scheme, seed=int(env_kwargs.get("backend_seed", 0)))


def _test_size(checkpoint: str | Path) -> int:
    from embeddings.base import load_backend
    from sketch_env.datasets import make_dataset

    config = load_backend(checkpoint).config
    return len(make_dataset(config["dataset"], scheme=config["scheme"]).sketches("test"))


def card_of(name: str) -> dict[str, Any]:
    """The model card of shipped checkpoint ``name`` (read from the package)."""
    spec = SHIPPED[name]
    folder = BACKEND_DIR if spec["kind"] == "backend" else AGENT_DIR
    return json.loads((folder / (spec["file"] + ".json")).read_text())


def _train(name: str, spec: dict[str, Any], work: Path) -> tuple[Path, dict[str, Any]]:
    """Train entry ``name`` in ``work``; returns the file and what the card records of the training."""
    if spec["kind"] == "backend":
        from embeddings.train import TrainConfig, train_backend

        cfg = TrainConfig(**spec["train"], out=str(work / name), progress=False)
        path = train_backend(cfg)
        record = json.loads((work / name / "history.json").read_text())
        return path, {"config": spec["train"], "resolved": record["training"], "cut_short": record["cut_short"]}
    from agents.train import RLTrainConfig, train_agent

    cfg = RLTrainConfig(**spec["rl"], out=str(work / name), progress=False)
    path = train_agent(cfg)
    history = [json.loads(line) for line in (work / name / "history.jsonl").read_text().splitlines() if line]
    return path, {"config": spec["rl"], "env_steps": history[-1]["timesteps"], "kept": "best validation m@B"}


def _write_card(name: str, spec: dict[str, Any], path: Path, training: dict[str, Any], command: str,
                seconds: float) -> dict[str, Any]:
    from embeddings.base import load_backend
    from sketch_env.datasets import make_dataset

    if spec["kind"] == "backend":
        checkpoint, folder = path, BACKEND_DIR
        full, part = backend_figures(path, spec["steps"], False), backend_figures(path, spec["steps"], True)
        what = {"backend": load_backend(path).name, "figures_of": "the frozen backend's own queries"}
    else:
        checkpoint = _agent_backend(spec["rl"]["env_id"], spec["rl"]["env_kwargs"])
        folder = AGENT_DIR
        full, part = agent_figures(path, False), agent_figures(path, True)
        what = {"algo": spec["rl"]["algo"], "env_id": spec["rl"]["env_id"], "env_kwargs": spec["rl"]["env_kwargs"],
                "backend_file": Path(checkpoint).name, "figures_of": "the mean action"}
    backend = load_backend(checkpoint)
    ds = make_dataset(backend.config["dataset"], scheme=backend.config["scheme"])
    card = {
        "name": name, "file": spec["file"], "sha256": sha256(path), "bytes": path.stat().st_size,
        "command": command, "purpose": spec["purpose"], **what, "training": training,
        "data": {"dataset": ds.name, "scheme": ds.scheme, "trained_on": "train split, less the validation photos",
                 "train_split": backend.config.get("train_split"),
                 "train_sketches": len(ds.sketches("train")), "train_photos": len(ds.photos("train"))},
        "test": {"split": "test", "steps": spec["steps"], "figures": full},
        "test_subset": {"rows": f"np.linspace(0, n - 1, {SUBSET}) of the n test sketches, every test photo in "
                                "the gallery", "figures": part},
        "license": spec["license"],
        "trained": {"machine": machine_name(), "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d")},
    }
    write_text(folder / (spec["file"] + ".json"), json.dumps(card, indent=1) + "\n")
    return card


def _write_index(folder: Path, cards: list[dict[str, Any]]) -> None:
    lines = ["# Pretrained checkpoints (model cards)", "",
             "Made by `python -m benchmarks.pretrained` (the command, configuration and figures of each are in "
             "its `<file>.json` card); loaded with `torch.load(weights_only=True)` (agents through "
             "`agents.io.load_agent`, which unpickles nothing). Figures: the test split, S = 20 steps.", "",
             "| file | what | data | test A@1 | A@5 | A@10 | m@A | m@B | MB | SHA-256 | licence |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for c in cards:
        t = c["test"]["figures"]
        lines.append(f"| `{c['file']}` | {c.get('backend') or c.get('algo')} | {c['data']['dataset']} / "
                     f"{c['data']['scheme']} (gallery {t['gallery_size']}) | {t['A@1']:.1f} | {t['A@5']:.1f} | "
                     f"{t['A@10']:.1f} | {t['m@A']:.1f} | {t['m@B']:.1f} | {c['bytes'] / 1e6:.2f} | "
                     f"`{c['sha256'][:16]}...` | {c['license']} |")
    write_text(folder / "README.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=list(SHIPPED), choices=list(SHIPPED))
    args = p.parse_args(argv)
    command = "python -m benchmarks.pretrained" + (f" --only {' '.join(args.only)}" if args.only != list(SHIPPED)
                                                  else "")
    BACKEND_DIR.mkdir(exist_ok=True)
    AGENT_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sketch-env-pretrained-") as tmp:
        for name in args.only:
            spec = SHIPPED[name]
            t0 = time.perf_counter()
            trained, training = _train(name, spec, Path(tmp))
            target = (BACKEND_DIR if spec["kind"] == "backend" else AGENT_DIR) / spec["file"]
            shutil.copyfile(trained, target)
            card = _write_card(name, spec, target, training, command, time.perf_counter() - t0)
            print(f"{name}: {target} ({card['bytes'] / 1e6:.2f} MB), test {card['test']['figures']}", flush=True)
    for folder, kind in ((BACKEND_DIR, "backend"), (AGENT_DIR, "agent")):
        cards = [card_of(n) for n, s in SHIPPED.items() if s["kind"] == kind
                 and (folder / (s["file"] + ".json")).is_file()]
        _write_index(folder, cards)
    return 0


if __name__ == "__main__":
    sys.exit(main())
