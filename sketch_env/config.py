"""Checking run configurations (the dataclasses behind every command) before any work starts.

Every training configuration (:class:`embeddings.train.TrainConfig`, :class:`agents.train.RLTrainConfig`,
...) calls :func:`check_config` in ``__post_init__``: each field's value must have the type its annotation
names (a bool is not a number, a string is not a count) and lie in the range the configuration declares,
so ``--epochs -1`` or ``batch_size=0`` fail at once with a message naming the option, not after minutes of
work or silently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from sketch_env.errors import ConfigError

__all__ = ["ConfigError", "check_config"]


_KINDS = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list, "None": type(None),
          "Any": object}


def _allowed(annotation: str) -> list[type]:
    kinds = []
    for part in annotation.replace(" ", "").split("|"):
        base = part.split("[", 1)[0].rsplit(".", 1)[-1]
        kinds.append(_KINDS.get(base, object))
    return kinds


def _fits(value: Any, kinds: list[type]) -> bool:
    for kind in kinds:
        if kind is object:
            return True
        if kind is bool:
            if isinstance(value, bool):
                return True
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return True
        elif isinstance(value, kind):
            return True
    return False


def check_config(config: Any, ranges: Mapping[str, tuple[float | None, float | None]] | None = None) -> None:
    """Check every field of dataclass ``config`` against its annotation, and the numeric ones named in
    ``ranges`` against ``(low, high)`` (inclusive; None: unbounded). Raises :class:`ConfigError` listing
    every problem."""
    problems = []
    name = type(config).__name__
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "Any")
        kinds = _allowed(annotation)
        if not _fits(value, kinds):
            problems.append(f"{field.name} must be {annotation.replace('|', 'or')}, got {value!r}")
            continue
        low, high = (ranges or {}).get(field.name, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
                problems.append(f"{field.name} must lie in {bounds}, got {value!r}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))
