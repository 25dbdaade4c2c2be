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

__all__ = ["ConfigError", "check_config", "field_docs", "add_config_arguments", "config_from_args", "parse_key_value"]


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


# ------------------------------------------------------------------ command-line flags from a dataclass


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (the string literal that follows it), by name."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _flag_type(annotation: str):
    kinds = [k for k in _allowed(annotation) if k is not type(None)]
    kind = kinds[0] if len(kinds) == 1 else str
    return kind if kind in (int, float, str) else None


def add_config_arguments(parser: Any, cls: type, skip: tuple[str, ...] = (),
                         help_for: Mapping[str, str] | None = None) -> None:
    """One flag per field of dataclass ``cls`` (``--gradient-steps`` for ``gradient_steps``): its type and
    default from the field, its help from the field's docstring (and ``help_for``), the default shown. A bool
    field gives ``--name/--no-name``; mapping and list fields are skipped (give them their own flags)."""
    import argparse

    docs = field_docs(cls) | dict(help_for or {})
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "Any")
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + f.name.replace("_", "-")
        doc = docs.get(f.name, "")
        shown = f" (default: {default})" if default not in (None, "") else (" (default: none)" if "None" in annotation
                                                                           else "")
        if _allowed(annotation)[0] is bool:
            parser.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction,
                                help=doc + shown)
            continue
        kind = _flag_type(annotation)
        if kind is None:
            continue
        parser.add_argument(flag, dest=f.name, type=_parse_optional(kind) if "None" in annotation else kind,
                            default=default, metavar=f.name.upper(), help=doc + shown)


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def config_from_args(cls: type, args: Any, **extra: Any) -> Any:
    """An instance of ``cls`` from the parsed flags of :func:`add_config_arguments` (and ``extra``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**(values | extra))


def parse_key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (``lr=1e-4``, ``policy_kwargs={log_std_init: -1}``,
    ``channels=[8, 16]``, ``photo_preprocess=edges``): the one override syntax of every ``sketch-env`` flag
    that takes keys (``--hp``, ``--env-kwarg``, ``--option``). A YAML tag cannot build an object."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"expected KEY=VALUE (VALUE read as YAML), got {text!r}")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value)  # safe_load: a YAML tag cannot build a Python object
    except (yaml.YAMLError, RecursionError) as e:
        why = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{key.strip()}: {value!r} is not a plain YAML value ({why})") from None
    if isinstance(parsed, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed
