"""The policy-gradient losses, defined once and used by every training path (SB3-based and fast).

Every function reduces over the last dimension only: on a minibatch ``(B,)`` (the SB3 path) it returns a
scalar, on ``(K, B)`` (K agents side by side, the fast trainer) one value per agent.

Notation: for a minibatch of (observation, action) pairs, ``log_prob`` = log pi_theta(a|s) under the
policy being optimised, ``old_log_prob`` = log pi_old(a|s) under the policy that collected the data,
``ratio`` r = exp(log_prob - old_log_prob) and ``advantages`` A (already normalised when the algorithm
normalises them). Every function returns a scalar tensor to minimise.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "diag_gaussian_log_prob",
    "diag_gaussian_entropy",
    "ppo_loss",
    "vpg_total_loss",
    "clipped_surrogate_loss",
    "kl_penalty_surrogate_loss",
    "vpg_loss",
    "value_loss",
    "entropy_loss",
    "diag_gaussian_kl",
    "approx_kl",
    "normalise_advantages",
    "adapt_kl_coef",
]


def normalise_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(A - mean A) / (std A + eps)``; unchanged for a single sample (as SB3 does, GH #325)."""
    if advantages.shape[-1] <= 1:
        return advantages
    return (advantages - advantages.mean(-1, keepdim=True)) / (advantages.std(-1, keepdim=True) + eps)


def clipped_surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                           clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), negated:

    ``L = -mean( min(r A, clip(r, 1 - eps, 1 + eps) A) )``.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    return -torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean(-1)


def kl_penalty_surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                              kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """PPO's KL-penalised surrogate (Schulman et al. 2017, eq. 8), negated:

    ``L = -mean(r A) + beta * mean(KL[pi_old(.|s) || pi_theta(.|s)])`` with ``kl`` the per-sample KL.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    return -(advantages * ratio).mean(-1) + kl_coef * kl.mean(-1)


def adapt_kl_coef(kl_coef: float, kl: float, target_kl: float, factor: float = 2.0, tolerance: float = 1.5) -> float:
    """The adaptive KL coefficient of Schulman et al. 2017, sec. 4, applied after each policy update:

    ``d < d_targ / 1.5 -> beta / 2``; ``d > d_targ * 1.5 -> beta * 2``; otherwise unchanged.
    """
    if kl < target_kl / tolerance:
        return kl_coef / factor
    if kl > target_kl * tolerance:
        return kl_coef * factor
    return kl_coef


def vpg_loss(log_prob: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Vanilla policy gradient (REINFORCE): ``L = -mean(log pi(a|s) * w)``.

    With ``w`` = each step's own reward (the authors' released code: no discount, no baseline) or a
    return minus a baseline.
    """
    return -(log_prob * weights).mean(-1)


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The critic's regression loss ``mean((V(s) - R)^2)``."""
    return torch.mean((returns - values) ** 2, dim=-1)


def entropy_loss(entropy: torch.Tensor) -> torch.Tensor:
    """``-mean(H)``: minimising it raises the policy's entropy."""
    return -entropy.mean(-1)


def diag_gaussian_kl(old_mean: torch.Tensor, old_log_std: torch.Tensor, mean: torch.Tensor,
                     log_std: torch.Tensor) -> torch.Tensor:
    """Exact ``KL[N(mu0, s0^2) || N(mu1, s1^2)]`` per sample, summed over the action dimensions:

    ``sum_i log(s1/s0) + (s0^2 + (mu0 - mu1)^2) / (2 s1^2) - 1/2``.
    """
    var0, var1 = torch.exp(2 * old_log_std), torch.exp(2 * log_std)
    kl = log_std - old_log_std + (var0 + (old_mean - mean) ** 2) / (2 * var1) - 0.5
    return kl.sum(dim=-1)


def approx_kl(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    """The sample estimate of ``KL[pi_old || pi]`` that SB3 logs: ``mean((r - 1) - log r)`` (Schulman's k3)."""
    log_ratio = log_prob - old_log_prob
    return torch.mean(torch.exp(log_ratio) - 1 - log_ratio, dim=-1)


def diag_gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log pi(a|s)`` of the diagonal Gaussian, summed over the action dimensions (as SB3's
    ``DiagGaussianDistribution``): ``sum_i -(a_i - mu_i)^2 / (2 s_i^2) - log s_i - log sqrt(2 pi)``."""
    return (-((actions - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std
            - math.log(math.sqrt(2 * math.pi))).sum(-1)


def diag_gaussian_entropy(log_std: torch.Tensor, batch_shape: tuple[int, ...]) -> torch.Tensor:
    """``H = sum_i 1/2 + log sqrt(2 pi) + log s_i`` per sample (state-independent ``log_std`` ``(..., d)``),
    broadcast to ``batch_shape`` (``log_std``'s leading dimensions, then the samples)."""
    h = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
    return h.reshape(*h.shape, *([1] * (len(batch_shape) - h.dim()))).expand(batch_shape)


def ppo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, entropy: torch.Tensor,
             values: torch.Tensor, returns: torch.Tensor, *, ent_coef: float, vf_coef: float, critic: bool,
             normalize_advantage: bool, clip_range: float | None = None, kl: torch.Tensor | None = None,
             kl_coef: float | torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """One PPO minibatch's objective, as both training paths compute it:

    ``L = L_pg + c_H * (-mean H) + [critic] c_V * mean((V - R)^2)`` with ``L_pg`` the clipped surrogate
    (``kl`` None) or the KL-penalised one (``kl`` the per-sample KL, ``kl_coef`` beta); advantages normalised
    over the minibatch first when ``normalize_advantage``. Returns ``(L, L_pg, L_V, L_H)``.
    """
    if normalize_advantage:
        advantages = normalise_advantages(advantages)
    if kl is None:
        pg = clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip_range)
    else:
        pg = kl_penalty_surrogate_loss(log_prob, old_log_prob, advantages, kl, kl_coef)
    v = value_loss(values, returns)
    e = entropy_loss(entropy)
    total = pg + ent_coef * e + (vf_coef * v if critic else 0.0)
    return total, pg, v, e


def vpg_total_loss(log_prob: torch.Tensor, advantages: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor,
                   returns: torch.Tensor, *, ent_coef: float, vf_coef: float, critic: bool,
                   normalize_advantage: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The vanilla policy gradient's objective, as both training paths compute it:
    ``L = -mean(log pi(a|s) w) + c_H * (-mean H) + [critic] c_V * mean((V - R)^2)`` with ``w`` the
    advantages (normalised when asked). Returns ``(L, L_pg, L_V)``."""
    weights = normalise_advantages(advantages) if normalize_advantage else advantages
    pg = vpg_loss(log_prob, weights)
    v = value_loss(values, returns)
    total = pg + ent_coef * entropy_loss(entropy)
    if critic:
        total = total + vf_coef * v
    return total, pg, v
