"""The one policy every method uses: a diagonal Gaussian whose mean is linear in the observation feature.

``pi(a | s) = N(mu(s), diag(sigma^2))`` with ``mu(s) = W s + b`` (one linear layer on the frozen backbone's
feature of the partial sketch) and ``log sigma`` a learnable vector independent of the state (initial
``sigma = exp(log_std_init)``; the paper: 1.0). The action is the query embedding (the env normalises it
before ranking).

``W, b`` can be initialised from the backend's own final layer (:meth:`LinearGaussianPolicy.init_mean_from`),
so the mean action of the untrained policy is the frozen model's query and training starts from its ranks.

The actor-critic methods add a value head ``V(s)`` (an MLP on the same feature, ``critic_arch``); the
actor-only methods (the paper's final PPO-A) have no critic: ``V(s) = 0`` with no parameters, so the
advantage is the (discounted) return itself, normalised over the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sketch_env.errors import ArgumentError

__all__ = ["LinearGaussianPolicy", "ZeroValue", "ScaledFlatten"]


class ScaledFlatten(BaseFeaturesExtractor):
    """``x -> obs_scale * flatten(x)`` with a fixed scalar.

    Why: the backbone's features have an L1 norm of several hundred, so the query layer's weights are
    about 1e-3; Adam moves every weight by about the learning rate per step, which at 3e-4 would change
    the mean action by more than its own size in one step. Scaling the input by ``1 / mean ||f||_1``
    (computed on the training split) brings the weights to order 1, so the usual learning rates apply.
    """

    def __init__(self, observation_space: spaces.Box, obs_scale: float = 1.0) -> None:
        super().__init__(observation_space, int(np.prod(observation_space.shape)))
        self.obs_scale = float(obs_scale)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.flatten(observations, start_dim=1) * self.obs_scale


class ZeroValue(nn.Module):
    """``V(s) = 0``: the value head of the actor-only methods (no parameters, no gradient)."""

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.zeros(latent.shape[0], 1, dtype=latent.dtype, device=latent.device)


class LinearGaussianPolicy(ActorCriticPolicy):
    """SB3 ``ActorCriticPolicy`` with a linear Gaussian actor and an optional critic (see the module docstring).

    Args (beyond SB3's):
        critic: whether the policy has a value head (actor-critic methods, TRPO) or ``V = 0`` (actor only).
        critic_arch: hidden sizes of the value MLP.
    """

    def __init__(self, observation_space, action_space, lr_schedule, critic: bool = True,
                 critic_arch: list[int] | None = None, critic_lr: float | None = None, log_std_init: float = 0.0,
                 obs_scale: float = 1.0, **kwargs: Any) -> None:
        self.obs_scale = float(obs_scale)
        kwargs.pop("features_extractor_class", None)
        kwargs["features_extractor_kwargs"] = {"obs_scale": self.obs_scale}
        self.critic = bool(critic)
        self.critic_arch = list(critic_arch) if critic_arch is not None else [64, 64]
        self.critic_lr = critic_lr
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule,
                         net_arch={"pi": [], "vf": self.critic_arch if self.critic else []},
                         log_std_init=log_std_init, features_extractor_class=ScaledFlatten, **kwargs)
        if not self.critic:
            self.value_net = ZeroValue()
        # one optimiser, two parameter groups: the critic's learning rate is ``critic_lr`` (paper-notes: 1e-3
        # against the actor's 3e-4); the algorithms rescale it with the schedule through ``lr_scale``
        critic_params = list(self.mlp_extractor.value_net.parameters()) + list(self.value_net.parameters())
        critic_ids = {id(q) for q in critic_params}
        actor_params = [q for q in self.parameters() if id(q) not in critic_ids]
        groups = [{"params": actor_params, "lr_scale": 1.0}]
        if critic_params:
            scale = 1.0 if critic_lr is None else float(critic_lr) / float(lr_schedule(1))
            groups.append({"params": critic_params, "lr_scale": scale})
        self.optimizer = self.optimizer_class(groups, lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("net_arch", None)
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        data.update(critic=self.critic, critic_arch=self.critic_arch, critic_lr=self.critic_lr,
                    obs_scale=self.obs_scale)
        return data

    @property
    def mean_layer(self) -> nn.Linear:
        """The linear layer ``mu(s) = W s + b``."""
        return self.action_net

    @torch.no_grad()
    def init_mean_from(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Set the mean layer so that ``mu(s) = weight @ s + bias`` (``weight`` ``(d, F)``; observation entries
        beyond ``F``, such as the completion fraction, get zero weight): the backend's own query layer. The
        layer sees ``obs_scale * s``, so its weight is ``weight / obs_scale``."""
        layer = self.mean_layer
        d, f_obs = layer.weight.shape
        weight = np.asarray(weight, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if weight.shape[0] != d or weight.shape[1] > f_obs or bias.shape != (d,):
            raise ArgumentError(f"query layer of shape W{weight.shape} b{bias.shape} does not fit the policy's "
                             f"mean layer ({d} x {f_obs})")
        w = torch.zeros_like(layer.weight)
        w[:, : weight.shape[1]] = torch.from_numpy(weight) / self.obs_scale
        layer.weight.copy_(w)
        layer.bias.copy_(torch.from_numpy(bias))

    @torch.no_grad()
    def zero_mean(self) -> None:
        """``W = 0, b = 0``: with the env's ``action="residual"`` the mean action reproduces the frozen model."""
        self.mean_layer.weight.zero_()
        self.mean_layer.bias.zero_()

    def mean_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """``mu(s)`` for a batch of observations (no sampling)."""
        features = self.extract_features(obs)
        latent_pi = self.mlp_extractor.forward_actor(features)
        return self.action_net(latent_pi)
