"""Embedding backends by name: the registry, checkpoints, and the interface re-exported.

The interface itself, :class:`~sketch_env.backend.EmbeddingBackend`, lives in :mod:`sketch_env.backend`
(the environments consume it); this module holds what only the embedding layer needs: the registry of
concrete backends (:func:`make_backend`, :func:`register_backend`, :func:`backend_names`) and checkpoint
loading (:func:`load_backend`). Checkpoints are one ``.pt`` file holding plain data (the configuration,
the dataset split the model was trained on) and tensors, loaded with ``torch.load(..., weights_only=True)``.
Backends are built by name, so env specs stay plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sketch_env.backend import CHECKPOINT_FORMAT, EmbeddingBackend, flatten_mapping
from sketch_env.errors import SketchEnvError
from sketch_env.limits import load_torch_file
from sketch_env.metrics import euclidean_distance, l2_normalise
from sketch_env.registry import resolve_factory

__all__ = [
    "EmbeddingBackend",
    "BackendMismatchError",
    "euclidean_distance",
    "l2_normalise",
    "make_backend",
    "load_backend",
    "register_backend",
    "backend_names",
    "training_command",
    "CHECKPOINT_FORMAT",
]


class BackendMismatchError(SketchEnvError, ValueError):
    """A checkpoint whose configuration differs from what was asked for."""


# -- registry ---------------------------------------------------------------------------------------
_REGISTRY: dict[str, str | Callable[..., EmbeddingBackend]] = {
    "ts": "embeddings.triplet:make_ts",
    "b1": "embeddings.triplet:make_b1",
    "b2": "embeddings.triplet:make_b2",
    "b3": "embeddings.triplet:make_b3",
    "meta": "embeddings.meta:make_meta",
    "cvae": "embeddings.cvae:make_cvae",
    "caae": "embeddings.cvae:make_caae",
}


#: how each backend is trained, for messages that name the command (``{dataset}``, ``{scheme}``, ``{root}``
#: and ``{flags}`` are filled in); backends missing here train with ``sketch-env embed train``
_TRAIN_COMMANDS: dict[str, str] = {
    "b3": "sketch-env embed train --backend b3 --dataset {dataset} --scheme {scheme}{root} "
          "--option init_from='\"<b1 run>/backend.pt\"'",
    "meta": "sketch-env embed meta-train --dataset {dataset} --scheme {scheme}{root} --init-from <b1 run>/backend.pt",
    "cvae": "sketch-env embed train-zs --backend cvae --backbone <backbone.pt trained on {scheme}>",
    "caae": "sketch-env embed train-zs --backend caae --backbone <backbone.pt trained on {scheme}>",
}
_DEFAULT_TRAIN_COMMAND = "sketch-env embed train --backend {name} --dataset {dataset} --scheme {scheme}{root} {flags}"


def register_backend(name: str, factory: str | Callable[..., EmbeddingBackend],
                     train_command: str | None = None) -> None:
    """Register a backend factory (callable or ``"module:attr"``) taking a config dict's keywords;
    ``train_command`` is the command that trains it (a template, see :func:`training_command`), if it is not
    ``sketch-env embed train --backend NAME``."""
    _REGISTRY[name.lower()] = factory
    if train_command is not None:
        _TRAIN_COMMANDS[name.lower()] = train_command


def training_command(name: str, dataset: str, scheme: str, root: str | None = None, flags: str = "") -> str:
    """The command that trains backend ``name`` on ``dataset`` / ``scheme`` (for error messages)."""
    template = _TRAIN_COMMANDS.get(name.lower(), _DEFAULT_TRAIN_COMMAND)
    return template.format(name=name.lower(), dataset=dataset, scheme=scheme,
                           root=f" --root {root}" if root else "", flags=flags).strip()


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def _factory(name: str) -> Callable[..., EmbeddingBackend]:
    return resolve_factory(_REGISTRY, name, "backend")


def make_backend(name: str, **config: Any) -> EmbeddingBackend:
    """A new (untrained) backend by name; keywords override its default configuration."""
    return _factory(name)(**config)


def load_backend(path: str | Path, expect: Mapping[str, Any] | None = None, device: str = "cpu") -> EmbeddingBackend:
    """Load a checkpoint; with ``expect``, every given key (dotted for nested, e.g. ``"render.size"``)
    must equal the checkpoint's configuration, else :class:`BackendMismatchError` lists the differences.

    The file is read with ``torch.load(weights_only=True)`` (no code runs) and checked before use: any file
    that is not a checkpoint of this package (unreadable, another format, a missing or malformed
    configuration, weights of other shapes) is a :class:`BackendMismatchError` naming the file.
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no backend checkpoint at {path}")
    try:
        payload = load_torch_file(path)  # bounded: the file's size, torch's zip format, its members
    except Exception as exc:
        raise BackendMismatchError(f"{path}: not a readable backend checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BackendMismatchError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    config, name, state = payload.get("config"), payload.get("backend"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(name, str) or not isinstance(state, dict):
        raise BackendMismatchError(f"{path}: a checkpoint needs a 'backend' name, a 'config' mapping and a "
                                   "'state_dict' mapping")
    if expect:
        flat = flatten_mapping(config)
        diffs = []
        for key, want in flatten_mapping(dict(expect)).items():
            have = flat.get(key, "<missing>")
            if have != want:
                diffs.append(f"{key}: checkpoint has {have!r}, asked for {want!r}")
        if diffs:
            raise BackendMismatchError(f"{path}: configuration does not match: " + "; ".join(diffs))
    try:
        factory = _factory(name)
    except ValueError as exc:
        raise BackendMismatchError(f"{path}: {exc}") from None
    try:
        backend = factory(**config)
        backend.load_state_dict(state)
    except (SketchEnvError, ValueError, TypeError, KeyError, RuntimeError, AttributeError, IndexError) as exc:
        # a configuration this version cannot build, or weights of other names or shapes
        raise BackendMismatchError(f"{path}: the checkpoint's configuration or weights do not build a "
                                   f"{name!r} backend ({type(exc).__name__}: {exc})") from exc
    return backend.to(device)
