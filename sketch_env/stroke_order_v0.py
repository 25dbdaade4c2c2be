"""The stroke-order game as a PettingZoo environment, by PettingZoo's constructor convention
(``from sketch_env import stroke_order_v0; env = stroke_order_v0.parallel_env(...)``, or ``env(...)`` for the
AEC form). See :class:`sketch_env.envs.stroke_order.StrokeOrderParallelEnv` for the game and its arguments.
"""

from __future__ import annotations

from typing import Any

from sketch_env.envs.stroke_order import StrokeOrderParallelEnv

__all__ = ["parallel_env", "env", "raw_env"]


def parallel_env(**kwargs: Any) -> StrokeOrderParallelEnv:
    """The ``ParallelEnv`` (keyword arguments: the env's)."""
    return StrokeOrderParallelEnv(**kwargs)


raw_env = parallel_env


def env(**kwargs: Any):
    """The AEC form (``pettingzoo.utils.parallel_to_aec``: agents act in turn, the same game)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(**kwargs))
