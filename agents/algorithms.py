"""The six RL methods of the paper's comparison, on Stable-Baselines3 / sb3-contrib.

=============  ==========================================================================================
name           method
=============  ==========================================================================================
``vpg``        vanilla policy gradient as the authors' released code: ``L = -mean(log pi(a_t|s_t) r_t)``,
               each step's log-prob weighted by its own reward (no discount, no baseline), one gradient
               step per rollout; ``baseline=True`` weights by the discounted return minus a learnt V(s).
``ppo-a-clip`` PPO, clipped surrogate, actor only (V = 0; advantages = normalised returns). The paper's final
               method.
``ppo-ac-clip`` PPO, clipped surrogate, with a value head (GAE advantages, value loss).
``ppo-a-kl``   PPO with the adaptive KL penalty (Schulman et al. 2017, sec. 4), actor only.
``ppo-ac-kl``  PPO with the adaptive KL penalty, with a value head.
``trpo``       sb3-contrib's TRPO (natural gradient with a KL trust region; it needs a critic).
=============  ==========================================================================================

All use :class:`agents.policy.LinearGaussianPolicy`; the losses come from :mod:`agents.losses` (shared with
the fast trainer). SB3's own ``target_kl`` is an early stop, not the KL-penalty method; it is left unset.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import PPO
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import explained_variance

from agents import losses
from agents.policy import LinearGaussianPolicy
from sketch_env.errors import ArgumentError

__all__ = ["SketchPPO", "VPG", "SketchTRPO", "ALGORITHMS", "algorithm_spec"]


class _GroupLearningRate:
    """Scale each optimiser group's learning rate by its ``lr_scale`` (the critic's own rate)."""

    def _update_learning_rate(self, optimizers) -> None:
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)


def _gaussian_params(policy: LinearGaussianPolicy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return policy.mean_actions(obs), policy.log_std


class SketchPPO(_GroupLearningRate, PPO):
    """PPO with the clipped surrogate (``penalty="clip"``) or the adaptive KL penalty (``penalty="kl"``).

    KL penalty: the loss is ``-mean(r A) + beta KL[pi_old || pi]`` with the exact Gaussian KL; after each
    update, ``beta`` halves if the mean KL over the rollout was below ``kl_target / 1.5`` and doubles if above
    ``1.5 kl_target`` (initial ``beta = kl_coef``).
    """

    policy_aliases = {"LinearGaussianPolicy": LinearGaussianPolicy}

    def __init__(self, policy: Any, env: Any, penalty: str = "clip", kl_coef: float = 1.0,
                 kl_target: float = 0.01, **kwargs: Any) -> None:
        if penalty not in ("clip", "kl"):
            raise ArgumentError(f"penalty must be 'clip' or 'kl', got {penalty!r}")
        self.penalty = penalty
        self.kl_coef = float(kl_coef)
        self.kl_target = float(kl_target)
        super().__init__(policy, env, **kwargs)

    def train(self) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        old_policy = copy.deepcopy(self.policy) if self.penalty == "kl" else None
        pg_losses, value_losses, entropy_losses, kls, clip_fractions = [], [], [], [], []
        for _ in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, batch.actions)
                kl = None
                if self.penalty == "kl":
                    with torch.no_grad():
                        old_mean, old_log_std = _gaussian_params(old_policy, batch.observations)
                    mean, log_std = _gaussian_params(self.policy, batch.observations)
                    kl = losses.diag_gaussian_kl(old_mean, old_log_std, mean, log_std)
                loss, pg_loss, v_loss, e_loss = losses.ppo_loss(
                    log_prob, batch.old_log_prob, batch.advantages, entropy if entropy is not None else -log_prob,
                    values.flatten(), batch.returns, ent_coef=self.ent_coef, vf_coef=self.vf_coef,
                    critic=self.policy.critic, normalize_advantage=self.normalize_advantage, clip_range=clip_range,
                    kl=kl, kl_coef=self.kl_coef)
                self.policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                with torch.no_grad():
                    kls.append(losses.approx_kl(log_prob, batch.old_log_prob).item())
                    clip_fractions.append(torch.mean((torch.abs(torch.exp(log_prob - batch.old_log_prob) - 1)
                                                      > clip_range).float()).item())
                pg_losses.append(pg_loss.item())
                value_losses.append(v_loss.item())
                entropy_losses.append(e_loss.item())
            self._n_updates += 1
        if self.penalty == "kl":
            mean_kl = self._rollout_kl(old_policy)
            self.logger.record("train/kl", mean_kl)
            self.kl_coef = losses.adapt_kl_coef(self.kl_coef, mean_kl, self.kl_target)
            self.logger.record("train/kl_coef", self.kl_coef)
        self.logger.record("train/policy_gradient_loss", float(np.mean(pg_losses)))
        self.logger.record("train/value_loss", float(np.mean(value_losses)))
        self.logger.record("train/entropy_loss", float(np.mean(entropy_losses)))
        self.logger.record("train/approx_kl", float(np.mean(kls)))
        self.logger.record("train/clip_fraction", float(np.mean(clip_fractions)))
        self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        if self.policy.critic:
            self.logger.record("train/explained_variance", explained_variance(
                self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    @torch.no_grad()
    def _rollout_kl(self, old_policy: LinearGaussianPolicy) -> float:
        """Mean exact KL[pi_old || pi] over the rollout's observations (drives the adaptive coefficient)."""
        obs = torch.as_tensor(self.rollout_buffer.observations, device=self.device).reshape(
            -1, *self.observation_space.shape)
        old_mean, old_log_std = _gaussian_params(old_policy, obs)
        mean, log_std = _gaussian_params(self.policy, obs)
        return losses.diag_gaussian_kl(old_mean, old_log_std, mean, log_std).mean().item()


