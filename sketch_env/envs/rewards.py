"""Reward schemes of on-the-fly retrieval ("Sketch Less for More", CVPR 2020), by name.

Pure functions on arrays of ranks and Kendall-tau distances (NumPy arrays or torch tensors), used by the
single and the batched environment and by anything that needs to recompute a reward (agents, the
multi-agent variant): one definition.

Each step ``t = 1..S`` of an episode ranks the gallery of ``N`` photos for the query; ``rank_t`` is the
true photo's rank (1-based, ties against the agent) and ``L_t`` the whole ranking. Schemes (the rows of
the paper's reward ablation):

================== ===============================================================================
``paper``          ``gamma1 * 1 / rank_t + gamma2 * g``, ``g`` the Kendall-tau term paid one step late
                   (below)
``inverse_rank``   ``1 / rank_t``
``inverse_sqrt_rank`` ``1 / sqrt(rank_t)``
``neg_rank``       ``-rank_t`` (the paper's ``-rank``, not normalised; scale it with ``reward_scale``)
``top1``           ``1`` if ``rank_t <= 1`` else ``0``
``top5``           ``1`` if ``rank_t <= 5`` else ``0``
``top10``          ``1`` if ``rank_t <= 10`` else ``0``
================== ===============================================================================

**The Kendall-tau term.** The paper's global reward of step ``t`` is

    g_t = -max(0, tau(L_t, L_{t+1}) - tau(L_{t-1}, L_t))        for t = 2 .. S-1

(``tau``: :mod:`sketch_env.envs.kendall`). It punishes a step whose ranking churns more than the step
before. It needs ``L_{t-1}`` (none at ``t = 1``) and ``L_{t+1}`` (none at ``t = S``), so it is defined for
``t = 2 .. S-1`` only, and it is paid when ``L_{t+1}`` exists, at step ``t + 1``:

    R_1 = gamma1 / rank_1,   R_2 = gamma1 / rank_2,   R_t = gamma1 / rank_t + gamma2 * g_{t-1}  (t = 3 .. S)

so steps 1 and 2 pay no global term, the last step ``S`` pays ``g_{S-1}``, and every episode's return is
exactly ``gamma1 * sum_{t=1}^{S} 1 / rank_t + gamma2 * sum_{t=2}^{S-1} g_t`` (:func:`paper_return`). At
step ``t`` the environment knows ``tau_t = tau(L_{t-1}, L_t)`` and the previous one ``tau_{t-1}``, and
``g_{t-1} = -max(0, tau_t - tau_{t-1})`` (:func:`kendall_term`; NaN taus, i.e. undefined ones, give 0).
gamma1 and gamma2 are unverified in the paper (1 and 1 by default here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = [
    "REWARD_SCHEMES",
    "needs_kendall",
    "local_reward",
    "kendall_term",
    "step_reward",
    "paper_return",
]

REWARD_SCHEMES = ("paper", "inverse_rank", "inverse_sqrt_rank", "neg_rank", "top1", "top5", "top10")
_TOP_K = {"top1": 1, "top5": 5, "top10": 10}


def _check_scheme(scheme: str) -> None:
    if scheme not in REWARD_SCHEMES:
        raise ArgumentError(f"unknown reward scheme {scheme!r}; choose one of {', '.join(REWARD_SCHEMES)}")


def needs_kendall(scheme: str) -> bool:
    """Whether the scheme uses the Kendall-tau term (only ``paper``)."""
    _check_scheme(scheme)
    return scheme == "paper"


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def local_reward(scheme: str, rank: Any) -> Any:
    """The per-step term of ``scheme`` from ranks (1-based), float64 like ``rank``'s array type:
    ``1 / rank`` for ``paper`` and ``inverse_rank``; see the module table for the others."""
    _check_scheme(scheme)
    r = rank.double() if _is_torch(rank) else np.asarray(rank, dtype=np.float64)
    if scheme in ("paper", "inverse_rank"):
        return 1.0 / r
    if scheme == "inverse_sqrt_rank":
        return r**-0.5
    if scheme == "neg_rank":
        return -r
    return (r <= _TOP_K[scheme]) * 1.0


def kendall_term(tau: Any, tau_before: Any) -> Any:
    """``-max(0, tau - tau_before)``, elementwise; 0 where either is NaN (undefined at the episode's
    boundary steps, module docstring)."""
    if _is_torch(tau):
        import torch

        return torch.nan_to_num(-(tau - tau_before).clamp(min=0.0), nan=0.0)
    diff = np.asarray(tau, dtype=np.float64) - np.asarray(tau_before, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(-np.maximum(diff, 0.0), nan=0.0)


def step_reward(
    scheme: str,
    rank: Any,
    tau: Any = None,
    tau_before: Any = None,
    gamma1: float = 1.0,
    gamma2: float = 1.0,
    scale: float = 1.0,
) -> tuple[Any, Any, Any]:
    """The reward of one step and its parts: ``(reward, local, global)``.

    ``local`` is :func:`local_reward`; ``global`` is :func:`kendall_term` ``(tau, tau_before)`` for ``paper``
    (``tau = tau(L_{t-1}, L_t)``, ``tau_before = tau(L_{t-2}, L_{t-1})``) and 0 otherwise;
    ``reward = scale * (gamma1 * local + gamma2 * global)`` for ``paper``, ``scale * local`` otherwise.
    """
    local = local_reward(scheme, rank)
    if scheme != "paper":
        return scale * local, local, local * 0.0
    if tau is None or tau_before is None:
        raise ArgumentError("the 'paper' reward needs the Kendall-tau distances tau and tau_before")
    glob = kendall_term(tau, tau_before)
    return scale * (gamma1 * local + gamma2 * glob), local, glob


def paper_return(ranks: np.ndarray, taus: np.ndarray, gamma1: float = 1.0, gamma2: float = 1.0) -> float:
    """The ``paper`` return of one episode from its ranks ``(S,)`` and ``taus (S-1,)`` with
    ``taus[t-1] = tau(L_t, L_{t+1})``: ``gamma1 * sum_t 1 / rank_t + gamma2 * sum_{t=2}^{S-1} g_t``."""
    r = np.asarray(ranks, dtype=np.float64)
    tau = np.asarray(taus, dtype=np.float64)
    if tau.shape != (max(len(r) - 1, 0),):
        raise ArgumentError(f"{len(r)} ranks need {max(len(r) - 1, 0)} taus, got shape {tau.shape}")
    g = -np.maximum(0.0, tau[1:] - tau[:-1])  # g_t for t = 2 .. S-1
    return float(gamma1 * np.sum(1.0 / r) + gamma2 * np.sum(g))
