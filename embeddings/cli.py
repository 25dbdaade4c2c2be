"""``sketch-env embed train|cache|eval|train-zs|meta-train``: the embedding half of the command line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_commands"]


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from embeddings.configs import TrainConfig
    from sketch_env.config import add_config_arguments

    add_config_arguments(p, TrainConfig, help_for={
        "device": "auto (CUDA when present) | cpu | cuda", "precision": "fp32 | bf16 | auto",
        "root": "data folder, for the datasets read from your disk",
        "out": "run folder (default <data>/backends/<dataset>-<scheme>/<backend>-s<seed>, where backend names are "
               "looked up; <data> = $SKETCH_ENV_DATA or the per-user data folder)"})
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, VALUE read as YAML: --option loss=holef --option models=5 "
                        "--option photo_preprocess=edges --option 'channels=[48, 96, 192, 192]'")


def parse_options(items: list[str]) -> dict:
    """``--option KEY=VALUE`` values (VALUE read as YAML, :func:`sketch_env.config.parse_key_value`) as a dict."""
    from sketch_env.config import parse_key_value

    return dict(parse_key_value(item) for item in items)


def _train_config(args: argparse.Namespace):
    from embeddings.configs import TrainConfig
    from sketch_env.config import config_from_args

    return config_from_args(TrainConfig, args, backend_options=parse_options(args.option))


def _cmd_train(args: argparse.Namespace) -> int:
    from embeddings.train import train_backend

    cfg = _train_config(args)
    t0 = time.perf_counter()
    path = train_backend(cfg)
    print(f"backend checkpoint: {path} ({time.perf_counter() - t0:.0f} s in this call)")
    return 0


def _open_store(args: argparse.Namespace, split: str):
    from embeddings.store import open_backend_store

    return open_backend_store(args.checkpoint, split, steps=args.steps, dataset=args.dataset, root=args.root,
                              scheme=args.scheme, device=args.device, batch_size=args.batch_size,
                              flip_average=args.flip_average)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="backend.pt written by `sketch-env embed train`")
    p.add_argument("--dataset", default=None, help="default: the dataset the backend was trained on")
    p.add_argument("--root", default=None)
    p.add_argument("--scheme", default=None)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64, help="sketches rendered and embedded per batch")
    p.add_argument("--device", default="auto")
    p.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time mirror averaging on or off (default: as the checkpoint records)")


def _cmd_cache(args: argparse.Namespace) -> int:
    _, _, store = _open_store(args, args.split)
    m = store.meta
    print(f"feature store {store.path}: {m['n']} sketches x {m['S']} steps, F={m['F']}, d={m['d']}, "
          f"{m['P']} photos")
    return 0


def evaluate_checkpoint(args: argparse.Namespace, name: str | None = None) -> dict:
    """Evaluate a backend on a split (and, with ``--distractors``, a gallery grown by the train photos)."""
    from embeddings.evaluate import (
        episode_rows,
        evaluate_store,
        format_table,
        plot_curves,
        write_curves_csv,
        write_episodes_csv,
    )
    from sketch_env.cache import write_text

    backend, dataset, store = _open_store(args, args.split)
    label = name or backend.name.upper()
    rows, curves = {}, {}
    result = evaluate_store(store)
    rows[label] = result
    curves[label] = result["curves"]
    if args.distractors:
        other = "train" if args.split == "test" else "test"
        from embeddings.store import gallery_embeddings

        hard = evaluate_store(store, distractors=gallery_embeddings(backend, dataset, other))
        rows[f"{label} (+{other} photos)"] = hard
        curves[f"{label} (+{other} photos)"] = hard["curves"]
    # an evaluation with mirror averaging switched keeps its own default folder beside the checkpoint's own
    switched = "" if args.flip_average is None else ("-flip-average" if args.flip_average else "-no-flip-average")
    out = Path(args.out or Path(args.checkpoint).parent / f"eval-{args.split}{switched}")
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, out / "curves.png", title=f"{dataset.name} {dataset.scheme} {args.split}")
    write_curves_csv(curves, out / "curves.csv")
    episodes = [e for name, row in rows.items() for e in episode_rows(name, 0, row["ranks"], row["gallery_size"])]
    write_episodes_csv(episodes, out / "episodes.csv")
    table = format_table(rows, columns=("gallery_size", "A@1", "A@5", "A@10", "m@A", "m@B"))
    write_text(out / "metrics.md", table + "\n")
    print(table)
    print(f"plot: {out / 'curves.png'}  curves: {out / 'curves.csv'}")
    return rows


def _cmd_eval(args: argparse.Namespace) -> int:
    evaluate_checkpoint(args)
    return 0


def _cmd_train_zs(args: argparse.Namespace) -> int:
    """Train a zero-shot generative backend (cvae / caae) on a frozen backbone's features."""
    from embeddings.zero_shot import ZeroShotTrainConfig, train_zero_shot

    options = parse_options(args.option)
    cfg = ZeroShotTrainConfig(backend=args.backend, backbone=args.backbone, root=args.root, out=args.out,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              device=args.device, steps=args.steps, progress=not args.no_progress,
                              threads=args.threads, backend_options=options)
    t0 = time.perf_counter()
    path = train_zero_shot(cfg)
    print(f"{args.backend} checkpoint: {path} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _meta_config(args: argparse.Namespace):
    from embeddings.configs import MetaTrainConfig

    options = parse_options(args.option)
    return MetaTrainConfig(dataset=args.dataset, root=args.root, scheme=args.scheme, out=args.out,
                           init_from=args.init_from, minutes=args.minutes, outer_steps=args.outer_steps,
                           meta_batch=args.meta_batch, shots=args.shots, queries=args.queries, gallery=args.gallery,
                           lr=args.lr, seed=args.seed, device=args.device, progress=not args.no_progress,
                           backend_options=options)


def _cmd_meta_train(args: argparse.Namespace) -> int:
    from embeddings.meta_train import train_meta

    path = train_meta(_meta_config(args))
    print(f"meta backend: {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    embed = sub.add_parser("embed", help="embedding backends: train, cache features, evaluate")
    esub = embed.add_subparsers(dest="embed_cmd", required=True)
    train = esub.add_parser("train", help="train a backend (checkpoint every epoch; resumes from its run folder)")
    _add_train_args(train)
    train.set_defaults(func=_cmd_train, configs=lambda a: [_train_config(a)])
    cache = esub.add_parser("cache", help="compute and store features of every (sketch, step) and the gallery")
    _add_store_args(cache)
    cache.set_defaults(func=_cmd_cache)
    ev = esub.add_parser("eval", help="A@1/5/10, m@A, m@B of the frozen backend, with a plot")
    _add_store_args(ev)
    ev.add_argument("--distractors", action="store_true", help="also rank against a gallery grown by the other split")
    ev.add_argument("--out", default=None, help="folder for curves.png / curves.csv / metrics.md")
    ev.set_defaults(func=_cmd_eval)
    zs = esub.add_parser("train-zs", help="train a zero-shot backend (cvae | caae) on a frozen backbone's features")
    zs.add_argument("--backend", default="cvae", choices=("cvae", "caae"))
    zs.add_argument("--backbone", required=True,
                    help="frozen backbone checkpoint, trained on a category scheme (e.g. kanji --scheme category)")
    zs.add_argument("--root", default=None, help="data folder for datasets read from disk")
    zs.add_argument("--out", default=None, help="run folder (default beside the backbone's)")
    zs.add_argument("--epochs", type=int, default=25)
    zs.add_argument("--batch-size", type=int, default=128)
    zs.add_argument("--lr", type=float, default=2e-4)
    zs.add_argument("--seed", type=int, default=0)
    zs.add_argument("--device", default="auto")
    zs.add_argument("--steps", type=int, default=1, help="1: complete sketches (the paper); S: every step of S")
    zs.add_argument("--no-progress", action="store_true")
    zs.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    zs.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="backend option, e.g. --option samples=50 --option regression_weight=0")
    zs.set_defaults(func=_cmd_train_zs)

    meta = esub.add_parser("meta-train", help="meta-train the meta backend (Adaptive FG-SBIR) on a category or "
                                              "style split (checkpoints; resumes from its run folder)")
    from embeddings.configs import MetaTrainConfig

    md = MetaTrainConfig()
    meta.add_argument("--dataset", default=md.dataset)
    meta.add_argument("--root", default=None, help="data folder for datasets read from disk")
    meta.add_argument("--scheme", default=md.scheme, help="category (unseen categories) or style (unseen style)")
    meta.add_argument("--out", default=None,
                      help="run folder (default <data>/backends/<dataset>-<scheme>/meta-s<seed>)")
    meta.add_argument("--init-from", default=None, help="a trained triplet backend.pt (e.g. B1 on the same split)")
    meta.add_argument("--minutes", type=float, default=md.minutes,
                      help="an optional cap on the training time (a run it cuts short says so)")
    meta.add_argument("--outer-steps", type=int, default=md.outer_steps,
                      help=f"outer (meta) updates: the run's length (default: {md.outer_steps})")
    meta.add_argument("--meta-batch", type=int, default=md.meta_batch, help="tasks per outer step")
    meta.add_argument("--shots", type=int, default=md.shots, help="support pairs per training task")
    meta.add_argument("--queries", type=int, default=md.queries, help="query pairs per training task")
    meta.add_argument("--gallery", type=int, default=md.gallery, help="photos per training task")
    meta.add_argument("--lr", type=float, default=md.lr)
    meta.add_argument("--seed", type=int, default=md.seed)
    meta.add_argument("--device", default="auto")
    meta.add_argument("--no-progress", action="store_true")
    meta.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="meta backend option, e.g. --option inner='\"all\"' (MAML) --option margin_net=false "
                           "--option domain_weight=0 --option first_order=true")
    meta.set_defaults(func=_cmd_meta_train, configs=lambda a: [_meta_config(a)])