class VPG(_GroupLearningRate, OnPolicyAlgorithm):
    """Vanilla policy gradient (see the module docstring).

    Args:
        baseline: ``False`` (the authors' code): weights = each step's own reward (``gamma = 0``, ``V = 0``);
            ``True``: weights = GAE advantages with a learnt critic (``gamma``, ``gae_lambda`` apply).
        n_epochs: gradient steps per rollout (1: one full-batch step, as the authors' code).
    """

    policy_aliases = {"LinearGaussianPolicy": LinearGaussianPolicy}

    def __init__(self, policy: Any, env: Any, learning_rate: float = 1e-3, n_steps: int = 20,
                 gamma: float = 0.0, gae_lambda: float = 1.0, vf_coef: float = 0.5, ent_coef: float = 0.0,
                 max_grad_norm: float = 40.0, n_epochs: int = 1, baseline: bool = False,
                 normalize_advantage: bool = False, _init_setup_model: bool = True, **kwargs: Any) -> None:
        self.baseline = bool(baseline)
        self.n_epochs = int(n_epochs)
        self.normalize_advantage = bool(normalize_advantage)
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=n_steps,
                         gamma=gamma if baseline else 0.0, gae_lambda=gae_lambda, ent_coef=ent_coef,
                         vf_coef=vf_coef, max_grad_norm=max_grad_norm, use_sde=False, sde_sample_freq=-1,
                         supported_action_spaces=(spaces.Box,), _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        pg_losses, value_losses = [], []
        for _ in range(self.n_epochs):
            for batch in self.rollout_buffer.get(None):  # the whole rollout: one gradient step
                values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, batch.actions)
                loss, pg_loss, v_loss = losses.vpg_total_loss(
                    log_prob, batch.advantages, entropy if entropy is not None else -log_prob, values.flatten(),
                    batch.returns, ent_coef=self.ent_coef, vf_coef=self.vf_coef, critic=self.policy.critic,
                    normalize_advantage=self.normalize_advantage)
                self.policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                pg_losses.append(pg_loss.item())
                value_losses.append(v_loss.item())
            self._n_updates += 1
        self.logger.record("train/policy_gradient_loss", float(np.mean(pg_losses)))
        self.logger.record("train/value_loss", float(np.mean(value_losses)))
        self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")


class SketchTRPO(_GroupLearningRate, TRPO):
    """sb3-contrib's TRPO with the project's policy (always with a critic)."""

    policy_aliases = {"LinearGaussianPolicy": LinearGaussianPolicy}


# name -> (class, fixed constructor arguments, fixed policy arguments)
ALGORITHMS: dict[str, tuple[type, dict[str, Any], dict[str, Any]]] = {
    "vpg": (VPG, {}, {"critic": False}),
    "ppo-a-clip": (SketchPPO, {"penalty": "clip"}, {"critic": False}),
    "ppo-ac-clip": (SketchPPO, {"penalty": "clip"}, {"critic": True}),
    "ppo-a-kl": (SketchPPO, {"penalty": "kl"}, {"critic": False}),
    "ppo-ac-kl": (SketchPPO, {"penalty": "kl"}, {"critic": True}),
    "trpo": (SketchTRPO, {}, {"critic": True}),
}


def algorithm_spec(name: str) -> tuple[type, dict[str, Any], dict[str, Any]]:
    """``(class, fixed kwargs, fixed policy kwargs)`` of a method name; a clear error for unknown names."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ArgumentError(f"unknown RL method {name!r}; choose one of {sorted(ALGORITHMS)}") from None
