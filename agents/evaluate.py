"""Evaluating a trained agent on the test split (``sketch-env evaluate``).

Every test sketch is played once, in order, with the policy's mean action (``deterministic=True``, the
default) or a sampled one; the ranks of all (sketch, step) pairs give m@A, m@B and A@1/5/10 (definitions
in :mod:`sketch_env.metrics`) and the ranking-percentile and 1/rank curves against the % of the sketch
drawn. The frozen backend (the env's ``action="residual"`` with a zero action, i.e. its own query) is
scored on the same episodes and drawn on the same plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.envs import evaluate_agent_ranks, frozen_backend_ranks
from agents.io import PRETRAINED_DIR, load_agent, read_meta, resolve_agent
from embeddings.evaluate import episode_rows, format_table, plot_curves, write_curves_csv, write_episodes_csv
from sketch_env.cache import data_dir, write_text
from sketch_env.metrics import retrieval_curves, summarise

__all__ = ["evaluate_model", "COLUMNS"]

COLUMNS = ("gallery_size", "A@1", "A@5", "A@10", "m@A", "m@B")


def evaluate_model(path: str | Path, split: str = "test", deterministic: bool = True, env_device: str = "cpu",
                   out: str | Path | None = None, label: str | None = None, seed: int = 0,
                   with_frozen: bool = True) -> dict[str, Any]:
    """Score the agent saved at ``path`` (and the frozen backend) on ``split``; write the table and curves.

    Returns ``{label: summarise(...) row with "curves" and "ranks"}``; files: ``metrics.md``, ``curves.csv``,
    ``curves.png`` (and ``.pdf``, ``.svg``), ``episodes.csv`` (one row per sketch and method) in
    ``out`` (default: beside the model, ``eval-<split>/``; for a shipped agent, named
    instead of a path, the per-user data folder's ``evaluations/<name>-<split>/``).
    """
    path = resolve_agent(path)
    if out is None and path.parent == PRETRAINED_DIR:  # never write into the installed package
        out = data_dir("evaluations") / f"{path.stem}-{split}"
    meta = read_meta(path)
    model = load_agent(path, device="cpu")
    env_id, env_kwargs = meta["env_id"], dict(meta["env_kwargs"])
    label = label or f"RL ({meta['algo']})"
    rows: dict[str, Any] = {}
    if with_frozen:
        ranks, gallery = frozen_backend_ranks(env_id, env_kwargs, split=split)
        rows["frozen backend"] = summarise(ranks, gallery) | {"curves": retrieval_curves(ranks, gallery),
                                                               "ranks": ranks}
    ranks, gallery = evaluate_agent_ranks(model, env_id, env_kwargs, split=split, env_device=env_device,
                                          deterministic=deterministic, seed=seed)
    rows[label] = summarise(ranks, gallery) | {"curves": retrieval_curves(ranks, gallery), "ranks": ranks}
    out = Path(out) if out is not None else path.parent / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    curves = {name: row["curves"] for name, row in rows.items()}
    plot_curves(curves, out / "curves.png", title=f"{env_id} {split} ({'mean' if deterministic else 'sampled'} action)")
    write_curves_csv(curves, out / "curves.csv")
    episodes = [e for name, row in rows.items() for e in episode_rows(name, seed, row["ranks"], row["gallery_size"])]
    write_episodes_csv(episodes, out / "episodes.csv")
    table = format_table(rows, columns=COLUMNS)
    write_text(out / "metrics.md", table + "\n")
    return rows
