"""One step of on-the-fly retrieval, written once: queries -> distances -> ranks -> ranking and Kendall-tau
-> reward.

Every environment steps through :func:`retrieval_step`: the single env and the natively batched env (through
:class:`~sketch_env.envs.engine.RetrievalEngine`, NumPy or torch), the fast trainer's device env (torch
tensors that never leave the device) and the stroke-order game (NumPy, one query at a time). The functions
take NumPy arrays or torch tensors and return the same kind.

For ``B`` queries against a gallery of ``P`` photos:

1. ``q = normalise(a)`` (``action="direct"``) or ``q = normalise(q_own + a)`` (``"residual"``) by
   :func:`sketch_env.metrics.l2_normalise` (:func:`queries_from_actions`);
2. ``d_p = ||q - g_p||``, the float64-summed squared distance rounded to float32 once
   (:func:`sketch_env.metrics.euclidean_distance`); a zero query is at distance 1 from every photo, so all
   photos tie (:func:`distances`);
3. ``rank = #{p : d_p <= d_true}`` (1-based, ties against the agent; :func:`true_ranks`);
4. the ranking ``L`` (photos by ``(d_p, p)``) and its count of pairs discordant with the previous step's
   ranking, ``tau = disc / (P (P - 1) / 2)``, NaN at an episode's first step
   (:mod:`sketch_env.envs.kendall`);
5. the reward of :mod:`sketch_env.envs.rewards`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sketch_env import metrics
from sketch_env.envs import kendall, rewards
from sketch_env.errors import ArgumentError

__all__ = ["StepResult", "prepare_gallery", "queries_from_actions", "distances", "true_ranks",
           "ranking_and_tau", "retrieval_step", "choose_sketch"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def prepare_gallery(gallery: np.ndarray, device: Any = None) -> Any:
    """The gallery rows :func:`distances` multiplies with (:func:`sketch_env.metrics.prepare_gallery`):
    float64 NumPy, or a torch tensor on ``device`` when one is given."""
    rows = metrics.prepare_gallery(gallery)
    if device is None:
        return rows
    import torch

    return torch.from_numpy(rows).to(device)


def queries_from_actions(actions: Any, own: Any = None) -> Any:
    """``normalise(a)``, or ``normalise(own + a)`` when the backend's own queries ``own`` are given
    (``action="residual"``): float32 ``(B, d)``."""
    a = actions.float() if _is_torch(actions) else np.asarray(actions, dtype=np.float32)
    return metrics.l2_normalise(a if own is None else own + a)


def distances(q: Any, gallery_rows: Any) -> Any:
    """``(B, P)`` float32 distances of unit (or zero) queries ``q`` to the prepared gallery rows; a zero query
    is at distance 1 from every photo."""
    zero = ~(q != 0).any(1)
    if _is_torch(q):
        import torch

        q64 = q.double()
        q_rows = torch.cat([q64, (q64 * q64).sum(-1, keepdim=True), torch.ones_like(q64[:, :1])], dim=1)
        dist = (q_rows @ gallery_rows.T).float().clamp_(min=0.0).sqrt_()
        return torch.where(zero[:, None], torch.ones_like(dist), dist)
    dist = metrics.euclidean_distance(q, None, prepared=gallery_rows)
    if zero.any():
        dist[zero] = 1.0
    return dist


def true_ranks(dist: Any, photo: Any) -> Any:
    """``rank_i = #{p : d_ip <= d_i,true}`` (:func:`sketch_env.metrics.rank`), int64 ``(B,)``."""
    if _is_torch(dist):
        return (dist <= dist.gather(1, photo[:, None])).sum(1)
    return metrics.rank(dist, photo)


