"""Saving and loading agents without unpickling anything from the file.

An SB3 ``.zip`` holds the weights (``policy.pth``, read by SB3 with ``torch.load(weights_only=True)``) and a
JSON ``data`` file in which every value JSON cannot hold (the spaces, the policy class, schedules, the
rollout-buffer class) is a base64 cloudpickle that ``Algorithm.load`` would unpickle: loading an agent
someone sent you would run whatever it asks. So :func:`save_agent` also stores ``sketch_meta``, a plain-JSON
description of everything those pickles carry, and :func:`load_agent` rebuilds each pickled value from it
and hands them to SB3 as ``custom_objects``, which SB3 uses *instead of* unpickling. A file with a pickled
value that the metadata does not cover is refused.

Saves are atomic: written to a temporary file beside the target and moved into place.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.utils import ConstantSchedule

from agents.algorithms import ALGORITHMS, algorithm_spec
from agents.policy import LinearGaussianPolicy
from sketch_env.cache import atomic_path
from sketch_env.device import resolve_device
from sketch_env.errors import DataFormatError
from sketch_env.limits import MAX_JSON_BYTES, MAX_MEMBER_BYTES, check_file_size, check_zip_member

__all__ = ["save_agent", "load_agent", "read_meta", "AGENT_FORMAT", "PRETRAINED_DIR", "shipped_agents", "resolve_agent"]

AGENT_FORMAT = "sketch-env-agent/1"

#: the agents the package ships (``<name>.zip``, the model card ``<name>.zip.json`` beside each)
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def shipped_agents() -> list[str]:
    """The names of the agents the package ships (``agents/pretrained/<name>.zip``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.zip"))


def resolve_agent(path_or_name: str | Path) -> Path:
    """``path_or_name`` if it is a file; else the shipped agent of that name (e.g. ``kanji-b1-ppo-a-clip-s0``);
    else a FileNotFoundError naming both and the shipped names."""
    path = Path(path_or_name)
    if path.exists():
        return path
    if path.name == str(path_or_name) and path.name in shipped_agents():
        return PRETRAINED_DIR / f"{path.name}.zip"
    raise FileNotFoundError(f"{path}: no such agent file, and no shipped agent of that name "
                            f"(shipped: {', '.join(shipped_agents()) or 'none'})")


def _box_to_json(space: spaces.Box) -> dict[str, Any]:
    return {"shape": list(space.shape), "low": space.low.tolist(), "high": space.high.tolist(),
            "dtype": str(space.dtype)}


def _box_from_json(d: dict[str, Any]) -> spaces.Box:
    dtype = np.dtype(d["dtype"])
    return spaces.Box(np.asarray(d["low"], dtype=dtype), np.asarray(d["high"], dtype=dtype),
                      shape=tuple(d["shape"]), dtype=dtype)


def save_agent(model: Any, path: str | Path, algo: str, env_id: str, env_kwargs: dict[str, Any],
               hyperparams: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (an SB3 algorithm of method ``algo``) with its plain-JSON metadata, atomically."""
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.sketch_meta = {
        "format": AGENT_FORMAT, "algo": algo, "env_id": env_id, "env_kwargs": dict(env_kwargs),
        "hyperparams": json.loads(json.dumps(hyperparams, default=str)),
        "observation_space": _box_to_json(model.observation_space),
        "action_space": _box_to_json(model.action_space),
        "learning_rate": float(model.learning_rate) if np.isscalar(model.learning_rate) else None,
        "clip_range": float(hyperparams.get("clip_range", 0.2)),
        **(extra or {}),
    }
    with atomic_path(path, suffix=".tmp.zip") as tmp:
        # rollout state (last observations, episode buffers) is rebuilt by the next learn(); it is not saved
        model.save(tmp, exclude=["_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer",
                                 "ep_success_buffer"])
    return path


def _json_member(path: Path, z: zipfile.ZipFile, member: str) -> Any:
    """Member ``member`` of the agent zip as JSON: its uncompressed size checked first, UTF-8 only."""
    try:
        info = z.getinfo(member)
    except KeyError:
        raise DataFormatError(path, "not an SB3 agent archive (no 'data' member)") from None
    check_zip_member(path, info, MAX_JSON_BYTES)
    try:
        return json.loads(z.read(member).decode("utf-8"))
    except RecursionError:
        raise DataFormatError(path, "JSON nested too deep", member) from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise DataFormatError(path, f"not UTF-8 JSON ({type(exc).__name__}: {exc})", member) from None


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    """What the metadata may say: a method of this package, one of its env ids, env arguments the env takes
    (nothing that names a module, trains a backend or is not plain JSON), spaces of sane shapes."""
    from embeddings.provision import check_env_kwargs
    from sketch_env.envs.registration import ENV_IDS

    if meta.get("algo") not in ALGORITHMS:
        raise DataFormatError(path, f"unknown RL method {meta.get('algo')!r}; this package has "
                              f"{', '.join(sorted(ALGORITHMS))}", "data/sketch_meta/algo")
    env_id = meta.get("env_id")
    if env_id not in ENV_IDS:  # a "module:Name" id would make gymnasium import that module
        raise DataFormatError(path, f"env id {env_id!r} is not one of this package's ({', '.join(ENV_IDS)})",
                              "data/sketch_meta/env_id")
    try:
        check_env_kwargs(meta.get("env_kwargs"), from_file=True)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(path, str(exc), "data/sketch_meta/env_kwargs") from None
    for key in ("observation_space", "action_space"):
        box = meta.get(key)
        ok = (isinstance(box, dict) and isinstance(box.get("shape"), list) and len(box["shape"]) == 1
              and type(box["shape"][0]) is int and 1 <= box["shape"][0] <= 1 << 16
              and box.get("dtype") in ("float32", "float64"))
        if not ok:
            raise DataFormatError(path, "must be a 1-d float Box of at most 65,536 dimensions",
                                  f"data/sketch_meta/{key}")


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``sketch_meta`` of a saved agent (plain JSON; nothing is unpickled), checked (:func:`_check_meta`)."""
    path = resolve_agent(path)
    check_file_size(path)
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():  # SB3 inflates the weights members whole: their sizes checked first
                check_zip_member(path, info, MAX_MEMBER_BYTES)
            data = _json_member(path, z, "data")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataFormatError(path, f"not an SB3 agent archive ({e})") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, "its 'data' is not a JSON object", "data")
    meta = data.get("sketch_meta")
    if not isinstance(meta, dict) or meta.get("format") != AGENT_FORMAT:
        raise DataFormatError(path, "has no sketch-env metadata (not saved by agents.io.save_agent); refusing to "
                              "unpickle its contents", item="data/sketch_meta")
    _check_meta(path, meta)
    return meta | {"_serialized": sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v)}


