"""A development split of a QMUL dataset's training data: measure on it, keep the published test split apart.

    python -m benchmarks.dev_split --root ../shared/data/chairv2-train --out runs/chairv2-dev
    sketch-env run --dataset chairv2 --root runs/chairv2-dev          # or any benchmark with --root

From the published ``train`` split of ``<root>/<Variant>_Coordinate``, ``--test-photos`` photos (100, as many
as the published Chair-V2 test split has) chosen by a hash of the photo name become the development
``test`` split with all their sketches; the other training photos stay ``train``. The published test split,
if the folder has one, is left out entirely. The new folder is in the same layout (its own coordinate file,
``photo/`` a link to the original photos), so every command reads it as it reads the published dataset.
Nothing of the data is written anywhere else: keep ``--out`` out of version control (``runs/`` is ignored).

``--train-photos N`` keeps only N of the other photos, those validation takes first (the lowest
``embeddings.train.validation_keys``), so that a smaller training set is measured against the same test
split and, while N is at least twice the validation minimum, the same validation photos.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

import numpy as np

__all__ = ["make_dev_split", "main"]


def make_dev_split(root: str | Path, out: str | Path, variant: str = "ChairV2", test_photos: int = 100,
                   salt: str = "dev", train_photos: int | None = None) -> dict[str, int]:
    """Write the development split of ``root``'s train split into ``out`` (see the module docstring).

    Returns the counts: train/test photos and sketches of the new split.
    """
    from embeddings.train import validation_keys
    from sketch_env.cache import atomic_path
    from sketch_env.datasets.base import stable_fraction
    from sketch_env.datasets.qmul import QMULDataset
    from sketch_env.errors import ArgumentError
    from sketch_env.safe_pickle import safe_load_pickle

    source = QMULDataset(root, variant=variant)
    records = [r for r in source.sketches("train")]
    photos = sorted({r.instance for r in records})
    if not 0 < test_photos < len(photos):
        raise ArgumentError(f"--test-photos must be between 1 and {len(photos) - 1} (the train split has "
                            f"{len(photos)} photos), got {test_photos}")
    held = set(sorted(photos, key=lambda name: (stable_fraction(name, salt), name))[:test_photos])
    rest = [name for name in photos if name not in held]
    if train_photos is not None:
        if not 0 < train_photos <= len(rest):
            raise ArgumentError(f"--train-photos must be between 1 and {len(rest)} (the photos left after the "
                                f"test split), got {train_photos}")
        # those validation takes first stay, so the validation photos are those of the whole split
        order = np.argsort(validation_keys(rest), kind="stable")[:train_photos]
        kept = {rest[i] for i in order}
        records = [r for r in records if r.instance in held or r.instance in kept]
        rest = sorted(kept)
    raw = safe_load_pickle(source.coordinate_path)  # the arrays copied as they are, not re-encoded
    data: dict[str, np.ndarray] = {}
    for r in records:
        split = "test" if r.instance in held else "train"
        data[f"/{split}/{r.instance}_{r.style}"] = raw[f"/train/{r.instance}_{r.style}"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / source.coordinate_path.name) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=4)  # read back with the package's safe unpickler
    link = out / "photo"
    if not link.exists():
        os.symlink(Path(source.photo_dir).resolve(), link, target_is_directory=True)
    test_sketches = sum(r.instance in held for r in records)
    return {"train_photos": len(rest), "train_sketches": len(records) - test_sketches,
            "test_photos": len(held), "test_sketches": test_sketches}


def main(argv: list[str] | None = None) -> int:
    from sketch_env.errors import SketchEnvError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="a QMUL folder (<Variant>_Coordinate and photo/)")
    p.add_argument("--out", required=True, help="the development folder to write")
    p.add_argument("--variant", default="ChairV2", help="ChairV2 | ShoeV2 (default: ChairV2)")
    p.add_argument("--test-photos", type=int, default=100, help="photos of the development test split (100)")
    p.add_argument("--train-photos", type=int, default=None,
                   help="keep only this many of the other photos, validation's first (default: all)")
    args = p.parse_args(argv)
    try:
        counts = make_dev_split(args.root, args.out, args.variant, args.test_photos, train_photos=args.train_photos)
    except SketchEnvError as exc:
        print(f"dev_split: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
