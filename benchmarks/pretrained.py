"""The pretrained checkpoints the package ships, and their model cards: one command makes them all.

    python -m benchmarks.pretrained                 # every shipped checkpoint (kanji B1, B2, PPO; synthetic B1)
    python -m benchmarks.pretrained --only synthetic-b1

Each entry of :data:`SHIPPED` is trained from scratch here with fixed seeds and a fixed length (gradient
steps for the backends, env steps for the agent), then written into the package (``embeddings/pretrained/``,
``agents/pretrained/``) with a model card (``<file>.json`` beside it, and ``embeddings/pretrained/README.md``
for all): the command, the training data and split, the configuration, the SHA-256 of the file, and the
figures on the test split, in full and on a fixed subset that ``tests/test_pretrained.py`` recomputes.
Rerunning the command reproduces the checkpoints on the same machine (and, to within the run-to-run spread
of float arithmetic, on another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT

__all__ = ["SHIPPED", "card_of", "subset_figures", "main"]

BACKEND_DIR = ROOT / "embeddings" / "pretrained"
AGENT_DIR = ROOT / "agents" / "pretrained"
#: sketches of the test split whose figures the card records for the test to recompute: every k-th
SUBSET = 200

KANJI_LICENSE = ("trained on KanjiVG data (c) Ulrich Apel and the KanjiVG contributors, CC BY-SA 3.0 "
                 "(https://kanjivg.tagaini.net): this checkpoint is shared under the same licence")

#: name -> what it is; backends: TrainConfig fields; the agent: RL settings
SHIPPED: dict[str, dict[str, Any]] = {
    "synthetic-b1": {
        "kind": "backend", "file": "synthetic-instance-b1-s0.pt", "steps": 10,
        "train": {"backend": "b1", "dataset": "synthetic", "epochs": 6, "batch_size": 16, "val_fraction": 0.25,
                  "steps": 10, "seed": 0, "device": "cpu",
                  "backend_options": {"channels": [8, 16, 16, 16], "embed_dim": 16, "photo_size": 32,
                                      "render": {"size": 32, "line_width": 1, "polarity": "white_on_black",
                                                 "antialias": False, "thicken": "line", "margin": 0}}},
        "license": "trained on the package's generated synthetic figures",
        "purpose": "the tiny backend of SketchEnv/OnTheFly-Synthetic-v0: tests and demos, not a benchmark",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def subset_rows(n: int) -> np.ndarray:
    """The fixed subset of ``n`` test sketches a card records: ``SUBSET`` of them spread evenly."""
    return np.unique(np.linspace(0, n - 1, min(SUBSET, n)).astype(np.int64))


def subset_figures(checkpoint: Path, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """The backend's figures on its test split, ``(all sketches, the fixed subset)`` (frozen backend: its own
    queries against the test gallery)."""
    from embeddings.store import open_backend_store
    from sketch_env.metrics import ranks_from_embeddings, summarise

    _, _, store = open_backend_store(checkpoint, "test", steps=steps, device="cpu", progress=False)
    n, s, d = store.queries.shape
    true = np.repeat(np.asarray(store.photo_index), s)
    ranks = ranks_from_embeddings(np.asarray(store.queries).reshape(n * s, d), store.gallery, true).reshape(n, s)
    keep = ("A@1", "A@5", "A@10", "m@A", "m@B", "gallery_size", "sketches")
    full = {k: v for k, v in summarise(ranks, store.gallery_size).items() if k in keep}
    part = {k: v for k, v in summarise(ranks[subset_rows(n)], store.gallery_size).items() if k in keep}
    return full, part


def card_of(name: str) -> dict[str, Any]:
    """The model card of shipped checkpoint ``name`` (read from the package)."""
    spec = SHIPPED[name]
    folder = BACKEND_DIR if spec["kind"] == "backend" else AGENT_DIR
    return json.loads((folder / (spec["file"] + ".json")).read_text())


def _train_backend(name: str, spec: dict[str, Any], work: Path) -> Path:
    from embeddings.train import TrainConfig, train_backend

    cfg = TrainConfig(**spec["train"], out=str(work / name), progress=False)
    return train_backend(cfg)


def _write_card(name: str, spec: dict[str, Any], path: Path, command: str, seconds: float) -> dict[str, Any]:
    from embeddings.base import load_backend
    from sketch_env.datasets import make_dataset

    backend = load_backend(path)
    full, part = subset_figures(path, spec["steps"])
    ds = make_dataset(backend.config["dataset"], scheme=backend.config["scheme"])
    card = {
        "name": name,
        "file": spec["file"],
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "command": command,
        "purpose": spec["purpose"],
        "backend": backend.name,
        "training": spec["train"],
        "data": {"dataset": ds.name, "scheme": ds.scheme, "trained_on": "train split, less the validation photos",
                 "train_split": backend.config.get("train_split"),
                 "train_sketches": len(ds.sketches("train")), "train_photos": len(ds.photos("train"))},
        "test": {"split": "test", "steps": spec["steps"], "frozen_backend": full},
        "test_subset": {"every": "np.linspace(0, n - 1, 200) of the test sketches", "sketches": part["sketches"],
                        "frozen_backend": part},
        "license": spec["license"],
        "trained": {"machine": platform.machine(), "seconds": round(seconds, 1),
                    "date": time.strftime("%Y-%m-%d")},
    }
    (BACKEND_DIR / (spec["file"] + ".json")).write_text(json.dumps(card, indent=1) + "\n")
    return card


def _write_index(cards: list[dict[str, Any]]) -> None:
    lines = ["# Pretrained checkpoints (model cards)", "",
             "Made by `python -m benchmarks.pretrained` (the command, configuration and figures of each are in "
             "its `<file>.json` card); loaded with `torch.load(weights_only=True)`.", "",
             "| file | backend | data | test A@1 | A@5 | A@10 | m@A | m@B | SHA-256 | licence |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for c in cards:
        t = c["test"]["frozen_backend"]
        lines.append(f"| `{c['file']}` | {c['backend']} | {c['data']['dataset']} / {c['data']['scheme']} "
                     f"(gallery {t['gallery_size']}) | {t['A@1']:.1f} | {t['A@5']:.1f} | {t['A@10']:.1f} | "
                     f"{t['m@A']:.1f} | {t['m@B']:.1f} | `{c['sha256'][:16]}...` | {c['license']} |")
    (BACKEND_DIR / "README.md").write_text("\n".join(lines) + "\n")


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
            trained = _train_backend(name, spec, Path(tmp))
            target = BACKEND_DIR / spec["file"]
            shutil.copyfile(trained, target)
            card = _write_card(name, spec, target, command, time.perf_counter() - t0)
            print(f"{name}: {target} ({card['bytes'] / 1e6:.2f} MB), test {card['test']['frozen_backend']}",
                  flush=True)
    cards = [card_of(n) for n in SHIPPED if (BACKEND_DIR / (SHIPPED[n]["file"] + ".json")).is_file()]
    _write_index(cards)
    return 0


if __name__ == "__main__":
    sys.exit(main())
