"""Playing and training the stroke-order game (:mod:`sketch_env.envs.stroke_order`) without SuperSuit.

The sketcher is trained as an independent learner against a fixed retriever (the frozen backend, or a
trained RL retriever) through :class:`SketcherGymEnv`, a small adapter of our own: a single-agent
Gymnasium env in which the retriever's action is computed inside ``step`` and the shared reward is the
sketcher's. SuperSuit's conversions are not used (they break SB3's seeding and truncation handling). The
adapter exposes ``action_masks()``, which sb3-contrib's ``MaskablePPO`` reads, so the policy only ever
chooses strokes not yet drawn.

A sketcher's training run (:func:`train_sketcher`) is a run folder like an RL method's: its settings are
checked before it resumes (:func:`sketch_env.runs.check_resume`), ``checkpoint.pt`` is written atomically
after every PPO update, and ``policy.pt`` with ``train.json`` once it is done.

Stroke orders compared by ``benchmarks/stroke_order.py``: the human order (the dataset's), a random order,
a greedy one-step look-ahead (at each step the stroke whose canvas ranks the true photo best with the
given retriever; it peeks at the true photo's rank, so it is an upper reference, not a method) and the
learned sketcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sketch_env.cache import atomic_path, read_json, write_json
from sketch_env.config import check_config
from sketch_env.envs.stroke_order import DESCRIPTOR_INDEX, DESCRIPTOR_SIZE, StrokeOrderParallelEnv
from sketch_env.errors import ArgumentError
from sketch_env.limits import load_torch_file
from sketch_env.log import logger
from sketch_env.runs import check_resume, read_resume_file, run_lock

__all__ = ["Retriever", "frozen_retriever", "policy_retriever", "SketcherGymEnv", "play_episode",
           "human_chooser", "longest_first_chooser", "random_chooser", "greedy_chooser", "policy_chooser",
           "strokes_to_top", "StrokeScoringExtractor", "StrokeScoringPolicy", "SKETCHER_POLICIES", "make_sketcher",
           "SketcherTrainConfig", "train_sketcher", "load_sketcher"]

#: features (F,) and the backend's own query (d,) of the canvas -> the retriever's action (d,)
Retriever = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: (env, sketcher observation) -> stroke index
Chooser = Callable[[StrokeOrderParallelEnv, dict], int]


def frozen_retriever(env: StrokeOrderParallelEnv) -> Retriever:
    """The frozen backend: its own query (``action="direct"``), or the zero residual (``"residual"``)."""
    if env.action_mode == "residual":
        return lambda feat, own: np.zeros_like(own)
    return lambda feat, own: own


def policy_retriever(model: Any) -> Retriever:
    """A trained SB3 retriever (its mean action on the canvas feature)."""
    return lambda feat, own: np.asarray(model.predict(feat, deterministic=True)[0], dtype=np.float32)


class SketcherGymEnv(gym.Env):
    """The sketcher's view of the game with the retriever fixed (module docstring).

    Observation: the sketcher's ``observation`` vector; action: ``Discrete(M)``; ``action_masks()`` gives the
    legal strokes. When the sketcher draws its last stroke, the retriever's final answer (for the complete
    sketch) is played in the same ``step`` and its reward added, so the sketcher's return is the game's.
    """

    metadata = {"render_modes": []}

    def __init__(self, game: StrokeOrderParallelEnv, retriever: Retriever | None = None) -> None:
        self.game = game
        self.retriever = retriever or frozen_retriever(game)
        self.observation_space = game.observation_space("sketcher")["observation"]
        self.action_space = game.action_space("sketcher")
        self._obs: dict | None = None

    def _retriever_action(self) -> np.ndarray:
        feat, own = self.game.canvas
        return self.retriever(feat, own)

    def action_masks(self) -> np.ndarray:
        return self._obs["sketcher"]["action_mask"].astype(bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, infos = self.game.reset(seed=seed, options=options)
        self._obs = obs
        return obs["sketcher"]["observation"], infos["sketcher"]

    def step(self, action):
        obs, rew, term, trunc, infos = self.game.step({"sketcher": int(action), "retriever": self._retriever_action()})
        reward = rew["sketcher"]
        info = infos["sketcher"]
        sketcher_obs = obs["sketcher"]
        terminated = term["sketcher"]
        if terminated:
            while self.game.agents:  # the retriever's last answer(s), for the complete sketch
                _, rew, _, _, infos = self.game.step({"retriever": self._retriever_action()})
                reward += rew["retriever"]
                info = infos["retriever"]
        self._obs = obs
        return sketcher_obs["observation"], float(reward), bool(terminated), False, info


def human_chooser(env: StrokeOrderParallelEnv, obs: dict) -> int:
    """The dataset's order: the first stroke not drawn yet."""
    return int(np.flatnonzero(obs["action_mask"])[0])


