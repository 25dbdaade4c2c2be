"""The fast trainer: env, policy and update on one torch device, K agents at once (``sketch-env train --trainer fast``).

The SB3 path (:mod:`agents.train`) steps the env from Python, converts every step's arrays to per-env info
dicts, samples through distribution objects and updates through SB3's rollout buffer, with a ``.item()`` or
two per minibatch. Here one rollout is ``n_steps`` calls of :class:`~agents.fast.env.DeviceRetrievalEnv`
writing into preallocated tensors shaped ``(n_steps, K, n_envs, ...)``, and the update runs the methods'
objectives from :mod:`agents.losses` (the functions the SB3 path calls: one definition of each loss) on
minibatches gathered on the device.

**One policy class.** Each agent is an SB3 model of its method built exactly as the SB3 path builds it
(:func:`agents.train.build_agent`: same seed, same initial weights, the mean layer started from the backend).
The parameters of their :class:`~agents.policy.LinearGaussianPolicy` modules are stacked along an agent
dimension and evaluated by :func:`batched_forward` (one batched product per layer, vmap-style), and the losses
reduce per agent, so K agents with different seeds train in one process as K independent runs: each has its
own envs, its own sketch, noise and minibatch generators, its own advantage normalisation, gradient-norm clip,
KL coefficient and Adam moments (Adam is elementwise, so one Adam over stacked tensors is K Adams). At every
evaluation the stacked weights are copied back into the SB3 models, which are validated and saved by the SB3
path's own code (``best.zip`` / ``last.zip`` / ``history.jsonl`` in ``<out>/<algo>-s<seed>/``), so
``sketch-env evaluate`` and :func:`agents.io.load_agent` read a fast run as any other, and a fast run's checkpoint is
an SB3 model.

Methods: ``vpg``, ``ppo-a-clip``, ``ppo-ac-clip``, ``ppo-a-kl``, ``ppo-ac-kl`` with the YAML
hyper-parameters of the SB3 path (same ``n_envs``, ``n_steps``, ``batch_size``, ``n_epochs``, so the same
number of gradient steps per env step). TRPO (a conjugate-gradient step) stays on sb3-contrib.

What is not bit-identical to the SB3 path: the random streams (sketches, action noise and minibatch
permutations come from per-agent torch generators, not from SB3's global NumPy/torch state), so a seed
gives a different run than ``sketch-env train`` with the same seed, from the same distribution. Resuming:
``fast_state.pt`` in each agent folder holds its weights, Adam moments, generators, KL coefficient and
step count (read with ``torch.load(weights_only=True)``); a killed run restarted with the same arguments
continues where its last evaluation left it, bit for bit.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import losses
from agents.config import check_rl_target, load_hyperparams
from agents.envs import env_short_name, make_native_vec_env
from agents.fast.env import DeviceRetrievalEnv
from agents.policy import LinearGaussianPolicy, ZeroValue
from agents.train import (
    RESUME_IGNORES,
    RLTrainConfig,
    TrainingRun,
    build_agent,
    read_run_config,
    run_config_of,
    split_hyperparams,
)
from sketch_env.cache import atomic_path, data_dir, write_json
from sketch_env.config import check_config
from sketch_env.device import resolve_device
from sketch_env.envs.sb3 import SB3VecEnv
from sketch_env.errors import ArgumentError
from sketch_env.limits import load_torch_file
from sketch_env.log import logger
from sketch_env.runs import check_resume, read_resume_file, run_lock

__all__ = ["FastTrainConfig", "FastTrainer", "train_fast", "FAST_ALGORITHMS"]

FAST_ALGORITHMS = ("vpg", "ppo-a-clip", "ppo-ac-clip", "ppo-a-kl", "ppo-ac-kl")
STATE_FILE = "fast_state.pt"


@dataclass
class FastTrainConfig:
    algo: str = "ppo-a-clip"
    env_id: str = "SketchEnv/OnTheFly-Kanji-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    """one agent per seed, trained side by side in this process"""
    timesteps: int | None = None
    """env steps per agent (default: the hyper-parameter file's n_timesteps)"""
    minutes: float | None = None
    device: str = "auto"
    """where env, policy and update run (:func:`sketch_env.device.resolve_device`: CUDA when present, the point
    of this trainer)"""
    compute: str = "auto"
    """the env engine (agents.fast.env): auto = numba on the CPU, torch on a GPU"""
    eval_every: int = 100_000
    compile: str | None = None
    """``torch.compile`` backend for the policy forward and the loss (``"inductor"``; ``None``: eager; see
    :class:`FastTrainer`)"""
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    """root folder; agent k writes <out>/<algo>-s<seed_k> (default runs/agents-fast/<env>)"""
    agent_dirs: list[str] | None = None
    """each agent's folder, in the order of seeds (overrides out)"""
    progress: bool = True

    def __post_init__(self) -> None:
        check_config(self, {"timesteps": (0, 10**12), "minutes": (0, None), "eval_every": (1, None)})
        check_rl_target(self.algo, self.env_id, self.env_kwargs, self.overrides)

    def root(self) -> Path:
        return Path(self.out) if self.out else data_dir("agents-fast") / env_short_name(self.env_id)

    def agent_dir(self, seed: int) -> Path:
        if self.agent_dirs is not None:
            if len(self.agent_dirs) != len(self.seeds):
                raise ArgumentError(f"agent_dirs names {len(self.agent_dirs)} folders for {len(self.seeds)} seeds")
            return Path(self.agent_dirs[self.seeds.index(seed)])
        return self.root() / f"{self.algo}-s{seed}"


def batched_forward(policy: LinearGaussianPolicy, params: dict[str, torch.Tensor], obs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mu(s), log sigma, V(s))`` of K stacked copies of ``policy``: ``obs (K, B, F)``, every parameter of
    ``params`` stacked along a first agent dimension (``policy.state_dict()`` names).

    It walks the policy's own modules (features: ``obs_scale * s``; the actor and critic MLPs; the mean and
    value layers) and evaluates each ``Linear`` as one batched product ``baddbmm`` over the agents, so K
    agents cost one call per layer (what ``vmap`` would do, without its per-call overhead on small
    tensors). Parameter-free activations are applied as they are; any other module is refused.
    """

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), x, params[f"{name}.weight"].transpose(1, 2))

    def run(module: torch.nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, torch.nn.Sequential):
            for i, sub in enumerate(module):
                x = run(sub, f"{name}.{i}", x)
            return x
        if isinstance(module, torch.nn.Linear):
            return linear(x, name)
        if isinstance(module, ZeroValue):
            return x.new_zeros(*x.shape[:-1], 1)
        if not any(True for _ in module.parameters()) and not list(module.children()):
            return module(x)  # an activation
        raise ArgumentError(f"batched_forward evaluates Linear layers and activations; {name} is "
                            f"{type(module).__name__}")

    features = obs * policy.obs_scale  # ScaledFlatten (observations are flat)
    latent_pi = run(policy.mlp_extractor.policy_net, "mlp_extractor.policy_net", features)
    latent_vf = run(policy.mlp_extractor.value_net, "mlp_extractor.value_net", features)
    mean = run(policy.action_net, "action_net", latent_pi)
    values = run(policy.value_net, "value_net", latent_vf).squeeze(-1)
    return mean, params["log_std"], values


class FastTrainer:
    """K agents of one method on a :class:`DeviceRetrievalEnv` (module docstring).

    Args:
        models: the K SB3 models (from :func:`agents.train.build_agent`); their policies are the starting
            weights, and are written back by :meth:`sync_to_models`.
        env: the device env, ``K * n_envs`` envs in K groups.
        algo, hp: the method and its hyper-parameters (the YAML block).
        seeds: one per agent (noise and minibatch generators).
        compile: a ``torch.compile`` backend (``"inductor"``, or ``"aot_eager"`` to check the graph capture
            without code generation) applied to the two hot functions: the rollout's batched forward and the
            minibatch objective (forward + losses; its backward is compiled with it by AOTAutograd). ``None``
            (default): eager. Off by default because on a CPU it did not pay: 0.9x to 1.1x the eager trainer's
            env-steps/s depending on the method, after 10 to 20 s of compilation (README;
            ``benchmarks/trainer_throughput.py --compile inductor`` measures both side by side). Shapes are
            static, so each minibatch size compiles once.
    """

    def __init__(self, models: list[Any], env: DeviceRetrievalEnv, algo: str, hp: dict[str, Any], seeds: list[int],
                 device: torch.device, compile: str | None = None) -> None:
        if algo not in FAST_ALGORITHMS:
            raise ArgumentError(f"the fast trainer runs {FAST_ALGORITHMS}; {algo!r} needs the SB3 path (--trainer sb3)")
        self.models, self.env, self.algo, self.device = models, env, algo, device
        self.k = len(models)
        _, _, n_envs, _, _ = split_hyperparams(algo, hp)
        if env.num_envs != self.k * n_envs:
            raise ArgumentError(f"the env has {env.num_envs} envs; {self.k} agents x n_envs {n_envs} needed")
        self.n_envs = n_envs
        self.vpg = algo == "vpg"
        first = models[0]
        self.n_steps = int(first.n_steps)
        self.gamma, self.gae_lambda = float(first.gamma), float(first.gae_lambda)
        self.ent_coef, self.vf_coef = float(first.ent_coef), float(first.vf_coef)
        self.max_grad_norm = float(first.max_grad_norm)
        self.n_epochs = int(first.n_epochs)
        self.normalize_advantage = bool(first.normalize_advantage)
        self.batch_size = None if self.vpg else int(first.batch_size)
        self.penalty = getattr(first, "penalty", None)
        self.clip_range = None if self.vpg else float(first.clip_range(1.0))
        self.kl_target = float(getattr(first, "kl_target", 0.01))
        self.kl_coef = torch.tensor([float(getattr(m, "kl_coef", 1.0)) for m in models], dtype=torch.float32,
                                    device=device)
        self.critic = bool(first.policy.critic)
        self.action_bound = float(first.action_space.high.max())
        lr = float(first.lr_schedule(1.0))

        self.policy = first.policy
        named = [dict(m.policy.named_parameters()) for m in models]
        if any(len(dict(m.policy.named_buffers())) for m in models):
            raise ArgumentError("the fast trainer stacks parameters only; this policy has buffers")
        self.params = {name: torch.stack([nd[name].detach() for nd in named]).to(device).requires_grad_(True)
                       for name in named[0]}
        # the optimiser as the SB3 policy's: same class and options, the critic group at its own rate
        opt = first.policy.optimizer
        scale = {id(p): g.get("lr_scale", 1.0) for g in opt.param_groups for p in g["params"]}
        groups: dict[float, list[torch.Tensor]] = {}
        for name, p in self.params.items():
            groups.setdefault(scale[id(named[0][name])], []).append(p)
        options = {k: v for k, v in opt.defaults.items() if k in ("betas", "eps", "weight_decay", "amsgrad")}
        if type(opt) in (torch.optim.Adam, torch.optim.AdamW):
            options["foreach"] = True  # one multi-tensor kernel per step: the same update, fewer calls
        self.optimizer = type(opt)([{"params": ps, "lr": lr * s} for s, ps in groups.items()], lr=lr, **options)
        gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.noise_gens = [torch.Generator(device=gen_device).manual_seed(10_000 + s) for s in seeds]
        self.perm_gens = [torch.Generator().manual_seed(20_000 + s) for s in seeds]
        self.num_timesteps = 0  # env steps per agent
        self.obs = env.reset()
        t, k, n, f, d = self.n_steps, self.k, n_envs, self.obs.shape[1], env.embed_dim
        z = dict(device=device)
        self.buf = {
            "obs": torch.zeros((t, k, n, f), **z), "actions": torch.zeros((t, k, n, d), **z),
            "log_prob": torch.zeros((t, k, n), **z), "values": torch.zeros((t, k, n), **z),
            "rewards": torch.zeros((t, k, n), **z), "mean": torch.zeros((t, k, n, d), **z),
            "ranks": torch.zeros((t, k, n), dtype=torch.int64, **z),
        }
        self.dones = [False] * t
        self.timing = {"collect": 0.0, "update": 0.0}
        self._heads, self._objective = self.heads, self.objective
        if compile:
            # dynamic=False: the rollout and minibatch shapes are fixed, so static shapes give the best kernels
            self._heads = torch.compile(self.heads, backend=compile, dynamic=False)
            self._objective = torch.compile(self.objective, backend=compile, dynamic=False)

    # -- the batched policy --------------------------------------------------------------------------
    def heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu (K, B, d), log sigma (K, d), V (K, B))`` of every agent on its observations ``(K, B, F)``."""
        return batched_forward(self.policy, self.params, obs)

    def objective(self, obs, actions, old_log_prob, advantages, returns, old_mean, old_log_std):
        """Every agent's objective on its minibatch (``(K, B, ...)`` tensors): ``(L, L_pg, L_V, approx KL)``,
        each ``(K,)``, by the functions the SB3 path calls."""
        mean, log_std, values = self.heads(obs)
        log_std = log_std[:, None, :]
        log_prob = losses.diag_gaussian_log_prob(actions, mean, log_std)
        entropy = losses.diag_gaussian_entropy(log_std.squeeze(1), log_prob.shape)
        common = dict(ent_coef=self.ent_coef, vf_coef=self.vf_coef, critic=self.critic,
                      normalize_advantage=self.normalize_advantage)
        if self.vpg:
            loss, pg, v = losses.vpg_total_loss(log_prob, advantages, entropy, values, returns, **common)
            return loss, pg, v, torch.zeros_like(pg)
        kl = None
        if self.penalty == "kl":
            kl = losses.diag_gaussian_kl(old_mean, old_log_std[:, None, :].expand_as(old_mean), mean,
                                         log_std.expand_as(mean))
        loss, pg, v, _ = losses.ppo_loss(log_prob, old_log_prob, advantages, entropy, values, returns,
                                         clip_range=self.clip_range, kl=kl, kl_coef=self.kl_coef, **common)
        return loss, pg, v, losses.approx_kl(log_prob, old_log_prob)

    # -- collection ----------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> None:
        """One rollout of ``n_steps`` steps of every env into the buffers."""
        k, n, b = self.k, self.n_envs, self.action_bound
        buf = self.buf
        for t in range(self.n_steps):
            obs = self.obs.view(k, n, -1)
            mean, log_std, values = self._heads(obs)
            noise = torch.stack([torch.randn(mean.shape[1:], generator=g, device=g.device) for g in self.noise_gens])
            actions = mean + torch.exp(log_std)[:, None, :] * noise.to(mean.device)
            buf["obs"][t] = obs
            buf["actions"][t] = actions
            buf["mean"][t] = mean
            buf["values"][t] = values
            buf["log_prob"][t] = losses.diag_gaussian_log_prob(actions, mean, log_std[:, None, :])
            # SB3 clips the action to the box for the env and keeps the unclipped one for the update
            self.obs, reward, rank, done = self.env.step(actions.clamp(-b, b).reshape(k * n, -1))
            buf["rewards"][t] = reward.view(k, n)
            buf["ranks"][t] = rank.view(k, n)
            self.dones[t] = done
        self.num_timesteps += self.n_steps * n
        self._last_values = self._heads(self.obs.view(k, n, -1))[2]

    def advantages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(gamma, lambda) advantages and returns ``(n_steps, K, n)``, as SB3's rollout buffer computes them
        (an episode that ends is not bootstrapped: episodes end by termination)."""
        rewards, values = self.buf["rewards"], self.buf["values"]
        adv = torch.zeros_like(rewards)
        last = torch.zeros_like(rewards[0])
        for t in reversed(range(self.n_steps)):
            nonterminal = 0.0 if self.dones[t] else 1.0
            next_values = self._last_values if t == self.n_steps - 1 else values[t + 1]
            delta = rewards[t] + self.gamma * next_values * nonterminal - values[t]
            last = delta + self.gamma * self.gae_lambda * nonterminal * last
            adv[t] = last
        return adv, adv + values

    # -- the update ----------------------------------------------------------------------------------
    def _clip_grads(self) -> None:
        """``clip_grad_norm_`` per agent: each agent's gradient scaled by ``min(1, c / (||g|| + 1e-6))``."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        sq = sum(g.pow(2).reshape(self.k, -1).sum(1) for g in grads)
        coef = (self.max_grad_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    def update(self) -> dict[str, np.ndarray]:
        """The method's update on the last rollout; per-agent statistics."""
        adv, returns = self.advantages()
        m = self.n_steps * self.n_envs

        def flat(x: torch.Tensor) -> torch.Tensor:  # (T, K, n, ...) -> (K, T * n, ...)
            return x.transpose(0, 1).reshape(self.k, m, *x.shape[3:])

        data = [flat(self.buf["obs"]), flat(self.buf["actions"]), flat(self.buf["log_prob"]), flat(adv),
                flat(returns), flat(self.buf["mean"])]
        old_log_std = self.params["log_std"].detach().clone()
        stats: dict[str, list[torch.Tensor]] = {"pg_loss": [], "value_loss": [], "approx_kl": []}
        bs = m if self.vpg else self.batch_size
        for _ in range(self.n_epochs):
            epoch = data
            if not self.vpg:  # each agent's own permutation, applied once per epoch; minibatches are slices
                perms = torch.stack([torch.randperm(m, generator=g) for g in self.perm_gens]).to(self.device)
                epoch = [torch.take_along_dim(x, perms.view(*perms.shape, *([1] * (x.dim() - 2))), dim=1)
                         for x in data]
            for start in range(0, m, bs):
                batch = [x[:, start : start + bs] for x in epoch]
                obs, actions, old_lp, a, r, old_mean = batch
                loss, pg, v, kl = self._objective(obs, actions, old_lp, a, r, old_mean, old_log_std)
                self.optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()  # agents share no parameter: the sum's gradient is each agent's own
                self._clip_grads()
                self.optimizer.step()
                stats["pg_loss"].append(pg.detach())
                stats["value_loss"].append(v.detach())
                stats["approx_kl"].append(kl.detach())
        out = {key: torch.stack(v).mean(0).cpu().numpy() for key, v in stats.items()}
        if self.penalty == "kl":  # the adaptive coefficient from the mean exact KL over the rollout
            with torch.no_grad():
                mean, log_std, _ = self.heads(data[0])
                kl = losses.diag_gaussian_kl(data[5], old_log_std[:, None, :].expand_as(data[5]), mean,
                                             log_std[:, None, :].expand_as(mean)).mean(1).cpu().numpy()
            self.kl_coef = torch.tensor([losses.adapt_kl_coef(float(c), float(x), self.kl_target)
                                         for c, x in zip(self.kl_coef.tolist(), kl)], device=self.device)
            out["kl"] = kl
        out["rank"] = self.buf["ranks"].double().mean((0, 2)).cpu().numpy()
        return out

    def train_rollout(self) -> dict[str, np.ndarray]:
        """Collect one rollout and update on it (timed separately)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        self.collect()
        sync()
        t1 = time.perf_counter()
        stats = self.update()
        sync()
        self.timing["collect"] += t1 - t0
        self.timing["update"] += time.perf_counter() - t1
        return stats

    # -- the SB3 models and the saved state ----------------------------------------------------------
    @torch.no_grad()
    def sync_to_models(self) -> None:
        """Copy each agent's weights (and step count, KL coefficient) into its SB3 model."""
        for i, model in enumerate(self.models):
            state = {name: p[i].detach().to(model.device) for name, p in self.params.items()}
            model.policy.load_state_dict(state, strict=True)
            model.num_timesteps = self.num_timesteps
            if self.penalty == "kl":
                model.kl_coef = float(self.kl_coef[i])

    def state_of(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s resumable state: weights, Adam moments, generators, KL coefficient, step count."""
        opt = {}
        for name, p in self.params.items():
            s = self.optimizer.state.get(p, {})
            opt[name] = {key: (v[i].clone() if torch.is_tensor(v) and v.dim() and v.shape[0] == self.k else v)
                         for key, v in s.items()}
        return {"params": {n: p[i].detach().cpu().clone() for n, p in self.params.items()},
                "optimizer": {n: {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in s.items()}
                              for n, s in opt.items()},
                "noise_gen": self.noise_gens[i].get_state(), "perm_gen": self.perm_gens[i].get_state(),
                "env_gen": self.env.generator_states()[i], "kl_coef": float(self.kl_coef[i]),
                "env_sketch": self.env.sketch.view(self.k, -1)[i].cpu().clone(), "env_t": self.env.t,
                "num_timesteps": self.num_timesteps, "timing": dict(self.timing)}

    @torch.no_grad()
    def load_states(self, states: list[dict[str, Any]]) -> None:
        """Restore every agent from :meth:`state_of` dicts (same number of agents, same step count)."""
        steps = {s["num_timesteps"] for s in states}
        if len(steps) != 1:
            raise ArgumentError(f"the agents' saved states are at different steps {sorted(steps)}; resume them "
                                "separately")
        for name, p in self.params.items():
            p.copy_(torch.stack([s["params"][name] for s in states]).to(p.device))
            keys = states[0]["optimizer"][name].keys()
            if keys:
                self.optimizer.state[p] = {
                    key: (torch.stack([s["optimizer"][name][key] for s in states]).to(p.device)
                          if torch.is_tensor(states[0]["optimizer"][name][key])
                          and states[0]["optimizer"][name][key].dim() else states[0]["optimizer"][name][key])
                    for key in keys}
        for g, s in zip(self.noise_gens, states):
            g.set_state(s["noise_gen"])
        for g, s in zip(self.perm_gens, states):
            g.set_state(s["perm_gen"])
        self.env.set_generator_states([s["env_gen"] for s in states])
        self.kl_coef = torch.tensor([s["kl_coef"] for s in states], dtype=torch.float32, device=self.device)
        self.num_timesteps = states[0]["num_timesteps"]
        self.timing = dict(states[0].get("timing", self.timing))
        if all(s.get("env_t", -1) == 0 for s in states):  # saved between episodes: the same next episodes
            self.obs = self.env.reset(torch.cat([s["env_sketch"] for s in states]))
        else:  # saved mid-episode (n_steps not a multiple of S): new episodes
            self.obs = self.env.reset()


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_fast(cfg: FastTrainConfig) -> list[Path]:
    """Train (or resume) one agent per seed side by side; returns each agent's ``best.zip``."""
    if cfg.algo not in FAST_ALGORITHMS:
        raise ArgumentError(f"the fast trainer runs {FAST_ALGORITHMS}; {cfg.algo!r} needs the SB3 path (--trainer sb3)")
    if len(set(cfg.seeds)) != len(cfg.seeds) or not cfg.seeds:
        raise ArgumentError(f"seeds must be distinct and non-empty, got {cfg.seeds}")
    device = resolve_device(cfg.device)
    hp = load_hyperparams(cfg.algo, cfg.env_id, cfg.overrides)
    _, _, n_envs, n_timesteps, _ = split_hyperparams(cfg.algo, hp)
    timesteps = int(cfg.timesteps if cfg.timesteps is not None else (n_timesteps or 1_000_000))
    with contextlib.ExitStack() as held:  # every agent's run folder, for the whole training
        for seed in cfg.seeds:
            held.enter_context(run_lock(cfg.agent_dir(seed)))
        return _train_fast_locked(cfg, hp, n_envs, timesteps, device)


def _train_fast_locked(cfg: FastTrainConfig, hp: dict[str, Any], n_envs: int, timesteps: int,
                       device: torch.device) -> list[Path]:
    env_kwargs = dict(cfg.env_kwargs)
    runs, models = [], []
    # one env of the training split: its spaces build the SB3 models, its data and options the device env
    native = make_native_vec_env(cfg.env_id, n_envs, "train", autoreset_mode="same_step",
                                 **(env_kwargs | {"precompute": True}))
    sb3_env = SB3VecEnv(native)
    sb3_env.seed(cfg.seeds[0])
    resume = []
    for seed in cfg.seeds:
        agent_cfg = RLTrainConfig(algo=cfg.algo, env_id=cfg.env_id, env_kwargs=env_kwargs, seed=seed, device="cpu",
                                  eval_every=cfg.eval_every, overrides=cfg.overrides, out=str(cfg.agent_dir(seed)),
                                  progress=cfg.progress, minutes=cfg.minutes)
        out = agent_cfg.output_dir()
        run_config = run_config_of(agent_cfg, hp, out) | {"trainer": {"name": "fast", "compute": cfg.compute}}
        run = TrainingRun(agent_cfg, hp, env_kwargs)
        if (out / STATE_FILE).exists():
            check_resume(out, read_run_config(out), run_config, ignore=RESUME_IGNORES)
        state = read_resume_file(out / STATE_FILE, lambda p: load_torch_file(p, map_location=None))
        if state is not None:
            run.state.update(state["run_state"])
            run.elapsed_before = float(run.state.get("elapsed", 0.0))
            resume.append(state)
        else:
            write_json(out / "config.json", run_config)
        models.append(build_agent(cfg.algo, hp, sb3_env, seed, "cpu"))
        runs.append(run)
    if resume and len(resume) != len(cfg.seeds):
        raise ArgumentError("some agents of this run have a saved state and others not; resume them with the same "
                         "seeds or delete their folders")

    env = DeviceRetrievalEnv(native.data, len(cfg.seeds) * n_envs, native.options, seeds=cfg.seeds, device=device,
                             compute=cfg.compute)
    trainer = FastTrainer(models, env, cfg.algo, hp, cfg.seeds, device, compile=cfg.compile)
    if resume:
        trainer.load_states([s["trainer"] for s in resume])
        logger.info(f"resuming {cfg.algo} (seeds {cfg.seeds}, {runs[0].out.parent}) at {trainer.num_timesteps} "
                    "env steps")
    next_eval = int(runs[0].state["next_eval"])

    saved_at = trainer.num_timesteps if resume else -1

    def checkpoint() -> None:
        nonlocal saved_at, next_eval
        trainer.sync_to_models()
        for i, (run, model) in enumerate(zip(runs, models)):
            run.evaluate_and_checkpoint(model)
            _save_state(run.out / STATE_FILE, {"trainer": trainer.state_of(i), "run_state": dict(run.state)})
        saved_at, next_eval = trainer.num_timesteps, int(runs[0].state["next_eval"])

    def out_of_time() -> bool:
        return cfg.minutes is not None and runs[0].elapsed() >= cfg.minutes * 60.0

    if trainer.num_timesteps == 0 and not (runs[0].out / "best.zip").exists():
        checkpoint()  # the starting point (the frozen model when started from the backend)
    while trainer.num_timesteps < timesteps and not out_of_time():
        trainer.train_rollout()
        if trainer.num_timesteps >= next_eval:
            checkpoint()
    if trainer.num_timesteps != saved_at:
        checkpoint()
    if cfg.progress:
        total = sum(trainer.timing.values())
        logger.info(f"[fast {cfg.algo} x{len(runs)}] {trainer.num_timesteps} env steps per agent; training "
                    f"{trainer.num_timesteps * len(runs) / max(total, 1e-9):,.0f} env-steps/s over all agents "
                    f"(collection {trainer.timing['collect']:.1f} s, update {trainer.timing['update']:.1f} s)")
    sb3_env.close()
    return [run.out / "best.zip" for run in runs]

