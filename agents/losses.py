"""The policy-gradient losses, defined once and used by every training path (SB3-based and fast).

Notation: for a minibatch of (observation, action) pairs, ``log_prob`` = log pi_theta(a|s) under the
policy being optimised, ``old_log_prob`` = log pi_old(a|s) under the policy that collected the data,
``ratio`` r = exp(log_prob - old_log_prob) and ``advantages`` A (already normalised when the algorithm
normalises them). Every function returns a scalar tensor to minimise.
"""

from __future__ import annotations

import torch

__all__ = [
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
    if advantages.numel() <= 1:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                           clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), negated:

    ``L = -mean( min(r A, clip(r, 1 - eps, 1 + eps) A) )``.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    return -torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()


def kl_penalty_surrogate_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                              kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """PPO's KL-penalised surrogate (Schulman et al. 2017, eq. 8), negated:

    ``L = -mean(r A) + beta * mean(KL[pi_old(.|s) || pi_theta(.|s)])`` with ``kl`` the per-sample KL.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    return -(advantages * ratio).mean() + kl_coef * kl.mean()


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
    return -(log_prob * weights).mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The critic's regression loss ``mean((V(s) - R)^2)``."""
    return torch.mean((returns - values) ** 2)


def entropy_loss(entropy: torch.Tensor) -> torch.Tensor:
    """``-mean(H)``: minimising it raises the policy's entropy."""
    return -entropy.mean()


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
    return torch.mean(torch.exp(log_ratio) - 1 - log_ratio)
