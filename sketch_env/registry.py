"""Name -> factory lookups shared by the dataset and backend registries.

Factories are stored as callables or as ``"module:attr"`` strings imported on first use, so that naming
one entry never imports the others (e.g. torch is not loaded to read a dataset).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from sketch_env.errors import ArgumentError

__all__ = ["resolve_factory"]


def resolve_factory(registry: Mapping[str, str | Callable[..., Any]], name: str, kind: str) -> Callable[..., Any]:
    """The factory registered under ``name`` (case-insensitive), importing ``"module:attr"`` entries.

    Raises ``ValueError`` listing the known names when there is none; ``kind`` names the registry.
    """
    key = name.lower()
    if key not in registry:
        raise ArgumentError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    factory = registry[key]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory
