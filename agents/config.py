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
import inspect
import math
from pathlib import Path
from typing import Any

import yaml

from agents.algorithms import ALGORITHMS
from sketch_env.config import ConfigError, parse_key_value
from sketch_env.errors import ArgumentError, DataFormatError
from sketch_env.limits import MAX_JSON_BYTES, read_bytes_bounded

__all__ = ["HYPERPARAMS_DIR", "load_hyperparams", "parse_override", "check_hyperparams", "check_rl_target"]

#: keys of a hyper-parameter block that are not constructor arguments (module docstring), with their types
EXTRA_KEYS = {"n_envs": int, "n_timesteps": int}
#: the policy's keyword arguments and their types
POLICY_KEYS = {"critic": bool, "critic_arch": list, "critic_lr": float, "log_std_init": float, "obs_scale": float,
               "init_from_backend": bool, "net_arch": list, "activation_fn": str, "ortho_init": bool}

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"


def load_hyperparams(algo: str, env_id: str, overrides: dict[str, Any] | None = None,
                     path: str | Path | None = None) -> dict[str, Any]:
    """The hyper-parameters of ``algo`` on ``env_id`` (the id's block, else ``default``), with ``overrides``
    merged on top (``policy_kwargs`` merged key by key)."""
    if algo not in ALGORITHMS:
        raise ArgumentError(f"unknown RL method {algo!r}; choose one of {sorted(ALGORITHMS)}")
    file = Path(path) if path is not None else HYPERPARAMS_DIR / f"{algo}.yml"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no hyper-parameter file for method {algo!r}")
    try:
        table = yaml.safe_load(read_bytes_bounded(file, MAX_JSON_BYTES).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise DataFormatError(file, f"not valid YAML ({e})") from None
    if not isinstance(table, dict) or "default" not in table:
        raise DataFormatError(file, "expected a mapping of env ids with a 'default' block")
    block = env_id if env_id in table else "default"
    params = copy.deepcopy(table[block])
    if not isinstance(params, dict):
        raise DataFormatError(file, f"must map each hyper-parameter to its value, got {type(params).__name__}",
                              block)
    if "policy_kwargs" in params and not isinstance(params["policy_kwargs"], dict):
        raise DataFormatError(file, "policy_kwargs must be a mapping", f"{block}/policy_kwargs")
    for key, value in (overrides or {}).items():
        if key == "policy_kwargs" and isinstance(value, dict):
            params.setdefault("policy_kwargs", {}).update(value)
        else:
            params[key] = value
    check_hyperparams(algo, params)
    return params


def _type_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def check_hyperparams(algo: str, params: dict[str, Any]) -> None:
    """Every key of ``params`` is a constructor argument of ``algo``'s class (typed like its default), an
    extra key (:data:`EXTRA_KEYS`) or ``policy_kwargs`` (:data:`POLICY_KEYS`); counts are positive."""
    cls, fixed, _ = ALGORITHMS[algo]
    signature = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            for name, prm in inspect.signature(init).parameters.items():
                if name not in ("self", "policy", "env") and prm.kind not in (prm.VAR_KEYWORD, prm.VAR_POSITIONAL):
                    signature.setdefault(name, prm.default)
    problems = []
    for key, value in params.items():
        if key == "policy_kwargs":
            if not isinstance(value, dict):
                problems.append(f"policy_kwargs must be a mapping, got {value!r}")
                continue
            for pk, pv in value.items():
                if pk not in POLICY_KEYS:
                    problems.append(f"unknown policy_kwargs key {pk!r} (known: {', '.join(sorted(POLICY_KEYS))})")
                elif pv is not None and not _type_ok(pv, POLICY_KEYS[pk]):
                    problems.append(f"policy_kwargs.{pk} must be {POLICY_KEYS[pk].__name__}, got {pv!r}")
            continue
        if key in fixed:
            problems.append(f"{key} is fixed by the method {algo!r}")
            continue
        kind = EXTRA_KEYS.get(key)
        if kind is None:
            if key not in signature:
                known = sorted((set(signature) - set(fixed)) | set(EXTRA_KEYS) | {"policy_kwargs"})
                problems.append(f"unknown hyper-parameter {key!r} for {algo}; known: {', '.join(known)}")
                continue
            default = signature[key]
            kind = type(default) if isinstance(default, (bool, int, float)) else None
            if kind is int and isinstance(value, float):  # an int default also takes a whole float (1e6)
                kind = float if value.is_integer() else int
        if kind is not None and not _type_ok(value, kind):
            problems.append(f"{key} must be {kind.__name__}, got {value!r}")
        elif kind in (int, float) and key in ("n_steps", "batch_size", "n_epochs", "n_envs", "n_timesteps") \
                and value < 1:
            problems.append(f"{key} must be >= 1, got {value!r}")
    if problems:
        raise ConfigError(f"hyper-parameters of {algo}: " + "; ".join(problems))


def check_rl_target(algo: str, env_id: str, env_kwargs: dict[str, Any], overrides: dict[str, Any]) -> None:
    """What an RL training names, checked before any work: a method of this package, one of its env ids,
    arguments that env takes, hyper-parameters the method takes."""
    from embeddings.provision import check_env_kwargs
    from sketch_env.envs.registration import ENV_IDS

    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown RL method {algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    if env_id not in ENV_IDS:
        raise ConfigError(f"unknown env id {env_id!r}; this package registers {', '.join(ENV_IDS)}")
    try:
        check_env_kwargs(env_kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    load_hyperparams(algo, env_id, overrides)


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML: :func:`sketch_env.config.parse_key_value`."""
    return parse_key_value(text)
