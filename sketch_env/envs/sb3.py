"""Stable-Baselines3 on the batched retrieval env: :class:`SB3VecEnv`.

SB3's algorithms take a ``stable_baselines3.common.vec_env.VecEnv``::

    from stable_baselines3 import PPO
    from sketch_env.envs.sb3 import make_sb3_vec_env

    model = PPO("MlpPolicy", make_sb3_vec_env("SketchEnv/OnTheFly-Kanji-v0", num_envs=64, seed=0)).learn(10_000)

:func:`make_sb3_vec_env` is ``SB3VecEnv(gym.make_vec(env_id, num_envs, autoreset_mode="same_step", ...))``.
The adapter presents a Gymnasium vector env with same-step autoreset in SB3's conventions: ``step`` returns
``(obs, rewards float32, dones, infos)`` with ``infos`` a list of per-env dicts; an env whose episode ended
has its last observation in ``info["terminal_observation"]``, its last step's info (rank, Kendall-tau,
...) and ``info["TimeLimit.truncated"]`` (truncated and not terminated: always False here, as episodes
end by termination), while ``obs`` already holds the next episode's first observation. Seeds and options
set with ``seed()`` / ``set_options()`` apply at the next ``reset()``, as in SB3.

This module imports stable_baselines3; ``import sketch_env`` does not import this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv

from sketch_env.errors import ArgumentError

__all__ = ["SB3VecEnv", "make_sb3_vec_env"]


def _per_env(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s entries of a Gymnasium vector info dict (those its ``_key`` mask marks present)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get(f"_{key}")
        if mask is None or mask[i]:
            out[key] = value[i]
    return out


class SB3VecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` with ``autoreset_mode`` SAME_STEP as an SB3 ``VecEnv`` (module docstring).

    Attribute and method calls (``get_attr``, ``set_attr``, ``env_method``) go to the batched env and return
    one (shared) value per env index.
    """

    def __init__(self, vector_env: Any) -> None:
        mode = vector_env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ArgumentError(
                f"SB3VecEnv needs a vector env with autoreset_mode SAME_STEP, got {mode}; "
                "make it with autoreset_mode='same_step'"
            )
        self.venv = vector_env
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def reset(self):
        seed = None if all(s is None for s in self._seeds) else self._seeds
        options = self._options[0] if self._options and self._options[0] else None
        obs, info = self.venv.reset(seed=seed, options=options)
        self.reset_infos = [_per_env(info, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        final = info.get("final_info", {})
        infos = []
        for i in range(self.num_envs):
            if dones[i]:
                d = _per_env(final, i)
                d["terminal_observation"] = info["final_obs"][i]
                d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                self.reset_infos[i] = {k: info[k][i] for k in ("sketch_index", "photo_index") if k in info}
            else:
                d = _per_env(info, i)
            infos.append(d)
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self):
        return [None for _ in range(self.num_envs)]


def make_sb3_vec_env(env_id: str, num_envs: int = 1, seed: int | None = None, **kwargs: Any) -> SB3VecEnv:
    """An SB3 ``VecEnv`` of ``env_id``'s natively batched env: ``gym.make_vec(env_id, num_envs,
    autoreset_mode="same_step", **kwargs)`` in :class:`SB3VecEnv`, seeded with ``seed`` (applied at the first
    ``reset``, as SB3 does)."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the ids)

    venv = SB3VecEnv(gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                  autoreset_mode="same_step", **kwargs))
    if seed is not None:
        venv.seed(seed)
    return venv
