"""The on-the-fly retrieval environments (Gymnasium): single, natively batched, and an SB3 adapter.

``import sketch_env`` registers the ids (:mod:`sketch_env.envs.registration`); then::

    env = gymnasium.make("SketchEnv/OnTheFly-Kanji-v0")
    envs = gymnasium.make_vec("SketchEnv/OnTheFly-Kanji-v0", num_envs=256)

Modules: ``retrieval`` (the env and its documentation), ``vector`` (the batched env), ``engine`` (the
arrays both step), ``step`` (the one step every env takes: queries, distances, ranks, Kendall-tau, reward),
``rewards`` (reward schemes), ``kendall`` (Kendall-tau distance), ``data`` (the arrays an env runs on),
``stroke_order`` (the multi-agent game), ``render``, ``sb3`` (Stable-Baselines3 ``VecEnv`` adapter; imports
stable_baselines3), ``registration``. The envs take a :class:`RetrievalData`; the registered ids' entry points
(:mod:`embeddings.provision`) make it from a spec's names.
"""

from __future__ import annotations

from typing import Any

from sketch_env.envs.registration import ENV_IDS, register_envs

__all__ = [
    "ENV_IDS",
    "register_envs",
    "OnTheFlyRetrievalEnv",
    "OnTheFlyRetrievalVectorEnv",
    "SB3VecEnv",
    "RetrievalData",
]

_LAZY = {
    "OnTheFlyRetrievalEnv": "sketch_env.envs.retrieval",
    "OnTheFlyRetrievalVectorEnv": "sketch_env.envs.vector",
    "SB3VecEnv": "sketch_env.envs.sb3",
    "RetrievalData": "sketch_env.envs.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sketch_env.envs' has no attribute {name!r}")
