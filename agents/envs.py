"""How the agents reach the retrieval env: the SB3-adapted native vector env, the backend's query layer,
and whole-split evaluation.

Evaluation plays every sketch of the split once, in order, on the native vector env with one env per
sketch (``order="sequential"``), so the figures come from the env's own rank computation; it returns the
``(n, S)`` ranks and the gallery size, which :func:`sketch_env.metrics.summarise` turns into m@A, m@B, A@q.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sketch_env.errors import ArgumentError

__all__ = ["make_sb3_vec_env", "make_native_vec_env", "native_env", "policy_start", "evaluate_agent_ranks",
           "frozen_backend_ranks", "env_short_name"]


def env_short_name(env_id: str) -> str:
    """``SketchEnv/OnTheFly-Kanji-v0`` -> ``OnTheFly-Kanji-v0`` (a folder name)."""
    return env_id.split("/")[-1]


def make_native_vec_env(env_id: str, n_envs: int, split: str, env_device: str = "cpu", **env_kwargs: Any):
    """The natively batched vector env of ``env_id`` on ``split`` (numpy on the CPU, torch on a GPU)."""
    import sketch_env  # noqa: F401  (registers the ids)

    kwargs = dict(env_kwargs, split=split)
    if env_device != "cpu":
        kwargs.update(compute="torch", device=env_device)
    return gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs)


def make_sb3_vec_env(env_id: str, n_envs: int, seed: int, split: str = "train", env_device: str = "cpu",
                     **env_kwargs: Any):
    """The native vector env adapted to SB3's ``VecEnv`` and seeded."""
    from stable_baselines3.common.vec_env import VecMonitor

    from sketch_env.envs.sb3 import make_sb3_vec_env as make

    # a training reads every sketch many times: the split's features are computed once and cached on disk
    kwargs = dict(env_kwargs, split=split, precompute=True)
    if env_device != "cpu":
        kwargs.update(compute="torch", device=env_device)
    # VecMonitor: episode returns and lengths, which SB3 logs as rollout/ep_rew_mean and rollout/ep_len_mean
    return VecMonitor(make(env_id, n_envs, seed, **kwargs))


def native_env(env: Any) -> Any:
    """The native batched env under SB3 wrappers (:class:`~stable_baselines3.common.vec_env.VecMonitor`,
    :class:`~sketch_env.envs.sb3.SB3VecEnv`)."""
    while hasattr(env, "venv"):
        env = env.venv
    return env


def policy_start(data: Any, action_bound: float, with_query_layer: bool = True) -> dict[str, Any]:
    """What the policy starts from, read off the training split's :class:`~sketch_env.envs.data.RetrievalData`:
    ``obs_scale`` = ``1 / mean ||f||_1`` of the features (see :class:`agents.policy.ScaledFlatten`) and, with
    ``with_query_layer``, ``(c W, c b)`` of the backend, whose query is ``normalise(W f + b)``.

    The env normalises the action, so any ``c > 0`` gives the same query; ``c = action_bound / max_f ||W f +
    b||`` over the training features keeps every mean action inside the action box (SB3 clips actions to the
    box, which would bend the direction of a larger one).
    """
    # the training split's rows only (the store also holds the validation sketches)
    rows = np.unique(data.rows(np.arange(data.num_sketches)))
    feats = np.asarray(data.sketch_features[rows], dtype=np.float32).reshape(-1, data.sketch_features.shape[-1])
    out: dict[str, Any] = {"obs_scale": float(1.0 / max(np.abs(feats).sum(axis=1).mean(), 1e-12))}
    if with_query_layer:
        backend = data.backend
        if backend is None:
            raise ArgumentError("the policy starts from the backend's query layer, and these data carry no backend "
                             "(data from arrays): set policy_kwargs init_from_backend: false")
        if getattr(backend, "per_step", False):
            raise ArgumentError("a per-step backend (B3) has no single query layer to start the policy from")
        weight, bias = (np.asarray(a, dtype=np.float64) for a in backend.query_layer())
        norm = max(float(np.linalg.norm(feats[i : i + 65536] @ weight.T + bias, axis=1).max())
                   for i in range(0, len(feats), 65536))
        scale = float(action_bound) / max(norm, 1e-12)
        out.update(weight=(weight * scale).astype(np.float32), bias=(bias * scale).astype(np.float32))
    return out


def _play_split(env_id: str, env_kwargs: dict[str, Any], split: str, env_device: str, act,
                data: Any = None) -> tuple[np.ndarray, int]:
    import sketch_env  # noqa: F401

    # ranks only: the reward (and its Kendall-tau term) is not needed, so it is not computed
    kwargs = dict(env_kwargs, order="sequential", reward="inverse_rank", kendall=False)
    if data is None:  # every sketch of the split is read: computed once, cached on disk for the next evaluation
        kwargs.setdefault("precompute", True)
    if data is not None:  # the given data instead of the split's: only the env's own arguments apply
        from sketch_env.envs.vector import OnTheFlyRetrievalVectorEnv

        names = OnTheFlyRetrievalVectorEnv.argument_names()
        n, steps, gallery = data.num_sketches, data.steps, data.gallery_size
        venv = OnTheFlyRetrievalVectorEnv(n, data=data, **{k: v for k, v in kwargs.items() if k in names})
    else:
        probe = gym.make(env_id, **dict(kwargs, split=split))
        n, steps, gallery = probe.unwrapped.num_sketches, probe.unwrapped.steps, probe.unwrapped.gallery_size
        probe.close()
        venv = make_native_vec_env(env_id, n, split, env_device, **kwargs)
    try:
        obs, _ = venv.reset(seed=0)
        ranks = np.zeros((n, steps), dtype=np.int64)
        for t in range(steps):
            obs, _, _, _, info = venv.step(act(np.asarray(obs)))
            if "final_info" in info:  # same-step autoreset: the last step's infos moved to final_info
                done = np.asarray(info["_final_obs"], dtype=bool)
                ranks[done, t] = np.asarray(info["final_info"]["rank"])[done]
                if (~done).any():
                    ranks[~done, t] = np.asarray(info["rank"])[~done]
            else:
                ranks[:, t] = np.asarray(info["rank"])
    finally:
        venv.close()
    return ranks, gallery


def evaluate_agent_ranks(model: Any, env_id: str, env_kwargs: dict[str, Any], split: str = "test",
                         env_device: str = "cpu", deterministic: bool = True, seed: int = 0,
                         data: Any = None) -> tuple[np.ndarray, int]:
    """Ranks ``(n, S)`` of an SB3 model's actions (mean action, or sampled with ``seed``) on every sketch of
    ``split`` (or of ``data``, a :class:`~sketch_env.envs.data.RetrievalData`, with the env's other arguments
    from ``env_kwargs``)."""
    if not deterministic:
        model.set_random_seed(seed)
    return _play_split(env_id, env_kwargs, split, env_device,
                       lambda obs: model.predict(obs, deterministic=deterministic)[0], data=data)


def frozen_backend_ranks(env_id: str, env_kwargs: dict[str, Any], split: str = "test") -> tuple[np.ndarray, int]:
    """Ranks of the frozen backend's own queries: ``action="residual"`` with a zero action."""
    kwargs = dict(env_kwargs, action="residual", precompute=True)
    probe = gym.make(env_id, **dict(kwargs, split=split))
    d = probe.action_space.shape[0]
    probe.close()
    return _play_split(env_id, kwargs, split, "cpu", lambda obs: np.zeros((len(obs), d), dtype=np.float32))
