"""The stroke-order game as a PettingZoo environment, by PettingZoo's constructor convention
(``from sketch_env import stroke_order_v0; env = stroke_order_v0.parallel_env(...)``, or ``env(...)`` for the
AEC form). See :class:`sketch_env.envs.stroke_order.StrokeOrderParallelEnv` for the game and its arguments.
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


raw_env = parallel_env


def env(**kwargs: Any):
    """The AEC form (``pettingzoo.utils.parallel_to_aec``: agents act in turn, the same game)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(**kwargs))
