"""The retrieval env as the fast trainer steps it: N episodes as tensors on one device, no Python per env.

:class:`DeviceRetrievalEnv` computes exactly what :class:`~sketch_env.envs.vector.OnTheFlyRetrievalVectorEnv`
computes (the query ``normalise(a)`` or ``normalise(q_own + a)``, float64-summed distances rounded to
float32, ``rank = #{p : d_p <= d_true}``, the ranking by ``(d, index)``, its Kendall-tau distance to the
previous step's ranking and the reward of :mod:`sketch_env.envs.rewards`), with one of two engines:

* ``compute="torch"``: every array lives on ``device`` (CPU or CUDA) and a step is a handful of tensor
  operations: no host synchronisation, no NumPy. The ranking and its Kendall count are
  :func:`sketch_env.envs.kendall.ranking_order_torch` / :func:`~sketch_env.envs.kendall.discordant_pairs_torch`
  (an O(P log^2 P) sort-based count, suited to a GPU).
* ``compute="numpy"`` (CPU only): the native env's own :class:`~sketch_env.envs.engine.RetrievalEngine`
  with its numba kernels (a radix sort and an O(P log P) count in one compiled loop, over the cores),
  which on a CPU is several times faster than the torch sort; observations, actions and rewards cross as
  zero-copy tensor views. ``"auto"`` picks it on the CPU and ``"torch"`` elsewhere.

What differs from the Gymnasium vector env is the bookkeeping, not the maths: no info dicts (the step
returns the rank alongside the reward), no final observations (episodes end by termination after ``S``
steps, so nothing is bootstrapped from them), and sketches are drawn by one ``torch.Generator`` per
group of envs (:attr:`groups`: one per agent when K agents train side by side), so a seed gives other
episodes than the Gymnasium env's per-env NumPy generators, from the same distribution. Tests check that
both engines give the Gymnasium env's observations, ranks and rewards for the same sketches and actions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from sketch_env.envs import rewards, step
from sketch_env.envs.data import RetrievalData
from sketch_env.envs.engine import EnvOptions, RetrievalEngine
from sketch_env.errors import ArgumentError

__all__ = ["DeviceRetrievalEnv", "COMPUTES"]

COMPUTES = ("auto", "torch", "numpy")


class DeviceRetrievalEnv:
    """``num_envs`` synchronised episodes of the retrieval env on one device (module docstring).

    Args:
        data: the split's arrays (:class:`~sketch_env.envs.data.RetrievalData`).
        num_envs: envs in all (a multiple of ``len(seeds)``).
        options: the env's behaviour (:class:`~sketch_env.envs.engine.EnvOptions`; ``order`` is ignored:
            sketches are drawn uniformly, as ``order="random"``).
        seeds: one seed per group of ``num_envs // len(seeds)`` consecutive envs; group ``k`` draws its
            sketches from ``torch.Generator().manual_seed(seeds[k])``.
        device: where observations, rewards and (``compute="torch"``) the whole env live.
        compute: ``"auto"``, ``"torch"`` or ``"numpy"`` (module docstring).
        kernel: the NumPy engine's Kendall kernel.

    ``reset()`` starts every env; ``step(actions)`` returns ``(obs, reward, rank, done)`` (see :meth:`step`).
    ``reward`` is float32, as SB3's ``VecEnv`` hands it to the rollout buffer.
    """

    def __init__(self, data: RetrievalData, num_envs: int, options: EnvOptions | None = None,
                 seeds: list[int] | tuple[int, ...] = (0,), device: str | torch.device = "cpu",
                 compute: str = "auto", kernel: str = "auto") -> None:
        if compute not in COMPUTES:
            raise ArgumentError(f"compute must be one of {COMPUTES}, got {compute!r}")
        self.device = torch.device(device)
        if compute == "auto":
            compute = "numpy" if self.device.type == "cpu" else "torch"
        if compute == "numpy" and self.device.type != "cpu":
            raise ArgumentError(f"compute='numpy' runs on the CPU; device {self.device} needs compute='torch'")
        seeds = [int(s) for s in seeds]
        if not seeds or num_envs < 1 or num_envs % len(seeds):
            raise ArgumentError(f"num_envs ({num_envs}) must be a positive multiple of the number of seeds "
                                f"({len(seeds)})")
        self.data = data
        self.options = options or EnvOptions()
        self.compute = compute
        self.num_envs = n = int(num_envs)
        self.groups = len(seeds)
        self.envs_per_group = n // self.groups
        self.steps = data.steps
        self.gallery_size = p = data.gallery_size
        self.embed_dim = data.embed_dim
        self._generators = [torch.Generator().manual_seed(s) for s in seeds]
        dev = self.device
        rows = data.rows(np.arange(data.num_sketches))
        # the split's rows only, gathered once: the store may also hold other splits' sketches
        self._features = torch.from_numpy(np.ascontiguousarray(data.sketch_features[rows], dtype=np.float32)).to(dev)
        self._photo_of = torch.from_numpy(np.asarray(data.photo_index, dtype=np.int64)).to(dev)
        self.sketch = torch.zeros(n, dtype=torch.int64, device=dev)
        self.t = 0  # the step every env is at (episodes are synchronised)
        if compute == "numpy":
            # the engine reads features by store row; it gets the split-local view with identity rows
            local = RetrievalData.from_arrays(self._features.numpy(), data.gallery, data.photo_index,
                                              None if data.queries is None else np.asarray(data.queries[rows]))
            # the engine counts Kendall-tau for its info whenever kendall=True; here tau is only paid, not reported
            engine_options = replace(self.options, kendall=rewards.needs_kendall(self.options.reward))
            self._engine = RetrievalEngine(local, n, engine_options, "numpy", "cpu", kernel)
            return
        if self.options.action == "residual":
            if data.queries is None:
                raise ArgumentError("action='residual' needs the backend's own queries, and these data have none")
            self._queries = torch.from_numpy(np.ascontiguousarray(data.queries[rows], dtype=np.float32)).to(dev)
        self._gallery_rows = step.prepare_gallery(data.gallery, dev)
        self._photo = torch.zeros(n, dtype=torch.int64, device=dev)
        self._order = torch.zeros((n, p), dtype=torch.int64, device=dev)
        self._prev_tau = torch.full((n,), float("nan"), dtype=torch.float64, device=dev)
        self._count = rewards.needs_kendall(self.options.reward)  # tau is not reported, only paid

    # -- episodes ------------------------------------------------------------------------------------
    def _draw(self) -> torch.Tensor:
        """New sketches for every env: group ``k`` draws from its generator."""
        m, s = self.envs_per_group, self.data.num_sketches
        return torch.cat([torch.randint(s, (m,), generator=g) for g in self._generators]).to(self.device)

    def _begin(self, sketches: torch.Tensor) -> None:
        if self.compute == "numpy":
            self._engine.begin(np.arange(self.num_envs), sketches.cpu().numpy())
        else:
            self._photo = self._photo_of[sketches]
            self._prev_tau = torch.full_like(self._prev_tau, float("nan"))
        self.sketch = sketches
        self.t = 0

    def reset(self, sketch_index: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Start every env (on ``sketch_index (N,)`` if given, else on drawn sketches); the observations."""
        if sketch_index is None:
            sketches = self._draw()
        else:
            sketches = torch.as_tensor(np.asarray(sketch_index), dtype=torch.int64).reshape(-1).to(self.device)
            if sketches.shape != (self.num_envs,):
                raise ArgumentError(f"sketch_index must have {self.num_envs} entries, got {tuple(sketches.shape)}")
            if int(sketches.min()) < 0 or int(sketches.max()) >= self.data.num_sketches:
                raise ArgumentError(f"sketch indices must lie in [0, {self.data.num_sketches})")
        self._begin(sketches)
        return self.observe()

    def observe(self) -> torch.Tensor:
        """Observations ``(N, F [+ 1])`` float32: the feature of each env's partial sketch at its step."""
        shown = min(self.t, self.steps - 1)
        obs = self._features[self.sketch, shown]
        if self.options.observe_progress:
            obs = torch.cat([obs, torch.full_like(obs[:, :1], (shown + 1) / self.steps)], dim=1)
        return obs

    # -- a step --------------------------------------------------------------------------------------
    def _step_torch(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        own = self._queries[self.sketch, self.t] if o.action == "residual" else None
        res = step.retrieval_step(
            step.queries_from_actions(actions, own), self._gallery_rows, self._photo, self._order, self._prev_tau,
            self.t == 0, o.reward, o.gamma1, o.gamma2, o.reward_scale, kendall_tau=self._count, need_order=False)
        if res.order is not None:
            self._order = res.order
        self._prev_tau = res.tau
        return res.reward, res.rank

    def _step_numpy(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reward, _, info = self._engine.step(actions.detach().float().cpu().numpy())
        return torch.from_numpy(reward), torch.from_numpy(info["rank"])

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Step every env with ``actions (N, d)``; returns ``(obs, reward float32 (N,), rank int64 (N,), done)``.

        Episodes are synchronised (every env starts together and has ``S`` steps), so ``done`` is one bool
        for all envs: when True, every env has started a new episode and ``obs`` is its first observation.
        """
        if actions.shape != (self.num_envs, self.embed_dim):
            raise ArgumentError(f"actions must have shape ({self.num_envs}, {self.embed_dim}), "
                                f"got {tuple(actions.shape)}")
        fn = self._step_torch if self.compute == "torch" else self._step_numpy
        reward, rank = fn(actions)
        self.t += 1
        done = self.t >= self.steps
        if done:
            self._begin(self._draw())
        return self.observe(), reward.to(self.device, torch.float32), rank.to(self.device), done

    def generator_states(self) -> list[torch.Tensor]:
        """The sketch generators' states (saved with a run, so a resumed run draws on)."""
        return [g.get_state() for g in self._generators]

    def set_generator_states(self, states: list[Any]) -> None:
        for g, s in zip(self._generators, states):
            g.set_state(s)

    def __repr__(self) -> str:
        return (f"DeviceRetrievalEnv(num_envs={self.num_envs}, groups={self.groups}, {self.data!r}, "
                f"compute={self.compute!r}, device={str(self.device)!r}, reward={self.options.reward!r})")