def ranking_and_tau(dist: Any, prev_order: Any, count: Any, kernel: str = "numba") -> tuple[Any, Any]:
    """The rankings of this step and their Kendall-tau distance to ``prev_order``: ``(order, tau)``.

    ``tau[i] = discordant(prev_order[i], order[i]) / (P (P - 1) / 2)`` where ``count[i]`` (a bool per row,
    or one Python bool for all), NaN elsewhere (an episode's first step, or no count asked for); 0 when
    ``P < 2``. NumPy distances use ``kernel`` (:func:`sketch_env.envs.kendall.ranking_and_discordant`); torch
    distances the sort-based torch count on their device, without a host synchronisation (a tensor ``count``
    is applied by masking, not by a branch).
    """
    p = dist.shape[1]
    pairs = p * (p - 1) // 2
    if _is_torch(dist):
        import torch

        order = kendall.ranking_order_torch(dist)
        tau = torch.full((dist.shape[0],), float("nan"), dtype=torch.float64, device=dist.device)
        if count is not False:
            disc = kendall.discordant_pairs_torch(prev_order, order).double()
            counted = disc / pairs if pairs else torch.zeros_like(disc)
            tau = counted if count is True else torch.where(count, counted, tau)
        return order, tau
    count = np.broadcast_to(np.asarray(count, dtype=bool), dist.shape[:1])
    order, disc = kendall.ranking_and_discordant(dist, prev_order, count, kernel)
    tau = np.full(len(count), np.nan)
    tau[count] = disc[count] / pairs if pairs else 0.0
    return order, tau


@dataclass
class StepResult:
    """What one step computed for ``B`` queries (arrays of the inputs' kind): ``reward``, its parts ``local``
    and ``glob`` (the Kendall term paid at this step), ``rank``, ``tau`` (NaN where undefined), ``order``
    (the rankings, or None when they were not needed) and ``dist``."""

    reward: Any
    local: Any
    glob: Any
    rank: Any
    tau: Any
    order: Any
    dist: Any


def retrieval_step(q: Any, gallery_rows: Any, photo: Any, prev_order: Any, prev_tau: Any, first: Any,
                   scheme: str = "paper", gamma1: float = 1.0, gamma2: float = 1.0, scale: float = 1.0,
                   kendall_tau: bool = True, need_order: bool = True, kernel: str = "numba") -> StepResult:
    """One step for queries ``q (B, d)`` (already normalised, :func:`queries_from_actions`) whose true photos
    are ``photo (B,)``: distances, ranks, rankings and Kendall-tau (against ``prev_order``; ``first`` marks
    the rows at an episode's first step, which have none), and the reward of ``scheme`` with the previous
    step's ``prev_tau``.

    ``kendall_tau=False`` skips the Kendall count (tau is NaN); ``need_order=False`` also skips the ranking
    when no count needs it (the fast trainer's rollout: only the reward is used).
    """
    dist = distances(q, gallery_rows)
    rank = true_ranks(dist, photo)
    if isinstance(first, (bool, np.bool_)):
        count: Any = bool(kendall_tau and not first)
    else:
        count = ~first if kendall_tau else first & False
    order = tau = None
    if need_order or kendall_tau:
        order, tau = ranking_and_tau(dist, prev_order, count, kernel)
    if tau is None:
        tau = dist.new_full((dist.shape[0],), float("nan"), dtype=prev_tau.dtype) if _is_torch(dist) \
            else np.full(dist.shape[0], np.nan)
    reward, local, glob = rewards.step_reward(scheme, rank, tau, prev_tau, gamma1, gamma2, scale)
    return StepResult(reward, local, glob, rank, tau, order, dist)


def choose_sketch(options: dict[str, Any] | None, num_sketches: int, order: str, episodes: int,
                  rng: np.random.Generator) -> int:
    """The sketch an episode starts on: ``options["sketch_index"]`` if given (checked), else the ``episodes``-th
    in turn (``order="sequential"``), else one drawn uniformly with ``rng`` (``order="random"``)."""
    if options and options.get("sketch_index") is not None:
        i = options["sketch_index"]
        if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)) or not 0 <= i < num_sketches:
            raise ArgumentError(f"options['sketch_index'] must be an int in [0, {num_sketches}), got {i!r}")
        return int(i)
    if order == "sequential":
        return episodes % num_sketches
    return int(rng.integers(num_sketches))