def longest_first_chooser(env: StrokeOrderParallelEnv, obs: dict) -> int:
    """A fixed rule: the longest stroke not drawn yet (descriptor ``length``; ties: the earlier in the human
    order). A reference for the learned sketcher: it shows what stroke length alone buys."""
    legal = np.flatnonzero(obs["action_mask"])
    desc = obs["observation"][-DESCRIPTOR_SIZE * len(obs["action_mask"]) :].reshape(-1, DESCRIPTOR_SIZE)
    return int(legal[np.argmax(desc[legal, DESCRIPTOR_INDEX["length"]])])


def random_chooser(rng: np.random.Generator) -> Chooser:
    return lambda env, obs: int(rng.choice(np.flatnonzero(obs["action_mask"])))


def greedy_chooser(retriever: Retriever) -> Chooser:
    """One-step look-ahead: the legal stroke whose canvas gives the true photo the best rank with
    ``retriever`` (ties: the earlier stroke in the human order). All candidate canvases are embedded in one
    backend call."""

    def choose(env: StrokeOrderParallelEnv, obs: dict) -> int:
        legal = np.flatnonzero(obs["action_mask"])
        masks = np.repeat(env.drawn[None], len(legal), axis=0)
        masks[np.arange(len(legal)), legal] = True
        feats, owns = env.canvas_features(env._sketch, masks)
        queries = np.stack([retriever(f, o) for f, o in zip(feats, owns)])
        if env.action_mode == "residual":
            queries = owns + queries
        return int(legal[np.argmin(env.true_ranks(queries))])

    return choose


def policy_chooser(model: Any) -> Chooser:
    """A trained (maskable) SB3 sketcher, deterministic."""

    def choose(env: StrokeOrderParallelEnv, obs: dict) -> int:
        mask = obs["action_mask"].astype(bool)
        try:
            action, _ = model.predict(obs["observation"], deterministic=True, action_masks=mask)
        except TypeError:  # a policy without masking
            action, _ = model.predict(obs["observation"], deterministic=True)
        return int(action)

    return choose


def play_episode(env: StrokeOrderParallelEnv, chooser: Chooser, retriever: Retriever, sketch_index: int
                 ) -> tuple[np.ndarray, list[int]]:
    """One episode on ``sketch_index``: the true photo's rank after each stroke ``(n,)`` (the canvas with
    ``k`` strokes at index ``k - 1``) and the stroke order drawn."""
    obs, _ = env.reset(options={"sketch_index": int(sketch_index)})
    ranks: list[int] = []
    order: list[int] = []
    while env.agents:
        feat, own = env.canvas
        actions = {"retriever": retriever(feat, own)}
        if "sketcher" in env.agents:
            actions["sketcher"] = chooser(env, obs["sketcher"])
        obs, _, _, _, infos = env.step(actions)
        info = infos["retriever"]
        if "rank" in info:
            ranks.append(info["rank"])
        order = info["order"]
    return np.asarray(ranks, dtype=np.int64), order


