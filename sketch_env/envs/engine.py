"""The batched core of the retrieval environments: N episodes as arrays, stepped together.

:class:`OnTheFlyRetrievalEnv` runs it with N = 1 and :class:`OnTheFlyRetrievalVectorEnv` with N envs. It
keeps the episodes' positions (sketch, step, true photo, previous ranking and Kendall-tau) and steps them
through :func:`sketch_env.envs.step.retrieval_step`, the one implementation of queries -> distances ->
ranks -> ranking and Kendall-tau -> reward (see :mod:`sketch_env.envs.step`). With numba,
:func:`sketch_env.envs.kendall.ranking_and_discordant` computes the ranking by a radix sort and its Kendall
count against the previous one in one compiled loop per env, over numba's threads when N > 1.

With ``compute="torch"`` the distances, ranks, rankings, Kendall counts and rewards run on a torch device
(the gallery and the rankings live there); the query normalisation and the observation gather stay in
NumPy. Both paths sum distances in float64 and round them to float32 once, so they agree exactly (tests
check equality).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from sketch_env import metrics
from sketch_env.envs import kendall, rewards, step
from sketch_env.envs.data import RetrievalData
from sketch_env.errors import ArgumentError

__all__ = ["EnvOptions", "OPTION_NAMES", "make_options", "RetrievalEngine", "make_spaces", "ACTION_MODES", "ORDERS",
           "is_real", "is_count", "as_actions"]

ACTION_MODES = ("direct", "residual")
ORDERS = ("random", "sequential")
COMPUTES = ("numpy", "torch")


@dataclass(frozen=True)
class EnvOptions:
    """The environment's behaviour (everything but the data); see the env's Arguments."""

    action: str = "direct"
    reward: str = "paper"
    gamma1: float = 1.0
    gamma2: float = 1.0
    reward_scale: float = 1.0
    kendall: bool = True
    topk: int = 5
    observe_progress: bool = False
    obs_bound: float = 1000.0
    action_bound: float = 1.0
    order: str = "random"

    def __post_init__(self) -> None:
        if self.action not in ACTION_MODES:
            raise ArgumentError(f"action must be one of {ACTION_MODES}, got {self.action!r}")
        if self.reward not in rewards.REWARD_SCHEMES:
            raise ArgumentError(f"unknown reward {self.reward!r}; choose one of {', '.join(rewards.REWARD_SCHEMES)}")
        if self.order not in ORDERS:
            raise ArgumentError(f"order must be one of {ORDERS}, got {self.order!r}")
        # bounded so that no reward can overflow: |reward| <= scale * (|gamma1| * rank_max + |gamma2|)
        for name, low, high in (("gamma1", -1e6, 1e6), ("gamma2", -1e6, 1e6), ("reward_scale", 1e-12, 1e6),
                                ("obs_bound", 1e-12, 1e12), ("action_bound", 1e-12, 1e12)):
            value = getattr(self, name)
            if not is_real(value) or not low <= value <= high:
                raise ArgumentError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
        if not is_count(self.topk):
            raise ArgumentError(f"topk must be a positive integer, got {self.topk!r}")
        for name in ("kendall", "observe_progress"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ArgumentError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if rewards.needs_kendall(self.reward) and not self.kendall:
            raise ArgumentError("reward='paper' needs the Kendall-tau distance: kendall=False is not possible with it")


def is_real(value: Any) -> bool:
    """A finite real number (not a bool, not complex)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def is_count(value: Any, low: int = 1) -> bool:
    """An integer >= ``low`` (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= low


def as_actions(actions: Any, shape: tuple[int, ...], finite: bool = True, name: str = "actions") -> np.ndarray:
    """``actions`` as float32 of ``shape``; a complex, non-numeric, mis-shaped or (``finite``) non-finite
    action is a ValueError naming them ``name`` (a cast would silently drop an imaginary part)."""
    a = np.asarray(actions)
    if a.dtype.kind not in "biuf":
        raise ArgumentError(f"{name} must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if a.shape != shape:
        raise ArgumentError(f"{name} must have shape {shape}, got {a.shape}")
    if finite and not np.isfinite(a).all():
        raise ArgumentError(f"{name} must be finite, and NaN or inf values were given")
    return a


#: the behaviour arguments every retrieval env takes
OPTION_NAMES = tuple(EnvOptions.__dataclass_fields__)


def make_options(kwargs: dict[str, Any], env: str) -> EnvOptions:
    """The :class:`EnvOptions` of an env's keyword arguments; any other argument is a TypeError naming the
    options (the data arguments belong to ``gym.make``, which provisions the data)."""
    unknown = set(kwargs) - set(OPTION_NAMES)
    if unknown:
        raise ArgumentError(
            f"unknown argument(s) {sorted(unknown)} for the {env} built from data=...; it takes "
            f"{', '.join(OPTION_NAMES)}. Data arguments (dataset, backend, split, ...) go to gym.make, which "
            "provisions the data"
        )
    return EnvOptions(**kwargs)


@functools.cache
def _blas_threads():
    """threadpoolctl's controller of the BLAS libraries numpy loaded (found once)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def make_spaces(data: RetrievalData, options: EnvOptions) -> tuple[spaces.Box, spaces.Box]:
    """``(observation_space, action_space)`` of one env; checks the features lie within ``obs_bound``."""
    top = 0.0 if data.lazy else data.max_abs_feature()  # lazy data: checked as features are read (observe)
    if top > options.obs_bound:
        raise ArgumentError(
            f"sketch features reach |f| = {top:.4g}, beyond obs_bound={options.obs_bound:g}: "
            f"pass a larger obs_bound (e.g. obs_bound={2 ** math.ceil(math.log2(top)):g})"
        )
    if options.action == "residual" and data.queries is None:
        raise ArgumentError("action='residual' needs the backend's own queries, and these data have none")
    f = data.feature_dim
    low = np.full(f + options.observe_progress, -options.obs_bound, dtype=np.float32)
    high = np.full(f + options.observe_progress, options.obs_bound, dtype=np.float32)
    if options.observe_progress:
        low[-1], high[-1] = 0.0, 1.0
    obs = spaces.Box(low, high, dtype=np.float32)
    b = options.action_bound
    act = spaces.Box(-b, b, shape=(data.embed_dim,), dtype=np.float32)
    return obs, act


