"""The meta-adapted backend (``meta``): Adaptive FG-SBIR (Bhunia et al., ECCV 2022), k-shot adaptation of
a fine-grained sketch-photo model to an unseen category or drawing style.

Model
    A feature extractor ``F`` (the project's :class:`~embeddings.nets.SmallCNN` with spatial attention,
    shared by sketches and photos, as in B1) and a meta head ``M`` (one linear layer + L2 normalisation):
    ``embed(x) = normalise(W F(x) + b)``. It implements the backend interface exactly as B1 does, so the
    environment and the agents use it unchanged (the observation feature is ``F``'s pooled feature, the
    query layer is ``M``).

Tasks
    A task is one category (``task_level="category"``) or one group of drawings standing in for a user
    (``"style"``): a gallery ``G`` of that task's photos, a support set ``S`` of ``k`` sketch-photo pairs and
    a query set ``Q`` of other pairs, every photo of ``S`` and ``Q`` in ``G``. The triplet loss of a set
    against its gallery is (:func:`gallery_triplet_loss`, every other gallery photo a negative)

        ``L_trip(X, G; m) = mean over active (i, j != p_i) of max(0, m + ||z_i - g_{p_i}|| - ||z_i - g_j||)``

    Using the task's gallery photos as negatives is what makes k = 1 adaptation possible at all (one pair
    has no in-pair negative); at test time the gallery is known, unlabelled, so this uses no query label.

Inner loop (only M)
    ``theta_M' = theta_M - alpha_s * grad_{theta_M} L_soft(S, G; mu(S))`` for ``inner_steps`` steps (``L_soft``:
    the triplet loss with the smooth hinge ``tau softplus(x / tau)``, ``tau = inner_softness``, see
    :func:`gallery_triplet_loss` for why the margin needs it), with
    ``F``'s features computed once per task: each step costs one linear layer, and the second-order terms
    run through ``M`` only. ``alpha_s`` is one learnable rate per inner step (MAML++'s per-step rates),
    starting at ``inner_lr``. ``first_order=True`` drops the second-order terms. ``inner="all"`` is the MAML
    row of the paper's table instead: the inner loop updates every layer, re-running ``F`` each step.

Meta-learned margin mu(S)
    The paper predicts the margin of each task from its support set but does not give the predictor. Here it
    is a DeepSets network over the support pairs' ``F`` features (normalised, detached, so ``F`` is not
    trained to move its own margin):
    ``mu(S) = lo + (hi - lo) * sigmoid(rho(mean_i phi([u_i * v_i, |u_i - v_i|])))`` with ``u_i, v_i`` the
    sketch and photo features of pair ``i``, ``phi`` a 2-layer MLP, ``rho`` linear, ``[lo, hi] = [0.05, 1]``
    (the paper's plotted margins lie in 0.1 - 0.9). The margin enters only the inner-loop loss, so it is
    learned through the inner loop, by the second-order path: with ``first_order=True`` it receives no
    gradient and stays at its initial value (about the middle of the range). The outer loss uses the fixed
    ``margin`` (else the trivial margin 0 would minimise it). Training logs the predicted margins.

Outer loss (F, M, mu and the regularisers)
    ``L = L_trip(Q, G; theta_M', margin) + w_D L_D + w_C L_C (category tasks) | w_ud L_ud (style tasks) + w_S L_S``

    * ``L_D``: a sketch-vs-photo domain discriminator on ``F``'s features behind a gradient-reversal layer
      (Ganin & Lempitsky 2015): the discriminator learns the domain, ``F`` learns to hide it.
    * ``L_C``: a category classifier on ``F``'s features (cross-entropy over the training categories).
    * ``L_ud``: for style tasks, the triplet loss in ``F``'s (normalised) intermediate space.
    * ``L_S``: a semantic decoder regressing the category's word vector from ``F``'s features,
      ``1 - cos(dec(f), w_c)`` (:func:`embeddings.semantic.category_word_vectors` for the categories' vectors).

    A weight of 0 switches a regulariser off (the ablation rows).

Adaptation
    :meth:`MetaBackend.adapt` runs the inner loop on a support set (and the unlabelled gallery as
    negatives) and returns a new backend with the adapted head: save it, cache features with it, or pass
    ``adapt=`` to the retrieval environment (:func:`embeddings.provision.load_retrieval_data`).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embeddings.losses import cosine_loss, domain_loss, gallery_triplet_loss, grad_reverse
from embeddings.nets import raster_tensor
from embeddings.semantic import semantic_vector_dim
from embeddings.triplet import TripletBackend
from embeddings.triplet import default_config as triplet_default_config
from sketch_env.errors import ArgumentError

__all__ = [
    "MetaBackend",
    "make_meta",
    "default_config",
    "MarginNet",
    "fine_tune",
    "merge_gallery",
]


def default_config(name: str = "meta") -> dict[str, Any]:
    """The ``meta`` backend's configuration: B1's keys plus the meta-learning ones."""
    cfg = triplet_default_config("b1")
    cfg.update(
        name=name,
        inner="head",  # "head": the inner loop adapts M only (this method, ANIL); "all": every layer (MAML)
        inner_steps=1,
        inner_lr=0.1,
        learn_inner_lr=True,
        first_order=False,
        margin_net=True,  # False: the fixed `margin` in the inner loop too (MAML, ANIL rows)
        margin_range=[0.05, 1.0],
        inner_softness=0.05,  # tau of the inner loop's smooth hinge (gallery_triplet_loss); 0: the hinge
        domain_weight=0.1,  # L_D
        category_weight=0.1,  # L_C (category tasks)
        intermediate_weight=0.1,  # L_ud (style tasks)
        semantic_weight=0.1,  # L_S
        task_level="category",  # or "style"
        categories=[],  # the training categories, in classifier order (filled in by training)
        semantic_dim=64,  # None: the size of semantic_vectors' vectors (384 for "minilm")
        # the category vectors L_S regresses: None = hashed character 3-grams of the name; "minilm" = the
        # all-MiniLM-L6-v2 sentence embedding (the `text` extra); a sentence-transformers model folder; a GloVe file
        semantic_vectors=None,
        adaptation=None,  # set on an adapted copy: what it was adapted on
    )
    return cfg


class MarginNet(nn.Module):
    """The task's margin from its support pairs (DeepSets; module docstring):
    ``mu(S) = lo + (hi - lo) sigmoid(rho(mean_i phi([u_i v_i, |u_i - v_i|])))``."""

    def __init__(self, feature_dim: int, lo: float, hi: float, hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2 * feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Linear(hidden, 1)
        self.lo, self.hi = float(lo), float(hi)

    def forward(self, sketch_features: torch.Tensor, photo_features: torch.Tensor) -> torch.Tensor:
        u = F.normalize(sketch_features.detach(), dim=-1)
        v = F.normalize(photo_features.detach(), dim=-1)
        pooled = self.phi(torch.cat([u * v, (u - v).abs()], dim=-1)).mean(dim=0)
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.rho(pooled)).squeeze(-1)


def _mlp(din: int, dout: int, hidden: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, hidden), nn.ReLU(), nn.Linear(hidden, dout))


class MetaBackend(TripletBackend):
    """``meta``: ``F`` + meta head ``M`` with the meta-learning parts (module docstring).

    ``sketch_branches[0]`` (``= photo_branch``) is ``F`` + ``M`` (its ``head``); ``margin_net``, ``inner_lrs``
    and the regularisers (``discriminator``, ``classifier``, ``decoder``) are used only in meta-training.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        cfg = self.config
        if cfg["inner"] not in ("head", "all"):
            raise ArgumentError(f"inner must be 'head' (adapt M only) or 'all' (MAML), got {cfg['inner']!r}")
        if cfg["task_level"] not in ("category", "style"):
            raise ArgumentError(f"task_level must be 'category' or 'style', got {cfg['task_level']!r}")
        if cfg["models"] != 1 or not cfg["shared"]:
            raise ArgumentError("the meta backend is one Siamese model: models=1, shared=True")
        if int(cfg["inner_steps"]) < 0:
            raise ArgumentError(f"inner_steps must be >= 0, got {cfg['inner_steps']}")
        lo, hi = cfg["margin_range"]
        if not 0 <= lo < hi:
            raise ArgumentError(f"margin_range must be [lo, hi] with 0 <= lo < hi, got {cfg['margin_range']}")
        fdim = self.feature_dim
        self.margin_net = MarginNet(fdim, lo, hi)
        self.inner_lrs = nn.Parameter(torch.full((max(1, int(cfg["inner_steps"])),), math.log(cfg["inner_lr"])))
        self.discriminator = _mlp(fdim, 1)
        self.classifier = nn.Linear(fdim, max(1, len(cfg["categories"])))
        if cfg["semantic_dim"] is None:  # the vectors' own size, recorded so a saved model needs no lookup
            cfg["semantic_dim"] = semantic_vector_dim(cfg["semantic_vectors"])
        self.decoder = _mlp(fdim, int(cfg["semantic_dim"]))
        self._extras = nn.ModuleDict({"margin_net": self.margin_net, "discriminator": self.discriminator,
                                      "classifier": self.classifier, "decoder": self.decoder})
        self.to(self.device)

    @staticmethod
    def default_config(name: str) -> dict[str, Any]:
        return default_config(name)

    # -- torch plumbing: the extra modules travel with the model ----------------------------------
    def modules(self) -> list[nn.Module]:
        mods = super().modules()
        extras = getattr(self, "_extras", None)
        return mods + [extras] if extras is not None else mods

    def parameters(self):
        yield from super().parameters()
        if hasattr(self, "inner_lrs"):
            yield self.inner_lrs

    def to(self, device: str | torch.device) -> MetaBackend:
        super().to(device)
        if hasattr(self, "inner_lrs"):
            self.inner_lrs.data = self.inner_lrs.data.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "extras": self._extras.state_dict(),
                "inner_lrs": self.inner_lrs.detach().cpu()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._extras.load_state_dict(state["extras"])
        self.inner_lrs.data = state["inner_lrs"].to(self.inner_lrs.device, self.inner_lrs.dtype)

    # -- the pieces of the meta-objective ---------------------------------------------------------
    @property
    def network(self) -> nn.Module:
        """``F`` + ``M`` (a :class:`~embeddings.nets.Branch`)."""
        return self.sketch_branches[0]

    def task_margin(self, support_sketch_features: torch.Tensor, support_photo_features: torch.Tensor) -> torch.Tensor:
        """The inner-loop margin of a task: ``mu(S)``, or the fixed ``margin`` without the margin network."""
        if self.config["margin_net"]:
            return self.margin_net(support_sketch_features, support_photo_features)
        return torch.tensor(float(self.config["margin"]), device=support_sketch_features.device)

    def inner_rate(self, step: int) -> torch.Tensor:
        rate = self.inner_lrs[min(step, len(self.inner_lrs) - 1)].exp()
        return rate if self.config["learn_inner_lr"] else rate.detach()

    def adapt_head(self, sketch_features: torch.Tensor, gallery_features: torch.Tensor, positive: torch.Tensor,
                   margin: torch.Tensor, steps: int | None = None, create_graph: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The inner loop on ``M`` only: ``K`` steps of ``theta_M <- theta_M - alpha_s grad L_trip(S, G; margin)``
        on fixed features; returns the adapted ``(W, b)`` (differentiable when ``create_graph``)."""
        head = self.network.head
        weight, bias = head.weight, head.bias
        for s in range(int(self.config["inner_steps"]) if steps is None else steps):
            loss = gallery_triplet_loss(F.normalize(F.linear(sketch_features, weight, bias), dim=-1),
                                        F.normalize(F.linear(gallery_features, weight, bias), dim=-1),
                                        positive, margin, softness=float(self.config["inner_softness"]))
            g_w, g_b = torch.autograd.grad(loss, (weight, bias), create_graph=create_graph)
            rate = self.inner_rate(s)
            weight, bias = weight - rate * g_w, bias - rate * g_b
        return weight, bias

    def adapt_all(self, sketches: torch.Tensor, gallery: torch.Tensor, positive: torch.Tensor,
                  margin: torch.Tensor, steps: int | None = None, create_graph: bool = False
                  ) -> dict[str, torch.Tensor]:
        """The MAML inner loop on every layer of ``F`` + ``M`` (images in, re-running ``F`` each step);
        returns the adapted parameters for :func:`torch.func.functional_call`."""
        from torch.func import functional_call

        net = self.network
        params = dict(net.named_parameters())
        buffers = dict(net.named_buffers())
        for s in range(int(self.config["inner_steps"]) if steps is None else steps):
            z_s = functional_call(net, {**params, **buffers}, (sketches,))
            z_g = functional_call(net, {**params, **buffers}, (gallery,))
            loss = gallery_triplet_loss(z_s, z_g, positive, margin, softness=float(self.config["inner_softness"]))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph, allow_unused=True)
            rate = self.inner_rate(s)
            params = {k: p if g is None else p - rate * g for (k, p), g in zip(params.items(), grads)}
        return params

    def discriminator_loss(self, sketch_features: torch.Tensor, photo_features: torch.Tensor) -> torch.Tensor:
        """``L_D``: binary cross-entropy of the domain discriminator on gradient-reversed features."""
        x = grad_reverse(torch.cat([sketch_features, photo_features]))
        return domain_loss(self.discriminator(x).squeeze(-1), len(sketch_features))

    def semantic_loss(self, features: torch.Tensor, word_vectors: torch.Tensor) -> torch.Tensor:
        """``L_S = mean_i 1 - cos(dec(f_i), w_{c_i})``."""
        return cosine_loss(self.decoder(features), word_vectors)

    # -- adaptation ----------------------------------------------------------------------------------
    def adapt(self, support_pairs: tuple[np.ndarray, np.ndarray] | Sequence[tuple[np.ndarray, np.ndarray]],
              steps: int | None = None, gallery: np.ndarray | None = None, description: str | None = None
              ) -> MetaBackend:
        """A copy of this backend adapted to a support set by the inner loop (module docstring).

        Args:
            support_pairs: ``(sketch_rasters (k, H, W) uint8, photos (k, H, W, 3) uint8)`` or a sequence of
                ``(raster, photo)`` pairs: the k sketches rendered with :attr:`render_config`, and their photos.
            steps: inner steps (default: the configured ``inner_steps``).
            gallery: optional unlabelled photos ``(G, H, W, 3)`` of the target task, used as further
                negatives (with k = 1 there are none otherwise, and adaptation would do nothing).
            description: recorded in the adapted copy's ``config["adaptation"]``.
        """
        sketches, photos = _pairs_to_arrays(support_pairs)
        photos_all, positive_index = merge_gallery(photos, gallery)
        if len(photos_all) < 2:
            raise ArgumentError("adapt() needs a negative: pass at least 2 support pairs or a gallery of photos")
        device = self.device
        x_s = raster_tensor(sketches, device)
        x_g = raster_tensor(self.preprocess(photos_all), device)
        positive = torch.as_tensor(positive_index, device=device)
        out = copy.deepcopy(self)
        out.eval()
        with torch.enable_grad():
            if self.config["inner"] == "head":
                with torch.no_grad():
                    f_s = out.network.features(x_s)
                    f_g = out.network.features(x_g)
                    margin = out.task_margin(f_s, f_g[positive])
                weight, bias = out.adapt_head(f_s, f_g, positive, margin, steps=steps)
                out.network.head.weight.data.copy_(weight.detach())
                out.network.head.bias.data.copy_(bias.detach())
            else:
                with torch.no_grad():
                    margin = out.task_margin(out.network.features(x_s), out.network.features(x_g[positive]))
                params = out.adapt_all(x_s, x_g, positive, margin, steps=steps)
                with torch.no_grad():
                    for name, p in out.network.named_parameters():
                        p.copy_(params[name].detach())
        digest = hashlib.sha256(sketches.tobytes() + photos_all.tobytes()).hexdigest()[:16]
        out.config["adaptation"] = {"shots": int(len(sketches)), "gallery": int(len(photos_all)),
                                    "steps": int(self.config["inner_steps"] if steps is None else steps),
                                    "margin": round(float(margin), 4), "support_digest": digest,
                                    "description": description}
        return out


def merge_gallery(photos: np.ndarray, gallery: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The task gallery with the support photos in it once: ``gallery`` followed by the support photos it
    lacks (byte-identical photos are the same photo, so a support photo is never its own negative), and each
    support pair's positive index into it."""
    photos = np.asarray(photos, dtype=np.uint8)
    if gallery is None or not len(gallery):
        return photos, np.arange(len(photos))
    gallery = np.asarray(gallery, dtype=np.uint8)
    if gallery.shape[1:] != photos.shape[1:]:
        raise ArgumentError(f"gallery photos {gallery.shape[1:]} and support photos {photos.shape[1:]} differ in size")
    index = {hashlib.sha1(g.tobytes()).digest(): i for i, g in enumerate(gallery)}
    extra: list[np.ndarray] = []
    positive = []
    for p in photos:
        key = hashlib.sha1(p.tobytes()).digest()
        if key not in index:
            index[key] = len(gallery) + len(extra)
            extra.append(p)
        positive.append(index[key])
    merged = np.concatenate([gallery, np.stack(extra)]) if extra else gallery
    return merged, np.asarray(positive)


def _pairs_to_arrays(support_pairs) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(support_pairs, tuple) and len(support_pairs) == 2 and np.ndim(support_pairs[0]) == 3:
        sketches, photos = support_pairs
    else:
        pairs = list(support_pairs)
        if not pairs:
            raise ArgumentError("adapt() got an empty support set")
        sketches = np.stack([np.asarray(s) for s, _ in pairs])
        photos = np.stack([np.asarray(p) for _, p in pairs])
    sketches = np.asarray(sketches, dtype=np.uint8)
    photos = np.asarray(photos, dtype=np.uint8)
    if sketches.ndim != 3 or photos.ndim != 4 or len(sketches) != len(photos) or len(sketches) == 0:
        raise ArgumentError(f"support set must be k sketch rasters (k, H, W) and k photos (k, H, W, 3); got "
                         f"{sketches.shape} and {photos.shape}")
    return sketches, photos


def fine_tune(backend: TripletBackend, sketches: np.ndarray, photos: np.ndarray, gallery: np.ndarray | None = None,
              steps: int = 10, lr: float = 1e-4) -> TripletBackend:
    """The fine-tuning row: a copy of ``backend`` with every layer trained by Adam for ``steps`` steps on the
    support pairs (gallery photos as further negatives), ``L_trip(S, G; margin)``; BatchNorm stays in
    evaluation mode (k = 1..10 images give no usable batch statistics)."""
    out = copy.deepcopy(backend)
    device = out.device
    photos_all, positive_index = merge_gallery(photos, gallery)
    x_s = raster_tensor(np.asarray(sketches, dtype=np.uint8), device)
    x_g = raster_tensor(out.preprocess(photos_all), device)
    positive = torch.as_tensor(positive_index, device=device)
    net = out.sketch_branches[0]
    net.eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = gallery_triplet_loss(net(x_s), out.photo_branch(x_g), positive, float(out.config["margin"]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    out.eval()
    return out


def make_meta(**config: Any) -> MetaBackend:
    """``meta``: the meta-adapted backend (Adaptive FG-SBIR)."""
    return MetaBackend(**{**config, "name": config.get("name", "meta")})


# -- the semantic targets of L_S ----------------------------------------------------------------------