def strokes_to_top(ranks: np.ndarray, k: int) -> int:
    """Strokes on the canvas when the true photo first ranks within the top ``k``; ``n + 1`` if never."""
    hit = np.flatnonzero(np.asarray(ranks) <= k)
    return int(hit[0] + 1) if len(hit) else len(ranks) + 1


# -- the sketcher's policy -----------------------------------------------------------------------------
class StrokeScoringExtractor(BaseFeaturesExtractor):
    """Scores every stroke slot with the same network (a pointer-style head, equivariant over the slots).

    The observation ``[f (F), d_1 .. d_M (6 each)]`` is split into the canvas feature and the stroke
    descriptors; with ``c = tanh(W_c LN(f))``, every slot gets ``h_i = g([c, d_i])`` (one shared two-layer
    MLP) and a score ``s_i = w^T h_i + b``. Output: ``[s_1 .. s_M, mean of h_i over the present strokes]``:
    the scores become the policy's logits (:class:`StrokeScoringPolicy`; drawn strokes are masked) and the
    pooled slots feed the value. Why: a flat MLP over the M slots has to learn what "a long stroke" means
    separately in each slot, and from 100k steps it did not (it ended between the random and the human
    order); with shared slot weights a rule such as "longest stroke first" is one set of weights for every slot.
    """

    def __init__(self, observation_space: gym.spaces.Box, max_strokes: int, hidden: int = 64) -> None:
        total = int(observation_space.shape[0])
        feature_dim = total - DESCRIPTOR_SIZE * int(max_strokes)
        if feature_dim < 1:
            raise ArgumentError(f"an observation of size {total} is too small for {max_strokes} stroke slots of "
                             f"{DESCRIPTOR_SIZE} descriptors and a canvas feature")
        super().__init__(observation_space, features_dim=int(max_strokes) + int(hidden))
        self.max_strokes, self.feature_dim, self.hidden = int(max_strokes), feature_dim, int(hidden)
        self.canvas = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, hidden), nn.Tanh())
        self.stroke = nn.Sequential(nn.Linear(hidden + DESCRIPTOR_SIZE, hidden), nn.Tanh(),
                                    nn.Linear(hidden, hidden), nn.Tanh())
        self.score = nn.Linear(hidden, 1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        feat = observations[:, : self.feature_dim]
        desc = observations[:, self.feature_dim :].reshape(-1, self.max_strokes, DESCRIPTOR_SIZE)
        c = self.canvas(feat)
        h = self.stroke(torch.cat([c.unsqueeze(1).expand(-1, self.max_strokes, -1), desc], dim=-1))
        scores = self.score(h).squeeze(-1)
        present = desc[..., DESCRIPTOR_INDEX["present"], None]  # empty slots stay out of the value's input
        pooled = (h * present).sum(dim=1) / present.sum(dim=1).clamp(min=1.0)
        return torch.cat([scores, pooled], dim=-1)


class _FirstColumns(nn.Module):
    """The policy's logits: the first ``n`` columns of the latent (the per-stroke scores)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = int(n)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return latent[:, : self.n]


class StrokeScoringPolicy(MaskableActorCriticPolicy):
    """``MaskablePPO``'s actor-critic over :class:`StrokeScoringExtractor`: the stroke scores are the logits
    directly (no mixing layer, so the actor stays equivariant over the slots); the value is an MLP (``vf``
    layers, default one of 64) over the scores and the pooled slots."""

    def __init__(self, observation_space, action_space, lr_schedule, hidden: int = 64, net_arch=None,
                 **kwargs) -> None:
        kwargs.setdefault("features_extractor_class", StrokeScoringExtractor)
        kwargs.setdefault("features_extractor_kwargs", {"max_strokes": int(action_space.n), "hidden": hidden})
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch or {"pi": [], "vf": [64]},
                         **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        if self.mlp_extractor.latent_dim_pi != self.features_dim:
            raise ArgumentError("the stroke-scoring policy needs net_arch pi=[] (its stroke scores are the logits)")
        self.action_net = _FirstColumns(self.action_space.n)
        # a near-uniform first policy, as SB3's gain of 0.01 on its action layer gives
        nn.init.orthogonal_(self.features_extractor.score.weight, gain=0.01)
        nn.init.zeros_(self.features_extractor.score.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


#: the sketcher's policies: the stroke-scoring head (default) and SB3's flat MLP over the whole observation
SKETCHER_POLICIES = ("strokes", "mlp")


def make_sketcher(env: Any, seed: int, policy: str = "strokes", device: str = "cpu", **ppo_kwargs: Any):
    """A ``MaskablePPO`` sketcher on ``env`` (a Gymnasium or vector env of :class:`SketcherGymEnv`).

    ``policy="strokes"``: :class:`StrokeScoringPolicy`; ``"mlp"``: SB3's ``MlpPolicy`` (64-64 on the flat
    observation). PPO settings (overridable): 512 steps per env per rollout, minibatches of 256, gamma 0.99,
    lr 3e-4, entropy coefficient 0.01.
    """
    if policy not in SKETCHER_POLICIES:
        raise ArgumentError(f"sketcher policy must be one of {SKETCHER_POLICIES}, got {policy!r}")
    settings = {"n_steps": 512, "batch_size": 256, "gamma": 0.99, "learning_rate": 3e-4, "ent_coef": 0.01,
                "verbose": 0} | ppo_kwargs
    from agents.train import quiet_logger

    model = MaskablePPO(StrokeScoringPolicy if policy == "strokes" else "MlpPolicy", env, seed=seed,
                        device=device, **settings)
    if settings.get("tensorboard_log") is None:
        model.set_logger(quiet_logger())
    return model


# ------------------------------------------------------------------------------------------- training


@dataclass
class SketcherTrainConfig:
    """One sketcher's training run (``MaskablePPO`` against a fixed retriever)."""

    out: str
    """run folder: ``policy.pt`` and ``train.json`` when done, ``checkpoint.pt`` while training"""
    seed: int = 0
    timesteps: int = 100_000
    reward: str = "top5"
    """the game's reward scheme for the sketcher"""
    n_envs: int = 8
    policy: str = "strokes"
    """:data:`SKETCHER_POLICIES`"""
    progress: bool = True
    label: str = "sketcher"
    """how progress lines name the run"""

    def __post_init__(self) -> None:
        check_config(self, {"seed": (0, None), "timesteps": (1, 10**12), "n_envs": (1, 4096)})

    def settings(self) -> dict[str, Any]:
        """What a resumed or reused run must match (the rest is bookkeeping)."""
        return {k: v for k, v in asdict(self).items() if k in ("timesteps", "reward", "n_envs", "policy")}