class RetrievalEngine:
    """N episodes of the retrieval env as arrays (module docstring).

    Args:
        data: the split's arrays.
        num_envs: N.
        options: the env's behaviour.
        compute: ``"numpy"`` or ``"torch"``.
        device: the torch device (``compute="torch"``).
        kernel: the NumPy Kendall kernel (:data:`sketch_env.envs.kendall.KERNELS`).
    """

    def __init__(
        self,
        data: RetrievalData,
        num_envs: int,
        options: EnvOptions,
        compute: str = "numpy",
        device: str = "cpu",
        kernel: str = "auto",
    ) -> None:
        if compute not in COMPUTES:
            raise ArgumentError(f"compute must be one of {COMPUTES}, got {compute!r}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ArgumentError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.data = data
        self.num_envs = n = int(num_envs)
        self.options = options
        self.compute = compute
        self.kernel = kernel if compute == "torch" else kendall.resolve_kernel(kernel)
        self.steps = data.steps
        self.gallery_size = p = data.gallery_size
        self.k = min(options.topk, p)
        self.pairs = p * (p - 1) // 2
        self.sketch = np.zeros(n, dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)  # steps taken in the episode
        self.photo = np.zeros(n, dtype=np.int64)
        self.prev_tau = np.full(n, np.nan)
        self.started = np.zeros(n, dtype=bool)
        self._prepared = step.prepare_gallery(data.gallery)
        if compute == "torch":
            import torch

            self._torch = torch
            self.device = torch.device(device)
            self._gallery_rows = torch.from_numpy(self._prepared).to(self.device)
            self.order = torch.zeros((n, p), dtype=torch.int64, device=self.device)
        else:
            if device != "cpu":
                raise ArgumentError(f"compute='numpy' runs on the CPU; device={device!r} needs compute='torch'")
            self.device = "cpu"
            self.order = np.zeros((n, p), dtype=np.int32)
            if self.kernel.startswith("numba"):  # load (or compile) the kernels now, not mid-episode
                for kernel in {"numba", self.kernel if n > 1 else "numba"}:
                    kendall.ranking_and_discordant(np.zeros((1, 2), np.float32), np.array([[1, 0]], np.int32),
                                                   np.ones(1, bool), kernel)
        self.last_info: dict[str, np.ndarray] | None = None

    # -- episodes ------------------------------------------------------------------------------------
    def begin(self, ids: np.ndarray, sketches: np.ndarray) -> None:
        """Start episodes of ``sketches`` in envs ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        sketches = np.asarray(sketches, dtype=np.int64)
        if sketches.min(initial=0) < 0 or sketches.max(initial=0) >= self.data.num_sketches:
            raise ArgumentError(f"sketch indices must lie in [0, {self.data.num_sketches}), got {sketches.tolist()}")
        self.sketch[ids] = sketches
        self.t[ids] = 0
        self.photo[ids] = self.data.photo_index[sketches]
        self.prev_tau[ids] = np.nan
        self.started[ids] = True

    def observe(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Observations of envs ``ids`` (all by default): float32 ``(len(ids), F [+ 1])``, a fresh array.
        After the last step an env observes its complete sketch again."""
        ids = slice(None) if ids is None else np.asarray(ids, dtype=np.int64)
        shown = np.minimum(self.t[ids], self.steps - 1)
        feats = np.asarray(self.data.sketch_features[self.data.rows(self.sketch[ids]), shown], dtype=np.float32)
        if self.data.lazy and len(feats) and np.abs(feats).max() > self.options.obs_bound:
            top = float(np.abs(feats).max())
            raise ArgumentError(
                f"sketch features reach |f| = {top:.4g}, beyond obs_bound={self.options.obs_bound:g}: "
                f"pass a larger obs_bound (e.g. obs_bound={2 ** math.ceil(math.log2(top)):g})")
        if not self.options.observe_progress:
            return feats
        progress = ((shown + 1) / self.steps).astype(np.float32)
        return np.concatenate([feats, progress[:, None]], axis=1)

    # -- a step --------------------------------------------------------------------------------------
    def _queries(self, actions: np.ndarray, ids: np.ndarray) -> np.ndarray:
        a = as_actions(actions, (len(ids), self.data.embed_dim))
        own = None
        if self.options.action == "residual":
            own = np.asarray(self.data.queries[self.data.rows(self.sketch[ids]), self.t[ids]], dtype=np.float32)
        return step.queries_from_actions(a, own)

    def _step_arrays(self, q: np.ndarray, sel: slice | np.ndarray, first: np.ndarray) -> step.StepResult:
        """:func:`sketch_env.envs.step.retrieval_step` of envs ``sel``, on NumPy or on the torch device; the
        rankings are kept for the next step, the result comes back as NumPy arrays."""
        o = self.options
        args = dict(scheme=o.reward, gamma1=o.gamma1, gamma2=o.gamma2, scale=o.reward_scale, kendall_tau=o.kendall)
        if self.compute == "torch":
            torch = self._torch
            dev = self.device
            rows = sel if isinstance(sel, slice) else torch.from_numpy(sel).to(dev)
            res = step.retrieval_step(
                torch.from_numpy(q).to(dev), self._gallery_rows, torch.from_numpy(self.photo[sel]).to(dev),
                self.order[rows], torch.from_numpy(self.prev_tau[sel]).to(dev), torch.from_numpy(first).to(dev),
                **args)
            self.order[rows] = res.order
            return step.StepResult(*(None if x is None else x.cpu().numpy() for x in (
                res.reward, res.local, res.glob, res.rank, res.tau, res.order[:, : self.k], None)))
        # a single env stays serial: waking numba's thread pool costs more than one row's work
        kernel = "numba" if len(first) == 1 and self.kernel == "numba-parallel" else self.kernel
        # one BLAS thread: the product is small (N x (d + 2) x P, as fast on one core), and OpenBLAS's idle
        # threads keep spinning after it, taking the cores from numba's threads in the ranking kernel next
        with _blas_threads().limit(limits=1):
            res = step.retrieval_step(q, self._prepared, self.photo[sel], self.order[sel], self.prev_tau[sel],
                                      first, kernel=kernel, **args)
        self.order[sel] = res.order
        res.order = res.order[:, : self.k]
        return res

    def step(self, actions: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Step envs ``ids`` (all by default) with ``actions (len(ids), d)``.

        Returns ``(reward float64, terminated bool, info)`` for those envs, ``info`` a dict of arrays:
        ``rank``, ``percentile``, ``kendall_tau`` (``tau(L_prev, L)``, NaN at an episode's first step),
        ``photo_index``, ``topk (len, k)``, ``sketch_index``, ``step`` (1-based), ``local_reward``,
        ``global_reward``.
        """
        every = ids is None
        ids = np.arange(self.num_envs) if every else np.asarray(ids, dtype=np.int64)
        if not self.started[ids].all() or (self.t[ids] >= self.steps).any():
            raise RuntimeError("step() on an episode that has not started or has ended: call reset() first")
        q = self._queries(actions, ids)
        first = self.t[ids] == 0
        sel = slice(None) if every else ids  # all envs: views, not copies
        res = self._step_arrays(q, sel, first)
        rank = np.asarray(res.rank, dtype=np.int64)
        self.prev_tau[ids] = res.tau
        self.t[ids] += 1
        terminated = self.t[ids] >= self.steps
        info = {
            "rank": rank,
            "percentile": np.asarray(metrics.ranking_percentile(rank, self.gallery_size), dtype=np.float64),
            "kendall_tau": np.asarray(res.tau, dtype=np.float64),
            "photo_index": self.photo[ids].copy(),
            "topk": np.asarray(res.order, dtype=np.int64),
            "sketch_index": self.sketch[ids].copy(),
            "step": self.t[ids].copy(),
            "local_reward": np.asarray(res.local, dtype=np.float64),
            "global_reward": np.asarray(res.glob, dtype=np.float64),
        }
        self.last_info = info
        return np.asarray(res.reward, dtype=np.float64), terminated, info

    def state_for(self, i: int) -> dict[str, Any]:
        """Env ``i``'s episode position, for rendering."""
        return {"sketch": int(self.sketch[i]), "t": int(self.t[i]), "photo": int(self.photo[i])}
