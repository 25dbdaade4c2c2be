"""The stroke-order game as a PettingZoo environment, by PettingZoo's constructor convention
(``from sketch_env import stroke_order_v0; env = stroke_order_v0.parallel_env(...)``; ``env(...)`` for the
AEC form, ``raw_env(...)`` for the AEC form without PettingZoo's order-enforcing wrapper). See
:class:`sketch_env.envs.stroke_order.StrokeOrderParallelEnv` for the game and its arguments.
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import load_env_creator

from sketch_env.envs.registration import STROKE_ORDER_ENTRY_POINT
from sketch_env.envs.stroke_order import StrokeOrderParallelEnv

__all__ = ["parallel_env", "env", "raw_env"]


def parallel_env(**kwargs: Any) -> StrokeOrderParallelEnv:
    """The ``ParallelEnv``: the game's arguments and the single-agent env's data arguments (``dataset``,
    ``backend``, ``split``, ...), whose data the entry point provisions as ``gym.make`` does; or ``data=`` a
    :class:`~sketch_env.envs.data.RetrievalData` with the backend."""
    if kwargs.get("data") is not None:
        return StrokeOrderParallelEnv(**kwargs)
    return load_env_creator(STROKE_ORDER_ENTRY_POINT)(**kwargs)


def raw_env(**kwargs: Any):
    """The AEC form, unwrapped (``pettingzoo.utils.conversions.parallel_to_aec_wrapper``: agents act in turn,
    the same game)."""
    from pettingzoo.utils.conversions import parallel_to_aec_wrapper

    return parallel_to_aec_wrapper(parallel_env(**kwargs))


def env(**kwargs: Any):
    """The AEC form as PettingZoo's ``env()`` gives it: :func:`raw_env` in PettingZoo's order-enforcing
    wrapper (``reset`` before ``step``, no access to attributes that do not exist yet)."""
    from pettingzoo.utils.wrappers import OrderEnforcingWrapper

    return OrderEnforcingWrapper(raw_env(**kwargs))
