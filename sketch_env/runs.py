"""Run folders: resume a run or refuse it.

A training run (a backend, a meta backend, an RL agent, a sketcher) writes its configuration into its
folder and checkpoints as it goes; started again with the same folder, it resumes, but only if the
configuration is the one it was written with. :func:`check_resume` is that rule, written once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sketch_env.backend import flatten_mapping
from sketch_env.errors import SketchEnvError

__all__ = ["RunConfigError", "check_resume", "plain"]


class RunConfigError(SketchEnvError, ValueError):
    """A run folder holding a run of another configuration."""


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data (what a run folder records; paths and other objects as strings)."""
    return json.loads(json.dumps(obj, default=str))


def check_resume(where: str | Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                 ignore: Iterable[str] = (), defaults: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume ``where`` unless the configuration it was ``saved`` with equals ``current``.

    Both are compared as plain JSON, flattened to dotted keys; keys in ``ignore`` (dotted, e.g.
    ``"config.minutes"``: a budget a resumed run may change) are left out, and a key ``saved`` lacks takes
    its value from ``defaults`` (an option added after the run was written counts as its default, so older
    runs stay resumable). Raises :class:`RunConfigError` naming the folder and the keys that differ.
    """
    ignored = set(ignore)
    have = {k: v for k, v in flatten_mapping(plain(dict(saved or {}))).items() if k not in ignored}
    want = {k: v for k, v in flatten_mapping(plain(dict(current))).items() if k not in ignored}
    for key, value in flatten_mapping(plain(dict(defaults or {}))).items():
        if key not in ignored and key not in have:
            have[key] = value
    if saved is not None and have == want:
        return
    if saved is None:
        detail = "no configuration is recorded"
    else:
        keys = sorted(k for k in set(have) | set(want) if have.get(k, "<missing>") != want.get(k, "<missing>"))
        detail = "; ".join(f"{k}: {have.get(k, '<missing>')!r} there, {want.get(k, '<missing>')!r} now"
                           for k in keys[:5]) + (f"; and {len(keys) - 5} more" if len(keys) > 5 else "")
    raise RunConfigError(f"{where} was written by a different configuration ({detail}); use another --out "
                         "or delete it")
