"""Playing and training the stroke-order game (:mod:`sketch_env.envs.stroke_order`) without SuperSuit.

The sketcher is trained as an independent learner against a fixed retriever (the frozen backend, or a
trained RL retriever) through :class:`SketcherGymEnv`, a small adapter of our own: a single-agent
Gymnasium env in which the retriever's action is computed inside ``step`` and the shared reward is the
sketcher's. SuperSuit's conversions are not used (they break SB3's seeding and truncation handling). The
adapter exposes ``action_masks()``, which sb3-contrib's ``MaskablePPO`` reads, so the policy only ever
chooses strokes not yet drawn.

Stroke orders compared by ``benchmarks/stroke_order.py``: the human order (the dataset's), a random order,
a greedy one-step look-ahead (at each step the stroke whose canvas ranks the true photo best with the
given retriever; it peeks at the true photo's rank, so it is an upper reference, not a method) and the
learned sketcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from sketch_env.envs.stroke_order import StrokeOrderParallelEnv

__all__ = ["Retriever", "frozen_retriever", "policy_retriever", "SketcherGymEnv", "play_episode",
           "human_chooser", "random_chooser", "greedy_chooser", "policy_chooser", "strokes_to_top"]

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
