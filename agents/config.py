"""Hyper-parameters per method and env id, RL Zoo style: ``agents/hyperparams/<method>.yml``.

Each file maps env ids to a block of keyword arguments (``default`` for any id without its own block).
Keys that are not constructor arguments of the algorithm:

* ``n_envs``: episodes run in parallel by the native vector env;
* ``n_timesteps``: the default training length in env steps;
* ``policy_kwargs.init_from_backend``: start the mean layer from the backend's own query layer
  (``action="direct"``) or from zero (``action="residual"``), so training starts from the frozen model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from agents.algorithms import ALGORITHMS

__all__ = ["HYPERPARAMS_DIR", "load_hyperparams", "parse_override"]

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"


def load_hyperparams(algo: str, env_id: str, overrides: dict[str, Any] | None = None,
                     path: str | Path | None = None) -> dict[str, Any]:
    """The hyper-parameters of ``algo`` on ``env_id`` (the id's block, else ``default``), with ``overrides``
    merged on top (``policy_kwargs`` merged key by key)."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown RL method {algo!r}; choose one of {sorted(ALGORITHMS)}")
    file = Path(path) if path is not None else HYPERPARAMS_DIR / f"{algo}.yml"
    try:
        table = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: no hyper-parameter file for method {algo!r}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{file}: not valid YAML ({e})") from None
    if not isinstance(table, dict) or "default" not in table:
        raise ValueError(f"{file}: expected a mapping of env ids with a 'default' block")
    params = copy.deepcopy(table.get(env_id, table["default"]))
    for key, value in (overrides or {}).items():
        if key == "policy_kwargs" and isinstance(value, dict):
            params.setdefault("policy_kwargs", {}).update(value)
        else:
            params[key] = value
    return params


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (``lr=1e-4``, ``policy_kwargs={log_std_init: -1}``)."""
    if "=" not in text:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    key, _, value = text.partition("=")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed
