"""The natively batched retrieval environment: N episodes stepped with array operations."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sketch_env.envs.data import DataBackedEnv, RetrievalData
from sketch_env.envs.engine import OPTION_NAMES, RetrievalEngine, as_actions, make_options, make_spaces
from sketch_env.errors import ArgumentError

__all__ = ["OnTheFlyRetrievalVectorEnv"]

_RESET_KEYS = ("sketch_index", "photo_index")
_MODES = {
    "same_step": AutoresetMode.SAME_STEP,
    "next_step": AutoresetMode.NEXT_STEP,
    AutoresetMode.SAME_STEP.value: AutoresetMode.SAME_STEP,
    AutoresetMode.NEXT_STEP.value: AutoresetMode.NEXT_STEP,
}


class OnTheFlyRetrievalVectorEnv(DataBackedEnv, VectorEnv):
    """``num_envs`` :class:`~sketch_env.envs.retrieval.OnTheFlyRetrievalEnv` episodes in arrays.

    Every step computes all envs' queries, distances (one matrix product), ranks, rankings, Kendall-tau
    distances and rewards at once (:class:`~sketch_env.envs.engine.RetrievalEngine`), with NumPy
    (``compute="numpy"``; the Kendall count uses numba when installed, ``kernel``) or torch
    (``compute="torch"``, ``device="cpu"`` or ``"cuda"``; the gallery and the rankings live on the device).
    Observations, rewards and infos are NumPy arrays.

    Seeding and equality with single envs: ``reset(seed=s)`` seeds env ``i`` with ``s + i`` (a list seeds
    each), exactly as :class:`gymnasium.vector.SyncVectorEnv` seeds its envs, and each env draws its
    sketches from its own generator as the single env does; so with the same autoreset mode this env
    equals a ``SyncVectorEnv`` of single envs step for step (tests check it). With ``order="sequential"``
    the envs share the split: env ``i`` plays sketches ``i, i + N, i + 2N, ...`` (mod ``n``).

    Autoreset (``metadata["autoreset_mode"]``): ``autoreset_mode="next_step"`` (default, Gymnasium's, which
    its vector wrappers such as ``NormalizeObservation`` and ``RecordEpisodeStatistics`` require): an env
    whose episode ended is reset on the next ``step``, whose action for it is ignored (reward 0, not
    terminated). ``"same_step"`` (what SB3 expects; :func:`sketch_env.envs.sb3.make_sb3_vec_env` makes it):
    the env is reset within the same ``step``; its observation is the new episode's first, and
    ``info["final_obs"]`` / ``info["final_info"]`` (masked by ``info["_final_obs"]``) hold the last
    observation and step info; its top-level info holds the reset info (``sketch_index``, ``photo_index``),
    the other step keys being masked out, as in ``SyncVectorEnv``.

    ``reset(options={"reset_mask": mask})`` resets only the envs in ``mask``; ``options={"sketch_index":
    array (N,)}`` picks the sketches. Other arguments: those of the single env (``render_mode="rgb_array"``:
    :meth:`render` gives one frame per env), plus ``compute``, ``device``, ``autoreset_mode``.
    """

    def __init__(
        self,
        num_envs: int = 1,
        *,
        compute: str = "numpy",
        device: str = "cpu",
        autoreset_mode: str | AutoresetMode = "next_step",
        kernel: str = "auto",
        render_mode: str | None = None,
        data: RetrievalData | None = None,
        **kwargs: Any,
    ) -> None:
        mode = autoreset_mode.value if isinstance(autoreset_mode, AutoresetMode) else autoreset_mode
        if mode not in _MODES:
            raise ArgumentError(f"autoreset_mode must be 'same_step' or 'next_step', got {autoreset_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ArgumentError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.data = RetrievalData.check(data, "OnTheFlyRetrievalVectorEnv")
        if render_mode == "rgb_array" and not self.data.can_render:
            raise ArgumentError(
                "render_mode='rgb_array' needs the dataset's sketches and photos; data made from arrays have none")
        self.options = make_options(kwargs, "batched retrieval env")
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.metadata = {"autoreset_mode": _MODES[mode], "render_modes": ["rgb_array"], "render_fps": 4}
        self.single_observation_space, self.single_action_space = make_spaces(self.data, self.options)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._engine = RetrievalEngine(self.data, self.num_envs, self.options, compute, device, kernel)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._episodes = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)  # next_step mode
        self.compute, self.device = compute, str(device)

    @classmethod
    def argument_names(cls) -> tuple[str, ...]:
        """The keyword arguments of the env itself (the behaviour; the data come in ``data``)."""
        return ("num_envs", "data", "compute", "device", "autoreset_mode", "kernel", "render_mode", *OPTION_NAMES)

    # -- episodes ------------------------------------------------------------------------------------
    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random(None)
        return self._rngs[i]

    def _start(self, ids: np.ndarray, chosen: np.ndarray | None = None) -> None:
        n = self.num_sketches
        if chosen is not None:
            sketches = chosen
        elif self.options.order == "sequential":
            sketches = (ids + self._episodes[ids] * self.num_envs) % n
        else:
            sketches = np.array([self._rng(int(i)).integers(n) for i in ids], dtype=np.int64)
        self._episodes[ids] += 1
        self._engine.begin(ids, sketches)

    def _reset_info(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        info: dict[str, np.ndarray] = {}
        for key, value in (("sketch_index", self._engine.sketch), ("photo_index", self._engine.photo)):
            info[key] = value.copy()
            info[f"_{key}"] = mask.copy()
        return info

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ArgumentError(f"a list of seeds needs one per env ({n}), got {len(seeds)}")
        mask = np.ones(n, dtype=bool)
        if "reset_mask" in options:
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
                raise ArgumentError(f"options['reset_mask'] must be a bool array of shape ({n},) with a True")
        ids = np.flatnonzero(mask)
        for i in ids:
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
                self._episodes[i] = 0
        chosen = None
        if options.get("sketch_index") is not None:
            chosen = np.broadcast_to(np.asarray(options["sketch_index"], dtype=np.int64), (n,))[ids]
        self._start(ids, chosen)
        self._needs_reset[ids] = False
        return self._engine.observe(), self._reset_info(mask)

    def step(self, actions: np.ndarray):
        n = self.num_envs
        actions = as_actions(actions, self.action_space.shape, finite=False)  # stepped envs' are checked
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP and self._needs_reset.any():
            resetting = self._needs_reset.copy()
            self._start(np.flatnonzero(resetting))
            ids = np.flatnonzero(~resetting)
        else:
            resetting = np.zeros(n, dtype=bool)
            ids = np.arange(n)
        infos: dict[str, Any] = {}
        if len(ids):
            r, term, step_info = self._engine.step(actions[ids], None if len(ids) == n else ids)
            reward[ids] = r
            terminated[ids] = term
            stepped = np.zeros(n, dtype=bool)
            stepped[ids] = True
            for key, value in step_info.items():
                full = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
                full[ids] = value
                infos[key] = full
                infos[f"_{key}"] = stepped.copy()
            # tau is undefined at an episode's first step (and with kendall=False): absent, as in the single env
            infos["_kendall_tau"] &= ~np.isnan(infos["kendall_tau"])
            if not infos["_kendall_tau"].any():
                del infos["kendall_tau"], infos["_kendall_tau"]
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._needs_reset = terminated.copy()
            if resetting.any():
                for key, value in self._reset_info(resetting).items():
                    if key.startswith("_"):
                        infos[key] = infos.get(key, np.zeros(n, dtype=bool)) | value
                    else:
                        infos[key] = np.where(resetting, value, infos.get(key, value))
            return self._engine.observe(), reward, terminated, truncated, infos
        # same step: finished envs start their next episode now
        if terminated.any():
            done = np.flatnonzero(terminated)
            final_obs = np.full(n, None, dtype=object)
            for j, row in zip(done, self._engine.observe(done)):
                final_obs[j] = row
            final_info = {}
            for key in [k for k in infos if not k.startswith("_")]:
                if (infos[f"_{key}"] & terminated).any():
                    final_info[key] = infos[key].copy()
                    final_info[f"_{key}"] = infos[f"_{key}"] & terminated
                if key not in _RESET_KEYS:
                    infos[f"_{key}"] = infos[f"_{key}"] & ~terminated
                    if not infos[f"_{key}"].any():  # as in SyncVectorEnv: a key no env has is absent
                        del infos[key], infos[f"_{key}"]
            self._start(done)
            for key in _RESET_KEYS:
                infos[key] = np.where(
                    terminated, (self._engine.sketch if key == "sketch_index" else self._engine.photo), infos[key]
                )
            infos.update(
                final_obs=final_obs, _final_obs=terminated.copy(), final_info=final_info, _final_info=terminated.copy()
            )
        return self._engine.observe(), reward, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One frame per env (``render_mode="rgb_array"``), as the single env draws it, all of one fixed size
        (:func:`~sketch_env.envs.render.frame_shape`)."""
        if self.render_mode is None:
            gym.logger.warn("render() without a render_mode: pass render_mode='rgb_array' to gym.make_vec")
            return None
        from sketch_env.envs.render import render_retrieval

        last = self._engine.last_info
        frames = []
        for i in range(self.num_envs):
            state = self._engine.state_for(i)
            info = None
            if last is not None and state["t"] > 0 and len(last["rank"]) == self.num_envs:
                info = {k: v[i] for k, v in last.items()}
            frames.append(render_retrieval(self.data, state["sketch"], state["t"], info, self._engine.k))
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return (
            f"OnTheFlyRetrievalVectorEnv(num_envs={self.num_envs}, {self.data!r}, compute={self.compute!r}, "
            f"device={self.device!r}, reward={self.options.reward!r})"
        )