def load_agent(path: str | Path, env: Any = None, device: str = "cpu") -> Any:
    """Load an agent saved by :func:`save_agent`; its pickled values are rebuilt from the metadata, its weights
    read by SB3 with ``torch.load(weights_only=True)``. Any failure is a :class:`DataFormatError` naming the
    file. ``path`` may name a shipped agent (:func:`resolve_agent`)."""
    path = resolve_agent(path)
    meta = read_meta(path)
    cls, _, _ = algorithm_spec(meta["algo"])
    lr = meta.get("learning_rate") or 3e-4
    try:
        rebuild = {
            "policy_class": LinearGaussianPolicy,
            "observation_space": _box_from_json(meta["observation_space"]),
            "action_space": _box_from_json(meta["action_space"]),
            "lr_schedule": ConstantSchedule(lr),
            "clip_range": meta["clip_range"],
            "rollout_buffer_class": RolloutBuffer,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(path, f"malformed spaces or schedule ({type(exc).__name__}: {exc})",
                              "data/sketch_meta") from None
    unknown = [k for k in meta["_serialized"] if k not in rebuild]
    if unknown:
        raise DataFormatError(path, f"holds pickled values {unknown} that sketch-env does not rebuild; refusing to "
                              "unpickle them", item="data")
    try:
        return cls.load(path, env=env, device=str(resolve_device(device)),
                        custom_objects={k: rebuild[k] for k in meta["_serialized"]})
    except DataFormatError:
        raise
    except Exception as exc:  # torch's UnpicklingError for foreign weights, mis-shaped tensors, a bad member
        raise DataFormatError(path, f"cannot load the agent ({type(exc).__name__}: {exc})") from exc
