"""The on-the-fly retrieval environment (one episode = one sketch drawn step by step)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sketch_env.envs import step
from sketch_env.envs.data import DataBackedEnv, RetrievalData
from sketch_env.envs.engine import OPTION_NAMES, RetrievalEngine, as_actions, make_options, make_spaces
from sketch_env.errors import ArgumentError

__all__ = ["OnTheFlyRetrievalEnv"]


class OnTheFlyRetrievalEnv(DataBackedEnv, gym.Env):
    """## Description

    On-the-fly fine-grained sketch-based image retrieval as an episode ("Sketch Less for More", Bhunia et
    al., CVPR 2020). A sketch is drawn in ``S`` steps (``steps``, 20 by default: 5 % of its points per
    step, the papers' schedule). After each step the agent observes the frozen embedding backend's
    feature of the partial sketch and answers with a query embedding; the gallery of photos is ranked by
    Euclidean distance to the normalised query, and the agent is rewarded for putting the sketch's true
    photo at the top as early as possible. Features, the backend's own queries and the gallery come from
    the feature store (:mod:`embeddings.store`), computed once per backend and split.

    ## Action Space

    ``Box(-action_bound, action_bound, (d,), float32)`` (``d`` = the backend's embedding size, 64; bound 1
    by default, the range SB3 recommends): a query embedding, L2-normalised before ranking, so only its
    direction counts. Every unit direction is reachable in both modes (in ``"residual"`` mode because
    ``q_own`` lies strictly inside the box). Actions are not clipped by the env; NaN or inf raise.

    * ``action="direct"``: ``q = a / ||a||``. A zero action is the zero query, at distance 1 from every
      photo: all photos tie and the true photo ranks last (``rank = P``).
    * ``action="residual"``: ``q = (q_own + a) / ||q_own + a||`` with ``q_own`` the backend's own query of
      this partial sketch, so the zero action reproduces the frozen model's ranks exactly (an already unit
      vector is used bit for bit).

    ## Observation Space

    ``Box(-obs_bound, obs_bound, (F,), float32)``, a fresh array each call:

    | index | observation | bounds |
    |---|---|---|
    | 0 .. F-1 | the backend's feature of the partial sketch shown (``F`` = its feature size) | ``±obs_bound`` (1000) |
    | F (``observe_progress=True`` only) | the share of the sketch shown, ``(t + 1) / S`` | [0, 1] |

    The bound is fixed (not computed per split) so train, val and test envs share one space; the env
    checks at construction that its features lie within it.

    ## Rewards

    Ranks follow :mod:`sketch_env.metrics`: ``rank_t = #{photos p : ||q - g_p|| <= ||q - g_true||}``
    (1-based, ties count against the agent). ``reward`` picks a scheme of :mod:`sketch_env.envs.rewards`:

    * ``"paper"`` (default): ``gamma1 / rank_t + gamma2 * g``, with the paper's Kendall-tau term
      ``g_t = -max(0, tau(L_t, L_{t+1}) - tau(L_{t-1}, L_t))`` (``L_t`` the whole gallery ranking at step
      ``t``, ties broken by photo index; ``tau`` the normalised Kendall-tau distance, exact). ``g_t`` needs
      ``L_{t+1}``, so it is paid one step late: steps 1 and 2 pay ``gamma1 / rank_t`` only, step ``t >= 3``
      pays ``gamma1 / rank_t + gamma2 * g_{t-1}``, and the last step pays ``g_{S-1}``: an episode's return
      is exactly ``gamma1 * sum_t 1 / rank_t + gamma2 * sum_{t=2}^{S-1} g_t``.
    * ``"inverse_rank"`` ``1 / rank``, ``"inverse_sqrt_rank"`` ``1 / sqrt(rank)``, ``"neg_rank"``
      ``-rank``, ``"top1"`` / ``"top5"`` / ``"top10"`` ``1[rank <= k]``: the paper's reward ablation.

    Every reward is multiplied by ``reward_scale``. ``info`` holds ``rank``, ``percentile``
    (``(P - rank) / (P - 1)``), ``kendall_tau`` (``tau(L_{t-1}, L_t)``; absent at the first step and with
    ``kendall=False``), ``photo_index`` (the true photo), ``topk`` (the ``topk`` best photo indices), ``sketch_index``,
    ``step`` (1-based), ``local_reward`` and ``global_reward`` (the Kendall term paid at this step).

    ## Starting State

    A sketch of the split drawn uniformly with the env's seeded ``np_random`` (``order="random"``), or the
    split's sketches in turn (``order="sequential"``; a seeded reset restarts at sketch 0), or
    ``reset(options={"sketch_index": i})``. The first observation shows step 1 of ``S``.

    ## Episode End

    Terminated after the ``S``-th step (the complete sketch); never truncated. The final observation
    repeats the complete sketch's feature.

    ## Arguments

    ```python
    gym.make("SketchEnv/OnTheFly-v0", dataset="kanji", backend="b1", split="train", steps=20,
             schedule="points", reward="paper", data_root=None)
    ```

    Data: ``dataset`` (a :func:`sketch_env.datasets.make_dataset` name; default: the dataset and split
    scheme recorded in the checkpoint when ``backend`` is a path, else ``"kanji"``), ``data_root`` (for datasets read
    from disk), ``scheme`` (split scheme, the dataset's default), ``backend`` (``ts``/``b1``/``b2``/``b3``
    or a path to a ``backend.pt``; a name resolves to the checkpoint the package ships for the dataset, then
    to ``<data>/backends/<dataset>-<scheme>/<name>-s<seed>/backend.pt`` as ``sketch-env embed train`` writes
    it, ``<data>`` the per-user data folder; nothing is ever trained here: a missing backend is an error
    naming the command that trains it), ``backend_seed`` (0), ``split``
    (``"train"``, ``"val"``: the photos the backend held out for validation and their sketches, excluded
    from ``"train"``; ``"test"``), ``steps`` and ``schedule`` (``"points"`` or ``"strokes"``),
    ``distractors`` (append every other photo of the dataset to the gallery), ``val_fraction`` (default:
    the backend's), ``backend_device`` and ``progress``. ``gym.make`` hands these to the id's entry point,
    :func:`embeddings.provision.make_retrieval_env`, which provisions the data and builds the env from it.

    Behaviour: ``reward``, ``gamma1`` (1.0), ``gamma2`` (1.0), ``reward_scale`` (1.0), ``action``
    (``"direct"`` | ``"residual"``), ``kendall`` (compute the Kendall-tau distance, True; ``False`` makes
    non-``paper`` rewards cheaper and drops ``info["kendall_tau"]``), ``topk`` (5),
    ``observe_progress`` (False), ``obs_bound`` (1000.0), ``action_bound`` (1.0), ``order``
    (``"random"``), ``kernel`` (the Kendall kernel: ``"auto"`` uses numba when installed), ``render_mode``
    (``None``; ``"rgb_array"``: frames of one fixed size, :func:`~sketch_env.envs.render.frame_shape`
    ``(topk)``, the partial sketch beside the top-k photos and the true one framed green; ``"human"``: the
    same frames in a matplotlib window at every step).

    The class itself takes ``data``, a :class:`~sketch_env.envs.data.RetrievalData` (see :meth:`from_arrays`
    for arrays of your own), and the behaviour arguments; it never loads or trains anything.

    ## Vectorized environment

    ``gym.make_vec("SketchEnv/OnTheFly-v0", num_envs=N, ...)`` gives
    :class:`~sketch_env.envs.vector.OnTheFlyRetrievalVectorEnv` (the spec's ``vector_entry_point``): all
    N envs in arrays (NumPy, or torch on a device with ``compute="torch", device="cuda"``), autoreset in
    the same step, equal step for step to N of these envs seeded ``seed, seed + 1, ...``.
    :class:`~sketch_env.envs.sb3.SB3VecEnv` adapts it to Stable-Baselines3.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 4}

    def __init__(self, data: RetrievalData | None = None, *, render_mode: str | None = None, kernel: str = "auto",
                 **options: Any) -> None:
        self.data = RetrievalData.check(data, "OnTheFlyRetrievalEnv")
        self.options = make_options(options, "retrieval env")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ArgumentError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                                f"got {render_mode!r}")
        if render_mode is not None and not self.data.can_render:
            raise ArgumentError(
                f"render_mode={render_mode!r} needs the dataset's sketches and photos; data made from arrays have none"
            )
        self.render_mode = render_mode
        self._window = None
        self.observation_space, self.action_space = make_spaces(self.data, self.options)
        self._engine = RetrievalEngine(self.data, 1, self.options, "numpy", kernel=kernel)
        self._episodes = 0

    @classmethod
    def argument_names(cls) -> tuple[str, ...]:
        """The keyword arguments of the env itself (the behaviour; the data come in ``data``)."""
        return ("data", "render_mode", "kernel", *OPTION_NAMES)

    # -- the API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._episodes = 0
        sketch = step.choose_sketch(options, self.num_sketches, self.options.order, self._episodes, self.np_random)
        self._episodes += 1
        self._engine.begin(np.array([0]), np.array([sketch]))
        self._engine.last_info = None
        info = {"sketch_index": sketch, "photo_index": int(self._engine.photo[0])}
        if self.render_mode == "human":
            self.render()
        return self._engine.observe()[0], info

    def step(self, action: np.ndarray):
        a = as_actions(action, self.action_space.shape, name="action")
        reward, terminated, info = self._engine.step(a[None])
        one = {key: (value[0] if key == "topk" else value[0].item()) for key, value in info.items()}
        if np.isnan(one["kendall_tau"]):  # undefined: the first step, or kendall=False
            del one["kendall_tau"]
        if self.render_mode == "human":
            self.render()
        return self._engine.observe()[0], float(reward[0]), bool(terminated[0]), False, one

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() without a render_mode: pass render_mode='rgb_array' to gym.make")
            return None
        from sketch_env.envs.render import render_retrieval

        state = self._engine.state_for(0)
        last = self._engine.last_info
        info = None if last is None or state["t"] == 0 else {k: v[0] for k, v in last.items()}
        frame = render_retrieval(self.data, state["sketch"], state["t"], info, self._engine.k)
        if self.render_mode == "human":
            from sketch_env.envs.render import HumanWindow

            self._window = self._window or HumanWindow(self.metadata["render_fps"])
            self._window.show(frame)
            return None
        return frame

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        super().close()

    def __repr__(self) -> str:
        return f"OnTheFlyRetrievalEnv({self.data!r}, reward={self.options.reward!r}, action={self.options.action!r})"
