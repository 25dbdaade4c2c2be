"""Retrieve as you draw: a drawn sketch, given as strokes, ranked after every stroke by the frozen backend and
by an RL agent, side by side (what ``sketch-env demo`` serves; :mod:`agents.demo.app` is the web part).

The strokes a page sends are points on its canvas. They become a :class:`~sketch_env.sketch.Sketch` in the
canvas's frame (``Sketch.from_strokes(strokes, frame=(width, height))``) and are rendered with the backend's
own :class:`~sketch_env.render.RenderConfig` (``render_sketch``), so the model sees a raster made the way its
training rasters were. Then, as in one step of the retrieval env (:mod:`sketch_env.envs.step`):

* frozen backend: ``q = normalise(W f + b)``, the backend's own query of the raster's feature ``f``;
* RL agent: ``a = pi(o)`` (the policy's mean action, ``o = f``, with the progress appended when the agent was
  trained to observe it), ``q = normalise(a)`` (``action="direct"``) or ``normalise(W f + b + a)``
  (``"residual"``);
* distances ``d_p = ||q - g_p||`` to every gallery photo, the ranking by ``(d_p, p)``, and the target's rank
  ``#{p : d_p <= d_target}`` (1-based, ties against the method).

A backend with one model per step (B2's step-dependent layer, B3) needs the step ``t`` of ``S``: a live drawing
has no known length, so ``t = ceil(S k / K) - 1`` for ``k`` strokes drawn of the target's reference sketch's
``K`` (``S - 1`` with no target, or once ``k >= K``). B1 and the shipped agent do not depend on it.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = ["DEFAULT_MODEL", "DemoLimits", "DemoInputError", "RetrievalDemo", "parse_strokes"]

#: the shipped agent the demo serves by default (its env: kanji, the shipped B1)
DEFAULT_MODEL = "kanji-b1-ppo-a-clip-s0"


class DemoInputError(ArgumentError):
    """A drawing request that cannot be used (the page shows the message)."""


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on what one request may hold (a page that sends more gets a :class:`DemoInputError`)."""

    max_strokes: int = 200
    max_points_per_stroke: int = 4000
    max_points: int = 40_000
    max_canvas: int = 4096
    max_body_bytes: int = 2_000_000


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DemoInputError(f"{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise DemoInputError(f"{where} must be finite, got {value!r}")
    return float(value)


def parse_strokes(strokes: Any, width: Any, height: Any, limits: DemoLimits = DemoLimits()
                  ) -> tuple[list[np.ndarray], float, float]:
    """``strokes`` (a list of strokes, each a list of ``[x, y]`` canvas points) and the canvas size, checked
    against ``limits``: ``(arrays, width, height)``. Points may lie off the canvas (a stroke drawn past its
    edge); each coordinate must be a finite number within a canvas width of it."""
    w, h = _number(width, "width"), _number(height, "height")
    for name, side in (("width", w), ("height", h)):
        if not 1 <= side <= limits.max_canvas:
            raise DemoInputError(f"{name} must be within 1..{limits.max_canvas}, got {side:g}")
    if not isinstance(strokes, list):
        raise DemoInputError(f"strokes must be a list of strokes, got {type(strokes).__name__}")
    if len(strokes) > limits.max_strokes:
        raise DemoInputError(f"at most {limits.max_strokes} strokes a sketch, got {len(strokes)}")
    out, total = [], 0
    span = max(w, h)
    for i, stroke in enumerate(strokes):
        if not isinstance(stroke, list) or not stroke:
            raise DemoInputError(f"stroke {i} must be a non-empty list of [x, y] points")
        if len(stroke) > limits.max_points_per_stroke:
            raise DemoInputError(f"stroke {i} has {len(stroke)} points; at most {limits.max_points_per_stroke}")
        total += len(stroke)
        if total > limits.max_points:
            raise DemoInputError(f"at most {limits.max_points} points a sketch")
        pts = np.empty((len(stroke), 2), dtype=np.float64)
        for j, p in enumerate(stroke):
            if not isinstance(p, list) or len(p) != 2:
                raise DemoInputError(f"stroke {i} point {j} must be [x, y]")
            pts[j] = (_number(p[0], f"stroke {i} point {j} x"), _number(p[1], f"stroke {i} point {j} y"))
        if np.abs(pts).max() > 2 * span:
            raise DemoInputError(f"stroke {i} has points far off the {w:g} x {h:g} canvas")
        out.append(pts)
    return out, w, h


class RetrievalDemo:
    """The rankings of a drawn sketch, by the frozen backend and (with ``model``) an RL agent.

    Args:
        model: an agent file or a shipped agent's name (default :data:`DEFAULT_MODEL`); None: the frozen
            backend alone. The agent's env (dataset, backend) is the one it was trained on.
        backend, dataset, root: the frozen backend's name or checkpoint and the dataset (its folder ``root``
            for datasets read from disk), when there is no ``model``; with one, they must agree with its env.
        split: the split whose gallery is ranked and whose sketches are replayed (default ``test``).
        topk: photos shown per method.
        thumb_size: side of the photo thumbnails (px).

    Making one makes the env (``gym.make``), which never trains: a missing backend is an error naming the
    training command.
    """

    def __init__(self, model: str | Path | None = DEFAULT_MODEL, *, backend: str | None = None,
                 dataset: str | None = None, root: str | None = None, split: str = "test", topk: int = 5,
                 thumb_size: int = 64, limits: DemoLimits = DemoLimits()) -> None:
        import gymnasium as gym

        from sketch_env.envs import step
        from sketch_env.envs.registration import env_id_for_dataset

        if not isinstance(topk, int) or not 1 <= topk <= 50:
            raise ArgumentError(f"topk must be an integer within 1..50, got {topk!r}")
        if not isinstance(thumb_size, int) or not 16 <= thumb_size <= 256:
            raise ArgumentError(f"thumb_size must be an integer within 16..256, got {thumb_size!r}")
        self.limits, self.topk, self.thumb_size, self.split = limits, topk, thumb_size, split
        self.agent, self.model_name, self.algo = None, None, None
        if model is not None:
            from agents.io import load_agent, read_meta, resolve_agent

            path = resolve_agent(model)
            meta = read_meta(path)
            env_id, env_kwargs = meta["env_id"], dict(meta["env_kwargs"])
            trained = env_kwargs.get("backend", "b1")
            if backend is not None and str(backend) != str(trained):
                raise ArgumentError(f"the agent {path.name} was trained on backend {trained!r}, not {backend!r}: "
                                    "drop --backend, or pass --model none for the frozen backend alone")
            if dataset is not None and dataset != env_kwargs.get("dataset", _dataset_of(env_id)):
                raise ArgumentError(f"the agent {path.name} was trained on {env_id}; drop --dataset, or pass "
                                    "--model none")
            if root is not None:
                env_kwargs["data_root"] = str(Path(root).resolve())
            self.agent = load_agent(path, device="cpu")
            self.model_name, self.algo = path.stem, meta["algo"]
        else:
            env_id, env_kwargs = env_id_for_dataset(dataset or "kanji", backend=backend or "b1", data_root=root)
        env_kwargs = {k: v for k, v in env_kwargs.items() if k != "split"}
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.env = gym.make(env_id, split=split, **env_kwargs)
        env = self.env.unwrapped
        self.data, self.options = env.data, env.options
        if self.data.backend is None or not self.data.can_render:
            raise ArgumentError(f"{env_id} has no backend to embed drawn sketches with")
        if self.agent is not None and self.agent.observation_space.shape != env.observation_space.shape:
            raise ArgumentError(f"the agent observes {self.agent.observation_space.shape}, the env gives "
                                f"{env.observation_space.shape}")
        self.backend = self.data.backend
        self.backend_name = str(self.backend.config.get("name", env_kwargs.get("backend", "b1")))
        self.steps = self.data.steps
        self._prepared = step.prepare_gallery(self.data.gallery)
        self._step = step
        self._thumbs: dict[int, str] = {}
        self._lock = threading.Lock()
        # the reference sketch of each photo: its first sketch in the split (what "draw this" shows)
        self.reference: dict[int, int] = {}
        for i, p in enumerate(np.asarray(self.data.photo_index)):
            self.reference.setdefault(int(p), i)

    # -- what the page lists ---------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        return ["frozen"] + (["rl"] if self.agent is not None else [])

    def info(self) -> dict[str, Any]:
        """What the page needs to start: names, sizes, the targets (one per photo with a sketch) and limits."""
        labels = {"frozen": f"frozen backend ({self.backend_name})"}
        if self.agent is not None:
            labels["rl"] = f"RL agent ({self.algo})"
        return {
            "env_id": self.env_id, "dataset": str(self.data.dataset.name), "split": self.split,
            "backend": self.backend_name, "model": self.model_name, "methods": self.methods, "labels": labels,
            "gallery_size": int(self.data.gallery_size), "sketches": int(self.data.num_sketches),
            "steps": int(self.steps), "topk": self.topk,
            "targets": [{"photo": p, "label": self.label(p), "sketch": i} for p, i in sorted(self.reference.items())],
            "limits": asdict(self.limits),
        }

    def label(self, photo: int) -> str:
        return str(self.data.photo_records[photo].instance)

    def thumbnail(self, photo: int) -> str:
        """Photo ``photo`` of the gallery as a PNG data URI (made once, then kept)."""
        if photo not in self._thumbs:
            import cv2

            img = self.data.dataset.load_photo(self.data.photo_records[photo], self.thumb_size)
            if img.ndim == 3:
                img = img[..., ::-1]  # RGB -> BGR for cv2
            ok, png = cv2.imencode(".png", np.ascontiguousarray(img))
            if not ok:  # pragma: no cover - cv2 encodes any uint8 image
                raise RuntimeError(f"cannot encode photo {photo} as PNG")
            self._thumbs[photo] = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
        return self._thumbs[photo]

    def sketch_strokes(self, index: Any, size: Any = 400) -> dict[str, Any]:
        """Test sketch ``index`` of the split as strokes on a ``size`` x ``size`` canvas, for replaying it."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.data.num_sketches:
            raise DemoInputError(f"sketch must be an integer within 0..{self.data.num_sketches - 1}, got {index!r}")
        side = _number(size, "size")
        if not 16 <= side <= self.limits.max_canvas:
            raise DemoInputError(f"size must be within 16..{self.limits.max_canvas}, got {side:g}")
        record = self.data.sketch_records[index]
        photo = int(self.data.photo_index[index])
        strokes = record.sketch.to_strokes(frame=(side, side))
        return {"sketch": index, "photo": photo, "label": self.label(photo),
                "strokes": [np.round(s, 2).tolist() for s in strokes]}

    # -- one update --------------------------------------------------------------------------------------
    def step_of(self, strokes: int, target: int | None) -> int:
        """The step ``t`` a backend with one model per step reads (module docstring)."""
        s = self.steps
        if target is None or target not in self.reference:
            return s - 1
        total = self.data.sketch_records[self.reference[target]].sketch.num_strokes
        return int(min(s - 1, max(0, math.ceil(s * strokes / total) - 1)))

    def rank(self, strokes: Any, width: Any, height: Any, target: Any = None) -> dict[str, Any]:
        """The rankings of the sketch ``strokes`` (canvas points, :func:`parse_strokes`) by each method:
        ``{"strokes": k, "step": t, "methods": {name: {"top": [...], "rank": r or None}}, "timing_ms": {...}}``.
        ``target`` is a gallery photo (its rank is reported) or None."""
        from sketch_env.render import render_sketch
        from sketch_env.sketch import Sketch

        t0 = time.perf_counter()
        if target is not None and (isinstance(target, bool) or not isinstance(target, int)
                                   or not 0 <= target < self.data.gallery_size):
            raise DemoInputError(f"target must be a photo within 0..{self.data.gallery_size - 1}, got {target!r}")
        arrays, w, h = parse_strokes(strokes, width, height, self.limits)
        out: dict[str, Any] = {"strokes": len(arrays), "target": target, "methods": {}}
        if not arrays:
            out["methods"] = {m: {"top": [], "rank": None} for m in self.methods}
            return out | {"step": None, "timing_ms": {}}
        t = self.step_of(len(arrays), target)
        with self._lock:
            raster = render_sketch(Sketch.from_strokes(arrays, frame=(w, h)), self.data.render_config)
            t1 = time.perf_counter()
            feats = self.backend.sketch_features(raster[None], t)
            own = self.backend.queries(feats, t)
            t2 = time.perf_counter()
            queries = {"frozen": self._step.queries_from_actions(np.zeros_like(own), own)}
            if self.agent is not None:
                obs = feats
                if self.options.observe_progress:
                    obs = np.concatenate([feats, [[(t + 1) / self.steps]]], axis=1).astype(np.float32)
                action, _ = self.agent.predict(obs, deterministic=True)
                residual = self.options.action == "residual"
                queries["rl"] = self._step.queries_from_actions(action, own if residual else None)
            t3 = time.perf_counter()
            q = np.concatenate([queries[m] for m in self.methods])
            dist = self._step.distances(q, self._prepared)
            photos = np.arange(dist.shape[1])
            for row, m in enumerate(self.methods):
                order = np.lexsort((photos, dist[row]))[: self.topk]  # by (d_p, p), as the env ranks
                rank = None
                if target is not None:
                    rank = int(self._step.true_ranks(dist[row: row + 1], np.array([target]))[0])
                out["methods"][m] = {"rank": rank, "top": [{"photo": int(p), "label": self.label(int(p))}
                                                           for p in order]}
            t4 = time.perf_counter()
            for m in self.methods:
                for item in out["methods"][m]["top"]:
                    item["thumb"] = self.thumbnail(item["photo"])
        t5 = time.perf_counter()
        ms = {"render": t1 - t0, "embed": t2 - t1, "policy": t3 - t2, "rank": t4 - t3, "thumbnails": t5 - t4,
              "total": t5 - t0}
        return out | {"step": t, "timing_ms": {k: round(v * 1000, 3) for k, v in ms.items()}}

    def close(self) -> None:
        self.env.close()


def _dataset_of(env_id: str) -> str | None:
    from sketch_env.envs.registration import DATASET_ENV_IDS

    return next((d for d, e in DATASET_ENV_IDS.items() if e == env_id), None)
