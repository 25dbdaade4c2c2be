"""The multi-agent variant: a ``sketcher`` that chooses which stroke to draw next, and a ``retriever``.

"Sketch Less for More" observes that the order of strokes decides how early retrieval succeeds; this
PettingZoo ``ParallelEnv`` makes the order a learnable game. An episode is one sketch of the split with
``n`` strokes, drawn in the order the sketcher chooses, on an initially empty canvas.

Timing (both agents act on what they observe, as a parallel game requires). Before step ``k`` the canvas
shows ``k - 1`` strokes (``canvas_0`` is empty). At step ``k``:

* the ``retriever`` answers with a query for the canvas it sees, ``canvas_{k-1}``, which ranks the gallery;
* the ``sketcher`` (steps ``1..n``) picks one of the strokes not drawn yet, and the env draws it: the
  observations after the step show ``canvas_k``.

So step ``k`` scores the canvas with ``k - 1`` strokes, and the episode has ``n + 1`` steps: the empty
canvas is not scored (step 1 pays 0 and reports no rank), and after step ``n`` the sketcher has drawn
everything and leaves, while the retriever answers once more for the complete sketch. ``sketch_less=True``
ends the episode for both at the first step whose rank is 1.

Shared reward: the single-agent env's schemes (:mod:`sketch_env.envs.rewards`, the same functions), on
the ranks of the scored canvases, with the Kendall-tau term between consecutive scored rankings. The
reward of a stroke choice therefore arrives one step later (at the step that scores its canvas).

Observations and actions (spaces from cached ``observation_space(agent)`` / ``action_space(agent)``):

* ``retriever``: ``Box(F)`` the backend's feature of the canvas; action ``Box(-1, 1, (d,))``, a query
  (``action="direct"``) or a residual on the backend's own query of the canvas (``"residual"``), as in
  the single-agent env.
* ``sketcher``: ``Dict(observation=Box(F + 6 M), action_mask=Box(0, 1, (M,), int8))`` with ``M =
  max_strokes``: the canvas feature and, per stroke slot, ``[centre x, centre y, length, human order
  (i / (n - 1)), drawn, present]`` (zeros for empty slots); action ``Discrete(M)``, a stroke index whose
  mask entry is 1. A stroke that is drawn, absent or out of range is illegal: with ``illegal="next"`` (the
  default, so that unmasked random play, as in PettingZoo's own tests, runs) the env draws the first stroke
  not drawn yet in human order instead and says so in ``info["illegal_stroke"]``; with ``illegal="error"``
  it is an error naming it.

Episode end and truncation: the game ends as above; ``max_cycles`` (PettingZoo's argument, default none)
truncates every agent after that many steps; ``min_strokes`` leaves sketches with fewer strokes out of the
episodes (the order of one or two strokes decides little).

Rendering (``render_mode``): ``"rgb_array"`` frames of one fixed size (:func:`sketch_env.envs.render.frame_shape`
``(5)``): the canvas, the last ranking's five best photos and the true photo; ``"human"`` shows them in a
matplotlib window at every step.

Features of arbitrary stroke subsets cannot be cached ahead: each canvas is rendered (:mod:`sketch_env.render`,
the backend's render settings) and embedded on the fly, through a bounded LRU cache keyed by (sketch,
set of drawn strokes) (``cache_size`` entries); :meth:`StrokeOrderParallelEnv.canvas_features` embeds
many canvases in one backend call (the greedy order uses it for all candidate strokes at once).

Data arguments are the single-agent env's (``dataset``, ``backend``, ``split``, ``data_root``, ``scheme``,
``distractors``, ...; :func:`embeddings.provision.load_retrieval_data`), given to
:func:`sketch_env.stroke_order_v0.parallel_env`, so the kanji and QMUL configurations and the seeding
(``reset(seed=...)``; ``options={"sketch_index": i}``; ``order``) are the same.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from sketch_env.envs import kendall, rewards, step
from sketch_env.envs.data import RetrievalData
from sketch_env.envs.engine import ACTION_MODES, ORDERS, as_actions, is_count
from sketch_env.errors import ArgumentError
from sketch_env.render import render_sketch
from sketch_env.sketch import Sketch

__all__ = ["StrokeOrderParallelEnv", "stroke_descriptors", "AGENTS", "DESCRIPTOR_FIELDS", "DESCRIPTOR_INDEX",
           "DESCRIPTOR_SIZE"]

AGENTS = ("sketcher", "retriever")
#: one stroke slot's descriptor, in order (the sketcher's observation holds ``max_strokes`` of them)
DESCRIPTOR_FIELDS = ("centre_x", "centre_y", "length", "human_order", "drawn", "present")
DESCRIPTOR_INDEX = {name: i for i, name in enumerate(DESCRIPTOR_FIELDS)}
DESCRIPTOR_SIZE = len(DESCRIPTOR_FIELDS)


def stroke_descriptors(sketch: Sketch, max_strokes: int) -> np.ndarray:
    """Per stroke slot ``[centre x, centre y, length, human order i / (n - 1), drawn = 0, present = 1]``
    (:data:`DESCRIPTOR_FIELDS`), float32 ``(max_strokes, 6)``; empty slots are zeros. ``length`` is the
    polyline length in the unit frame."""
    out = np.zeros((max_strokes, DESCRIPTOR_SIZE), dtype=np.float32)
    n = sketch.num_strokes
    ix = DESCRIPTOR_INDEX
    for i, (a, b) in enumerate(zip(sketch.stroke_starts, sketch.stroke_ends)):
        pts = sketch.points[a:b]
        out[i, [ix["centre_x"], ix["centre_y"]]] = pts.mean(axis=0)
        out[i, ix["length"]] = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()) if len(pts) > 1 else 0.0
        out[i, ix["human_order"]] = i / (n - 1) if n > 1 else 0.0
        out[i, ix["present"]] = 1.0
    return out


class StrokeOrderParallelEnv(ParallelEnv):
    """The stroke-order game (module docstring).

    Args:
        data: a :class:`~sketch_env.envs.data.RetrievalData` with the dataset's records and the backend (the
            canvases are embedded on the fly); :func:`sketch_env.stroke_order_v0.parallel_env` makes it from
            the single-agent env's data arguments (``dataset``, ``backend``, ``split``, ...).
        max_strokes: ``M``, the sketcher's action count (default: the most strokes of a sketch in the dataset,
            either split; sketches with more strokes than ``M`` are an error when drawn).
        reward: a scheme of :mod:`sketch_env.envs.rewards`; ``gamma1``, ``gamma2``, ``reward_scale`` as in
            the single-agent env.
        action: ``"direct"`` or ``"residual"`` (the retriever's action).
        sketch_less: end the episode at the first rank 1.
        order: ``"random"`` or ``"sequential"`` choice of the episode's sketch.
        cache_size: canvases whose features are kept (LRU).
        action_bound, obs_bound: the Box bounds.
        illegal: ``"next"`` (an illegal stroke choice draws the first undrawn stroke) or ``"error"``.
        max_cycles: truncate every agent after this many steps (None: never).
        min_strokes: episodes only of sketches with at least this many strokes.
        render_mode: None, ``"rgb_array"`` or ``"human"``.
    """

    metadata = {"name": "stroke_order_v0", "render_modes": ["human", "rgb_array"], "render_fps": 2,
                "is_parallelizable": True}

    def __init__(self, data: RetrievalData | None = None, max_strokes: int | None = None, reward: str = "paper",
                 gamma1: float = 1.0, gamma2: float = 1.0, reward_scale: float = 1.0, action: str = "direct",
                 sketch_less: bool = False, order: str = "random", cache_size: int = 20_000,
                 action_bound: float = 1.0, obs_bound: float = 1000.0, kernel: str = "auto",
                 illegal: str = "next", max_cycles: int | None = None, min_strokes: int = 1,
                 render_mode: str | None = None) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ArgumentError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                                f"got {render_mode!r}")
        if illegal not in ("next", "error"):
            raise ArgumentError(f"illegal must be 'next' or 'error', got {illegal!r}")
        if max_cycles is not None and not is_count(max_cycles):
            raise ArgumentError(f"max_cycles must be None or an integer >= 1, got {max_cycles!r}")
        if not is_count(min_strokes):
            raise ArgumentError(f"min_strokes must be an integer >= 1, got {min_strokes!r}")
        if action not in ACTION_MODES:
            raise ArgumentError(f"action must be one of {ACTION_MODES}, got {action!r}")
        if order not in ORDERS:
            raise ArgumentError(f"order must be one of {ORDERS}, got {order!r}")
        rewards.local_reward(reward, np.ones(1))  # validates the scheme name
        if cache_size < 1:
            raise ArgumentError(f"cache_size must be >= 1, got {cache_size}")
        self.data = RetrievalData.check(data, "StrokeOrderParallelEnv")
        if self.data.sketch_records is None or self.data.backend is None:
            raise ArgumentError("the stroke-order env needs a dataset's records and its backend (data provisioned by "
                             "stroke_order_v0.parallel_env(dataset=..., backend=...)), not arrays")
        self.backend = self.data.backend
        if self.backend.per_step:
            raise ArgumentError(f"backend {self.backend.name!r} has one model per step of a schedule; the stroke-order "
                             "env draws arbitrary stroke subsets: use a backend with one sketch model")
        self.render_config = self.backend.render_config
        self.sketches: list[Sketch] = [r.sketch for r in self.data.sketch_records]
        # the most strokes of any sketch of the dataset, both splits: the spaces are then the same for the
        # train and the test env, so a sketcher trained on one plays the other
        ds = self.data.dataset
        most = max(r.sketch.num_strokes for split in ("train", "test") for r in ds.sketches(split))
        self.max_strokes = int(max_strokes or most)
        if self.max_strokes < 1:
            raise ArgumentError(f"max_strokes must be >= 1, got {max_strokes}")
        self.reward_scheme = reward
        self.gamma1, self.gamma2, self.reward_scale = float(gamma1), float(gamma2), float(reward_scale)
        self.action_mode = action
        self.sketch_less = bool(sketch_less)
        self.order = order
        self.cache_size = int(cache_size)
        self.kernel = kendall.resolve_kernel(kernel)
        self._prepared = step.prepare_gallery(self.data.gallery)
        self.gallery_size = self.data.gallery_size
        self._pairs = self.gallery_size * (self.gallery_size - 1) // 2
        self._cache: OrderedDict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.cache_hits = self.cache_misses = 0
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self._feature_dim = self.backend.feature_dim
        self._embed_dim = self.backend.embed_dim
        self._action_bound = float(action_bound)
        self._obs_bound = float(obs_bound)
        self._np_random, _ = seeding.np_random(None)
        self._episodes = 0
        self.illegal = illegal
        self.max_cycles = None if max_cycles is None else int(max_cycles)
        self.min_strokes = int(min_strokes)
        self._pool = np.flatnonzero([sk.num_strokes >= self.min_strokes for sk in self.sketches])
        if not len(self._pool):
            raise ArgumentError(f"no sketch of the split has min_strokes={min_strokes} strokes or more")
        self.render_mode = render_mode
        self._window = None
        self._last: dict[str, Any] | None = None

    @classmethod
    def argument_names(cls) -> tuple[str, ...]:
        """The keyword arguments of the game itself (the data come in ``data``)."""
        return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    # -- spaces ----------------------------------------------------------------------------------------
    @functools.cache  # noqa: B019  (one env, two agents: the cache dies with the env)
    def observation_space(self, agent: str) -> spaces.Space:
        b = self._obs_bound
        if agent == "retriever":
            return spaces.Box(-b, b, (self._feature_dim,), np.float32)
        if agent == "sketcher":
            n = self._feature_dim + DESCRIPTOR_SIZE * self.max_strokes
            return spaces.Dict({"observation": spaces.Box(-b, b, (n,), np.float32),
                                "action_mask": spaces.Box(0, 1, (self.max_strokes,), np.int8)})
        raise KeyError(f"unknown agent {agent!r}; agents are {AGENTS}")

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space:
        if agent == "retriever":
            return spaces.Box(-self._action_bound, self._action_bound, (self._embed_dim,), np.float32)
        if agent == "sketcher":
            return spaces.Discrete(self.max_strokes)
        raise KeyError(f"unknown agent {agent!r}; agents are {AGENTS}")

    # -- canvases ----------------------------------------------------------------------------------------
    def canvas_raster(self, sketch_index: int, drawn: np.ndarray) -> np.ndarray:
        """The canvas of ``sketch_index`` with the strokes ``drawn`` (a bool mask over its strokes): uint8
        ``(H, W)`` (blank when nothing is drawn)."""
        sketch = self.sketches[sketch_index]
        idx = np.flatnonzero(drawn)
        if not len(idx):
            return np.zeros((self.render_config.size, self.render_config.size), dtype=np.uint8)
        starts, ends = sketch.stroke_starts, sketch.stroke_ends
        strokes = [sketch.points[starts[i] : ends[i]] for i in idx]
        lengths = np.cumsum([len(s) for s in strokes])
        return render_sketch(Sketch(np.concatenate(strokes), lengths), self.render_config)

    def canvas_features(self, sketch_index: int, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(B, F)`` and the backend's own queries ``(B, d)`` of canvases ``masks`` (bool ``(B, n)``),
        from the LRU cache where present, the rest rendered and embedded in one backend call."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        keys = [(int(sketch_index), np.packbits(m).tobytes()) for m in masks]
        feats = np.empty((len(masks), self._feature_dim), dtype=np.float32)
        queries = np.empty((len(masks), self._embed_dim), dtype=np.float32)
        missing = []
        for i, key in enumerate(keys):
            hit = self._cache.get(key)
            if hit is None:
                missing.append(i)
            else:
                self._cache.move_to_end(key)
                feats[i], queries[i] = hit
        self.cache_hits += len(masks) - len(missing)
        self.cache_misses += len(missing)
        if missing:
            rasters = np.stack([self.canvas_raster(sketch_index, masks[i]) for i in missing])
            f = self.backend.sketch_features(rasters)
            q = self.backend.queries(f)
            for j, i in enumerate(missing):
                feats[i], queries[i] = f[j], q[j]
                self._cache[keys[i]] = (f[j].copy(), q[j].copy())
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return feats, queries

    def true_ranks(self, queries: np.ndarray) -> np.ndarray:
        """Ranks of the current episode's true photo for queries ``(B, d)`` (normalised here), int64 ``(B,)``,
        without touching the episode (for look-ahead orders)."""
        q = step.queries_from_actions(np.atleast_2d(queries))
        return step.true_ranks(step.distances(q, self._prepared), np.full(len(q), self._photo))

    @property
    def drawn(self) -> np.ndarray:
        """Which strokes of the current sketch are on the canvas (a copy)."""
        return self._drawn.copy()

    @property
    def canvas(self) -> tuple[np.ndarray, np.ndarray]:
        """The current canvas's feature ``(F,)`` and the backend's own query ``(d,)`` (copies)."""
        return self._feat.copy(), self._own.copy()

    # -- the game ------------------------------------------------------------------------------------
    def _observations(self) -> dict[str, Any]:
        feat = self._feat
        obs: dict[str, Any] = {}
        if "retriever" in self.agents:
            obs["retriever"] = feat.copy()
        if "sketcher" in self.agents:
            mask = np.zeros(self.max_strokes, dtype=np.int8)
            mask[: len(self._drawn)] = ~self._drawn
            obs["sketcher"] = {"observation": self.state(), "action_mask": mask}
        return obs

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._np_random, _ = seeding.np_random(seed)
            self._episodes = 0
        if options and options.get("sketch_index") is not None:
            self._sketch = step.choose_sketch(options, len(self.sketches), self.order, self._episodes,
                                              self._np_random)
        else:  # among the sketches with at least min_strokes strokes
            self._sketch = int(self._pool[step.choose_sketch(options, len(self._pool), self.order, self._episodes,
                                                             self._np_random)])
        self._episodes += 1
        self._cycles = 0
        self._last = None
        sketch = self.sketches[self._sketch]
        if sketch.num_strokes > self.max_strokes:
            src = self.data.sketch_records[self._sketch].source
            raise ArgumentError(f"sketch {self._sketch} ({src}) has {sketch.num_strokes} strokes, more than "
                             f"max_strokes={self.max_strokes}")
        self._photo = int(self.data.photo_index[self._sketch])
        self._drawn = np.zeros(sketch.num_strokes, dtype=bool)
        self._order: list[int] = []
        self._descriptors = stroke_descriptors(sketch, self.max_strokes)
        self._feat, self._own = (a[0] for a in self.canvas_features(self._sketch, self._drawn[None]))
        self._prev_order = np.zeros((1, self.gallery_size), dtype=np.int32)
        self._prev_tau = np.nan
        self._scored = 0
        self.agents = list(AGENTS)
        info = {"sketch_index": self._sketch, "photo_index": self._photo, "strokes": sketch.num_strokes}
        if self.render_mode == "human":
            self.render()
        return self._observations(), {a: dict(info) for a in self.agents}

    def _query(self, action: Any) -> np.ndarray:
        """The retriever's query ``(1, d)`` for the current canvas (``action`` checked)."""
        a = as_actions(np.asarray(action).reshape(-1), (self._embed_dim,), name="retriever action")
        return step.queries_from_actions(a[None], self._own[None] if self.action_mode == "residual" else None)

    def _stroke(self, action: Any) -> tuple[int, bool]:
        """The sketcher's stroke index (``action`` checked against the mask) and whether the choice was
        illegal (``illegal="next"``: then the first undrawn stroke)."""
        j = action
        if isinstance(j, np.ndarray) and j.shape in ((), (1,)):
            j = j.reshape(()).item()
        n = len(self._drawn)
        if self.illegal == "next" and not (is_count(j, 0) and j < n and not self._drawn[j]):
            return int(np.flatnonzero(~self._drawn)[0]), True
        if not is_count(j, 0) or not j < self.max_strokes:
            raise ArgumentError(f"sketcher action must be an int in [0, {self.max_strokes}), got {j!r}")
        if j >= n:
            raise ArgumentError(f"sketcher chose stroke {j}, but sketch {self._sketch} has only {n} strokes "
                             f"(use the action_mask)")
        if self._drawn[j]:
            raise ArgumentError(f"sketcher chose stroke {j} of sketch {self._sketch}, which is already drawn "
                             f"(use the action_mask)")
        return int(j), False

    def _score(self, q: np.ndarray) -> dict[str, Any]:
        """Rank query ``q`` for the current canvas; the reward and its parts."""
        first = self._scored == 0
        res = step.retrieval_step(q, self._prepared, np.array([self._photo]), self._prev_order,
                                  np.array([self._prev_tau]), np.array([first]), self.reward_scheme, self.gamma1,
                                  self.gamma2, self.reward_scale, kernel=self.kernel)
        self._prev_order = res.order
        self._prev_tau = float(res.tau[0])
        self._scored += 1
        out = {"reward": float(res.reward[0]), "rank": int(res.rank[0]), "kendall_tau": float(res.tau[0]),
               "local_reward": float(np.asarray(res.local).reshape(-1)[0]),
               "global_reward": float(np.asarray(res.glob).reshape(-1)[0]), "topk": res.order[0, :5].copy()}
        if np.isnan(out["kendall_tau"]):  # undefined at the first scored step: absent, as in the single env
            del out["kendall_tau"]
        return out

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() after the episode ended: call reset() first")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ArgumentError(f"step() needs an action for every live agent; missing {missing}")
        canvas_strokes = int(self._drawn.sum())
        info: dict[str, Any] = {"canvas_strokes": canvas_strokes, "sketch_index": self._sketch,
                                "photo_index": self._photo}
        # both actions are checked before anything changes, so a refused step leaves the episode as it was
        q = self._query(actions["retriever"])
        j, illegal = self._stroke(actions["sketcher"]) if "sketcher" in self.agents else (None, False)
        if "sketcher" in self.agents:
            info["illegal_stroke"] = illegal
        reward = 0.0
        if canvas_strokes > 0:  # the empty canvas is not scored
            scored = self._score(q)
            reward = scored.pop("reward")
            self._last = {"rank": scored["rank"], "topk": scored.pop("topk"), "canvas_strokes": canvas_strokes}
            info.update(scored)
        if j is not None:
            self._drawn[j] = True
            self._order.append(j)
            self._feat, self._own = (a[0] for a in self.canvas_features(self._sketch, self._drawn[None]))
        info["order"] = list(self._order)
        done_early = self.sketch_less and info.get("rank") == 1
        sketcher_done = bool(self._drawn.all()) or done_early
        retriever_done = done_early or (canvas_strokes == len(self._drawn))
        live = list(self.agents)
        self._cycles += 1
        terminations = {a: (sketcher_done if a == "sketcher" else retriever_done) for a in live}
        cut = self.max_cycles is not None and self._cycles >= self.max_cycles
        truncations = {a: cut and not terminations[a] for a in live}
        rewards_ = {a: reward for a in live}
        infos = {a: dict(info) for a in live}
        obs = self._observations()  # for every agent live in this step, the ones leaving too
        self.agents = [a for a in live if not (terminations[a] or truncations[a])]
        if self.render_mode == "human":
            self.render()
        return obs, rewards_, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """The frame of the current canvas and the last scored ranking (``render_mode``; module docstring)."""
        if self.render_mode is None:
            from gymnasium import logger

            logger.warn("render() without a render_mode: pass render_mode='rgb_array' to the constructor")
            return None
        from sketch_env.envs.render import HumanWindow, compose_frame

        if not hasattr(self, "_drawn"):  # before the first reset: an empty canvas
            raster = np.zeros((self.render_config.size, self.render_config.size), np.uint8)
            frame = compose_frame(self.data.dataset, self.data.photo_records, raster, [], -1, 5, "not reset")
        else:
            last = self._last or {}
            text = f"strokes {int(self._drawn.sum())}/{len(self._drawn)}"
            if last:
                text += f"  rank {last['rank']}/{self.gallery_size} (canvas of {last['canvas_strokes']})"
            frame = compose_frame(self.data.dataset, self.data.photo_records,
                                  self.canvas_raster(self._sketch, self._drawn),
                                  [int(p) for p in last.get("topk", [])], self._photo, 5, text)
        if self.render_mode == "human":
            self._window = self._window or HumanWindow(self.metadata["render_fps"])
            self._window.show(frame)
            return None
        return frame

    def state(self) -> np.ndarray:
        """The global state: the canvas feature and the stroke descriptors with the drawn flags (also the
        sketcher's observation)."""
        desc = self._descriptors.copy()
        desc[: len(self._drawn), DESCRIPTOR_INDEX["drawn"]] = self._drawn
        return np.concatenate([self._feat, desc.ravel()]).astype(np.float32)

    def close(self) -> None:
        self._cache.clear()
        if self._window is not None:
            self._window.close()
            self._window = None

    def __repr__(self) -> str:
        return (f"StrokeOrderParallelEnv({self.data.description}, max_strokes={self.max_strokes}, "
                f"reward={self.reward_scheme!r})")
