"""The ``sketch-env data`` commands, and what every command group of ``sketch-env`` shares.

``sketch-env data info NAME [--root PATH] [--scheme S]``   counts per split
``sketch-env data show NAME [--root PATH] --out FILE.png``   contact sheet of progressive sketches

Each layer adds its own command group (this module's :func:`add_commands`, then :mod:`embeddings.cli`,
then :mod:`agents.cli`); the ``sketch-env`` program is assembled at the top, in :func:`agents.cli.main`, so
no layer reaches up for the commands of another. :func:`run_command` is the one place a command's error
becomes one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sketch_env.errors import SketchEnvError

__all__ = ["add_commands", "run_command"]


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset name (kanji, synthetic, qmul, shoev2, chairv2, sketchy, quickdraw)")
    p.add_argument("--root", default=None, help="data folder, for the datasets read from your disk")
    p.add_argument("--scheme", default=None, help="split scheme (kanji: instance, category, style)")


def _cmd_data_info(args: argparse.Namespace) -> int:
    from sketch_env.datasets import make_dataset

    dataset = make_dataset(args.name, root=args.root, **({"scheme": args.scheme} if args.scheme else {}))
    schemes = dataset.schemes if args.scheme is None else (args.scheme,)
    print(f"dataset {args.name}" + (f" (root {args.root})" if args.root else ""))
    cols = ["sketches", "photos", "categories", "styles", "strokes_median", "points_median"]
    print("| scheme | split | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 2))
    for scheme in schemes:
        ds = dataset if scheme == dataset.scheme else make_dataset(args.name, root=args.root, scheme=scheme)
        for split, row in ds.info().items():
            cells = [f"{row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
            print(f"| {scheme} | {split} | " + " | ".join(cells) + " |")
    return 0


def _cmd_data_show(args: argparse.Namespace) -> int:
    from sketch_env.datasets import make_dataset
    from sketch_env.schedule import make_schedule
    from sketch_env.viz import contact_sheet, write_png

    dataset = make_dataset(args.name, root=args.root, **({"scheme": args.scheme} if args.scheme else {}))
    sheet = contact_sheet(
        dataset, split=args.split, rows=args.rows, schedule=make_schedule(args.schedule, args.steps),
        size=args.size, seed=args.seed,
    )
    path = write_png(args.out, sheet)
    print(f"wrote {path} ({sheet.shape[1]}x{sheet.shape[0]} px, {args.rows} sketches of the {args.split} split)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``data`` command group."""
    data_parser = sub.add_parser("data", help="datasets: counts and contact sheets")
    data = data_parser.add_subparsers(dest="data_cmd", required=True)
    info = data.add_parser("info", help="print counts per split")
    _add_dataset_args(info)
    info.set_defaults(func=_cmd_data_info)
    show = data.add_parser("show", help="write a contact sheet of progressive sketches beside their photos")
    _add_dataset_args(show)
    show.add_argument("--out", required=True, help="output PNG file")
    show.add_argument("--split", default="test", choices=("train", "test"))
    show.add_argument("--rows", type=int, default=8, help="number of sketches (rows)")
    show.add_argument("--steps", type=int, default=10, help="partial sketches per row")
    show.add_argument("--schedule", default="points", choices=("points", "strokes"))
    show.add_argument("--size", type=int, default=96, help="raster side in pixels")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=_cmd_data_show)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; a user error is one line on stderr and exit code 2."""
    from sketch_env.log import configure_logging

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for records of the run
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    try:
        return int(args.func(args) or 0)
    except (SketchEnvError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"sketch-env: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return 2
