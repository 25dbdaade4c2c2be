"""The triplet baselines of the on-the-fly paper's main table, as embedding backends.

=====  ==========================================================================================
name   row of the main table
=====  ==========================================================================================
``ts`` TS: triplet Siamese network (Yu et al., *Sketch Me That Shoe*, CVPR 2016): one CNN shared by
       sketches and photos, no attention, trained on complete sketches.
``b1`` B1: triplet network with spatial attention (Song et al., *Deep Spatial-Semantic Attention for
       FG-SBIR*, ICCV 2017), complete sketches; the HOLEF higher-order energy loss as an option.
``b2`` B2: the B1 model trained on all partial sketches of the schedule (a random step per sample).
``b3`` B3: one sketch model per completion percentage (``models`` of them, S by default, fewer via the
       option: model ``k`` serves steps ``floor(t K / S) = k``), each trained only on its own steps.
       So that one gallery serves every step, the B3 models share one photo branch: each is initialised
       from a trained B1 checkpoint (``init_from``), whose photo branch is kept frozen, and fine-tunes
       its own sketch branch.
=====  ==========================================================================================

Inputs are single-channel rasters with ink high: sketches are rendered white on black, and photos are
turned the same way by ``photo_preprocess``: ``"invert"`` (255 - grey: a dark object on a light
background becomes bright), ``"gray"`` (as is), or ``"canny"`` (a dilated Canny edge map, which did
about 3 points better than grey on Chair-V2 in the prototype).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from embeddings.base import EmbeddingBackend, l2_normalise
from embeddings.nets import Branch, SmallCNN, raster_tensor, torchvision_backbone
from sketch_env.errors import ArgumentError

__all__ = ["TripletBackend", "make_ts", "make_b1", "make_b2", "make_b3", "preprocess_photos", "default_config",
           "PHOTO_PREPROCESS"]


def default_config(name: str) -> dict[str, Any]:
    """The default configuration of baseline ``name`` (plain data; every key can be overridden)."""
    return {
        "name": name,
        "embed_dim": 64,
        "render": {"size": 64, "line_width": 2, "polarity": "white_on_black", "antialias": False,
                   "thicken": "line", "margin": 0},
        "photo_size": 64,  # the side photos are loaded at; they are embedded at the render size
        "photo_preprocess": "invert",
        "flip_average": False,  # embed every raster and its mirror image, and average (test-time flips)
        "backbone": "small_cnn",  # or "torchvision:resnet18" (needs torchvision; weights from backbone_weights)
        "backbone_weights": None,
        "channels": [32, 64, 128, 128],
        "attention": name != "ts",
        "pool": "pyramid",
        "shared": True,  # one network for both domains (Siamese)
        "models": 1,  # B3: sketch models, one per group of steps
        "steps": 20,  # the schedule length the per-step models are laid out over
        "partial": name in ("b2", "b3"),
        "loss": "triplet",  # or "holef"
        "margin": 0.2,
        "init_from": None,  # B3: the B1 checkpoint its models start from
        # filled in by training: what the model was trained on
        "dataset": None,
        "scheme": None,
        "train_split": None,
    }


PHOTO_PREPROCESS = ("invert", "gray", "canny", "edges")


def preprocess_photos(photos: np.ndarray, mode: str, size: int | None = None) -> np.ndarray:
    """uint8 RGB ``(P, H, W, 3)`` to uint8 single-channel ``(P, size, size)`` (default: ``H``) with the
    object's ink high.

    ``"invert"`` (255 - grey: a dark object on a light background becomes bright), ``"gray"`` (as is),
    ``"canny"`` (a Canny edge map at the given resolution, dilated 3 x 3), ``"edges"`` (Canny at the photo's
    own, higher resolution, dilated 3 x 3, then area-downsampled to ``size`` and doubled: thin, grey,
    anti-aliased lines, closer to a rendered stroke than edges found on a 64 px thumbnail). The other modes
    are resized to ``size`` after preprocessing.
    """
    if mode not in PHOTO_PREPROCESS:
        raise ArgumentError(f"photo_preprocess must be one of {PHOTO_PREPROCESS}, got {mode!r}")
    gray = np.asarray(photos)
    if gray.ndim == 4:
        gray = (gray[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    size = int(size or gray.shape[1])
    kernel = np.ones((3, 3), np.uint8)
    if mode == "gray":
        out = gray
    elif mode == "invert":
        out = 255 - gray
    elif mode == "canny":
        out = np.stack([cv2.dilate(cv2.Canny(g, 50, 150), kernel) for g in gray]) if len(gray) else gray
    else:
        out = np.empty((len(gray), size, size), dtype=np.uint8)
        for i, g in enumerate(gray):
            edges = cv2.dilate(cv2.Canny(g, 50, 150), kernel)
            small = cv2.resize(edges, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
            out[i] = np.clip(2.0 * small, 0, 255).astype(np.uint8)
        return out
    if out.shape[1] != size:
        out = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in out]) if len(out) \
            else np.empty((0, size, size), np.uint8)
    return out


def _positive_int(value: Any) -> bool:
    return type(value) is int and value >= 1


def _check_config(cfg: Mapping[str, Any]) -> None:
    """Types and ranges of a triplet backend's configuration (a checkpoint's may come from anyone)."""
    problems = []
    if not _positive_int(cfg["embed_dim"]) or cfg["embed_dim"] > 4096:
        problems.append(f"embed_dim must be an integer in [1, 4096], got {cfg['embed_dim']!r}")
    if not _positive_int(cfg["photo_size"]) or not 8 <= cfg["photo_size"] <= 1024:
        problems.append(f"photo_size must be an integer in [8, 1024], got {cfg['photo_size']!r}")
    channels = cfg["channels"]
    if not (isinstance(channels, (list, tuple)) and 1 <= len(channels) <= 8
            and all(_positive_int(c) and c <= 2048 for c in channels)):
        problems.append(f"channels must be 1 to 8 integers in [1, 2048], got {channels!r}")
    if not _positive_int(cfg["models"]) or not _positive_int(cfg["steps"]) or cfg["steps"] > 1000:
        problems.append(f"models and steps must be positive integers (steps <= 1000), got {cfg['models']!r}, "
                        f"{cfg['steps']!r}")
    margin = cfg["margin"]
    if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and 0 < margin < 10):
        problems.append(f"margin must be a number in (0, 10), got {margin!r}")
    if not isinstance(cfg["render"], Mapping):
        problems.append(f"render must be a mapping of RenderConfig fields, got {type(cfg['render']).__name__}")
    for key in ("attention", "shared", "partial", "flip_average"):
        if not isinstance(cfg[key], bool):
            problems.append(f"{key} must be true or false, got {cfg[key]!r}")
    if problems:
        raise ArgumentError("bad backend configuration: " + "; ".join(problems))


def _make_branch(cfg: Mapping[str, Any]) -> Branch:
    spec = cfg["backbone"]
    if spec == "small_cnn":
        net = SmallCNN(cfg["channels"], attention=cfg["attention"], pool=cfg["pool"])
        return Branch(net, net.out_dim, cfg["embed_dim"])
    if spec.startswith("torchvision:"):
        net, dim = torchvision_backbone(spec.split(":", 1)[1], cfg.get("backbone_weights"))
        return Branch(net, dim, cfg["embed_dim"])
    raise ArgumentError(f"unknown backbone {spec!r}; use 'small_cnn' or 'torchvision:<arch>'")


class TripletBackend(EmbeddingBackend):
    """TS / B1 / B2 / B3 (see the module docstring). ``sketch_branches[k]`` serves step group ``k``;
    ``photo_branch`` is ``sketch_branches[0]`` itself when ``shared`` and there is one model."""

    def __init__(self, **config: Any) -> None:
        cfg = self.default_config(config.get("name", "b1"))
        unknown = set(config) - set(cfg)
        if unknown:
            raise ArgumentError(f"unknown backend options {sorted(unknown)}; known: {sorted(cfg)}")
        cfg.update(config)
        _check_config(cfg)
        super().__init__(cfg)
        self.name = cfg["name"]
        self.per_step = cfg["models"] > 1
        if cfg["models"] < 1 or cfg["models"] > cfg["steps"]:
            raise ArgumentError(f"models must be in [1, steps={cfg['steps']}], got {cfg['models']}")
        first = _make_branch(cfg)
        self.sketch_branches = nn.ModuleList([first] + [copy.deepcopy(first) for _ in range(cfg["models"] - 1)])
        self.photo_branch = first if cfg["shared"] and cfg["models"] == 1 else copy.deepcopy(first)
        self.device = torch.device("cpu")
        # rasters per forward pass at inference: a batch of 128 keeps the convolutions' activations in the
        # CPU's caches; it ran the B1 branch at 2x the rasters/s of 512 (python -m benchmarks.machine, "forward")
        self.batch_size = 128
        self.eval()

    @staticmethod
    def default_config(name: str) -> dict[str, Any]:
        """The configuration keys this class accepts, with their defaults (subclasses add theirs)."""
        return default_config(name)

    # -- torch plumbing --------------------------------------------------------------------------
    def modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = list(self.sketch_branches)
        if all(self.photo_branch is not m for m in mods):
            mods.append(self.photo_branch)
        return mods

    def parameters(self):
        seen = set()
        for m in self.modules():
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def train(self, mode: bool = True) -> TripletBackend:
        for m in self.modules():
            m.train(mode)
        return self

    def eval(self) -> TripletBackend:
        return self.train(False)

    def to(self, device: str | torch.device) -> TripletBackend:
        self.device = torch.device(device)
        for m in self.modules():
            m.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "sketch_branches": self.sketch_branches.state_dict(),
            "photo_branch": self.photo_branch.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sketch_branches.load_state_dict(state["sketch_branches"])
        self.photo_branch.load_state_dict(state["photo_branch"])

    # -- the interface ---------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.sketch_branches[0].head.in_features)

    def model_of_step(self, step: int | np.ndarray) -> np.ndarray:
        """Index of the sketch model serving 0-based ``step``: ``floor(step * K / S)``."""
        k, s = self.config["models"], self.config["steps"]
        return np.minimum(np.asarray(step) * k // s, k - 1)

    def _run(self, fn, x: np.ndarray) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                outs.append(fn(raster_tensor(x[i : i + self.batch_size], self.device)).float().cpu().numpy())
        if not outs:
            return np.empty((0, 0), dtype=np.float32)
        return np.concatenate(outs)

    def preprocess(self, photos: np.ndarray) -> np.ndarray:
        """Photos (RGB, at ``photo_size``) as the network's input rasters (at the render size)."""
        return preprocess_photos(photos, self.config["photo_preprocess"], self.render_config.size)

    def photo_embeddings(self, photos: np.ndarray) -> np.ndarray:
        return self.photo_raster_embeddings(self.preprocess(photos))

    def photo_raster_embeddings(self, x: np.ndarray) -> np.ndarray:
        """Photo embeddings of rasters already made by :meth:`preprocess` (uint8 ``(P, size, size)``), so
        that training, which preprocesses its photos once, does not redo it at each validation:
        ``photo_embeddings(photos) == photo_raster_embeddings(preprocess(photos))``."""
        self.eval()
        x = np.asarray(x)
        out = self._run(self.photo_branch, x).reshape(len(x), self.embed_dim)
        if self.config["flip_average"]:
            out = l2_normalise(out + self._run(self.photo_branch, x[:, :, ::-1]).reshape(len(x), self.embed_dim))
        return out

    def photo_features(self, photos: np.ndarray) -> np.ndarray:
        """The photo branch's pooled feature (before its embedding layer) of uint8 RGB photos: float32
        ``(P, F)``, the photo counterpart of :meth:`sketch_features`."""
        self.eval()
        return self._features(self.photo_branch, self.preprocess(photos))

    def _features(self, branch: nn.Module, rasters: np.ndarray) -> np.ndarray:
        out = self._run(branch.features, rasters).reshape(len(rasters), self.feature_dim)
        if self.config["flip_average"]:  # the mean feature of the raster and its mirror image
            out = 0.5 * (out + self._run(branch.features, rasters[:, :, ::-1]).reshape(len(rasters), self.feature_dim))
        return out

    def sketch_features(self, rasters: np.ndarray, step: int | np.ndarray | None = None) -> np.ndarray:
        self.eval()
        rasters = np.asarray(rasters)
        if not self.per_step:
            return self._features(self.sketch_branches[0], rasters)
        if step is None:
            raise ArgumentError(f"backend {self.name!r} has one model per step: pass step")
        models = np.broadcast_to(self.model_of_step(step), (len(rasters),))
        out = np.empty((len(rasters), self.feature_dim), dtype=np.float32)
        for k in np.unique(models):
            sel = models == k
            out[sel] = self._features(self.sketch_branches[int(k)], rasters[sel])
        return out

    def query_layer(self, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.per_step and step is None:
            raise ArgumentError(f"backend {self.name!r} has one model per step: pass step")
        k = 0 if step is None else int(self.model_of_step(step))
        head = self.sketch_branches[k].head
        return (head.weight.detach().cpu().numpy().astype(np.float32),
                head.bias.detach().cpu().numpy().astype(np.float32))


def make_ts(**config: Any) -> TripletBackend:
    """TS: triplet Siamese network on complete sketches (no attention)."""
    return TripletBackend(**{**config, "name": "ts"})


def make_b1(**config: Any) -> TripletBackend:
    """B1: triplet network with spatial attention on complete sketches."""
    return TripletBackend(**{**config, "name": "b1"})


def make_b2(**config: Any) -> TripletBackend:
    """B2: the B1 model trained on all partial sketches."""
    return TripletBackend(**{**config, "name": "b2", "partial": True})


def make_b3(**config: Any) -> TripletBackend:
    """B3: one sketch model per completion percentage (``models``, default = ``steps``)."""
    config = {**config, "name": "b3", "partial": True}
    config.setdefault("models", config.get("steps", 20))
    return TripletBackend(**config)