class _TqdmSteps:
    """An SB3 callback showing env steps on a tqdm bar (SB3's own progress bar needs `rich`, which is not a
    dependency)."""

    def __new__(cls, total: int, desc: str):
        from stable_baselines3.common.callbacks import BaseCallback
        from tqdm.auto import tqdm

        class _Bar(BaseCallback):
            def _on_training_start(self) -> None:
                self.bar = tqdm(total=total, desc=desc, unit="step", mininterval=1.0)

            def _on_step(self) -> bool:
                self.bar.update(self.training_env.num_envs)
                return True

            def _on_training_end(self) -> None:
                self.bar.close()

        return _Bar()


def _checkpoint_callback(path: Path, settings: dict, seconds_before: float):
    """An SB3 callback that saves the sketcher's training state to ``path`` (atomically) after every update:
    the policy and optimiser state dicts, the env steps done, the training settings and the seconds spent."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _Saver(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0, self.saved_at = time.perf_counter(), self.model.num_timesteps

        def _on_rollout_start(self) -> None:  # called after the previous rollout's update
            if self.model.num_timesteps > self.saved_at:
                state = {"policy": self.model.policy.state_dict(),
                         "optimizer": self.model.policy.optimizer.state_dict(),
                         "num_timesteps": int(self.model.num_timesteps), "settings": settings,
                         "seconds": seconds_before + time.perf_counter() - self.t0}
                with atomic_path(path) as tmp:
                    torch.save(state, tmp)
                self.saved_at = self.model.num_timesteps

        def _on_step(self) -> bool:
            return True

    return _Saver()


def train_sketcher(cfg: SketcherTrainConfig, make_game: Callable[[], StrokeOrderParallelEnv],
                   retriever: Retriever | None = None) -> Path:
    """Train (unless done) a sketcher on ``cfg.n_envs`` games from ``make_game`` against ``retriever`` (None:
    each game's frozen backend); returns its ``policy.pt``.

    A finished run with the same settings is reused, one with other settings refused. A training killed
    midway resumes from ``checkpoint.pt`` (read with ``torch.load(weights_only=True)``): the policy, Adam
    state and step count continue; the env episodes and random streams start afresh, so a resumed sketcher
    is a run of the same settings, not bit for bit the uninterrupted one."""
    with run_lock(cfg.out) as out:  # one training per run folder
        return _train_sketcher_locked(cfg, out, make_game, retriever)


def _train_sketcher_locked(cfg: SketcherTrainConfig, out: Path, make_game: Callable[[], StrokeOrderParallelEnv],
                           retriever: Retriever | None) -> Path:
    from stable_baselines3.common.vec_env import DummyVecEnv

    path = out / "policy.pt"
    wanted = cfg.settings()
    if path.is_file():
        done = read_json(out / "train.json") if (out / "train.json").is_file() else None
        check_resume(path, done, wanted, ignore=("seconds", "resumed_from"))
        return path
    games = [make_game() for _ in range(cfg.n_envs)]
    venv = DummyVecEnv([lambda g=g: SketcherGymEnv(g, retriever) for g in games])
    venv.seed(cfg.seed)
    model = make_sketcher(venv, cfg.seed, cfg.policy)
    ckpt, resumed_from, seconds_before = out / "checkpoint.pt", 0, 0.0
    state = read_resume_file(ckpt, load_torch_file)
    if state is not None:
        check_resume(ckpt, state.get("settings"), wanted)
        model.policy.load_state_dict(state["policy"])
        model.policy.optimizer.load_state_dict(state["optimizer"])
        model.num_timesteps = resumed_from = int(state["num_timesteps"])
        seconds_before = float(state["seconds"])
        logger.info(f"[{cfg.label}] resuming from {ckpt} at {resumed_from} steps")
    t0 = time.perf_counter()
    callbacks = [_checkpoint_callback(ckpt, wanted, seconds_before)]
    if cfg.progress:
        callbacks.append(_TqdmSteps(cfg.timesteps - resumed_from, cfg.label))
    model.learn(cfg.timesteps - resumed_from, callback=callbacks, reset_num_timesteps=resumed_from == 0)
    seconds = seconds_before + time.perf_counter() - t0
    # the settings first, then the policy (both atomic): a policy.pt never exists without its train.json
    write_json(out / "train.json", {"seconds": round(seconds, 1), **wanted, "resumed_from": resumed_from}, indent=None)
    with atomic_path(path) as tmp:
        torch.save(model.policy.state_dict(), tmp)
    ckpt.unlink(missing_ok=True)
    logger.info(f"[{cfg.label}] {cfg.timesteps} steps in {seconds / 60:.1f} min")
    return path


def load_sketcher(path: str | Path, game: StrokeOrderParallelEnv, seed: int = 0, policy: str = "strokes"):
    """A trained sketcher's ``policy.pt`` (``torch.load(weights_only=True)``) as a ``MaskablePPO`` on ``game``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    model = make_sketcher(DummyVecEnv([lambda: SketcherGymEnv(game)]), seed, policy)
    model.policy.load_state_dict(load_torch_file(path))
    return model
