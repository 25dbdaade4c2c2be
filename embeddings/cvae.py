"""Zero-shot SBIR by generating photo features from sketches (Yelamarthi et al., *A Zero-Shot Framework
for Sketch Based Image Retrieval*, ECCV 2018): the ``cvae`` backend and its adversarial variant ``caae``.

Both work over the pooled features of a **frozen backbone** (a TS/B1/B2 checkpoint trained without the
unseen categories; VGG-16 fc7 in the paper): ``s`` the sketch feature, ``x`` the feature of its photo,
each put on the sphere of radius ``sqrt(F)`` (``u(f) = sqrt(F) f / ||f||``, so every dimension has mean
square 1 and the sums below do not depend on the backbone's feature scale).

Model (``F`` the feature size; the layer sizes scale with it: ``hidden = [F, F / 2]``, ``latent = F / 4``,
the paper's 4096 / 2048 / 1024 for VGG-16 fc7):

* encoder ``q(z | x, s)``: ``[x, s]`` (2F) -> F -> F/2 (each BatchNorm, ReLU, dropout 0.3) -> ``mu``,
  ``log sigma^2`` (each ``tanh`` of a linear layer, ``latent`` dims);
* decoder ``x^ = D(z, s)``: ``[z, s]`` -> F/2 (ReLU) -> F (linear): the generated photo feature;
* regressor ``R``: ``x^`` -> ``s`` (one linear layer), which keeps the sketch's outline in what is generated.

Loss of a batch (means over the batch of sums over dimensions), with ``z = mu + sigma * eps``:

    L = ||x^ - x||^2  +  w_prior * KL(N(mu, sigma^2) || N(0, I))  +  lambda * ||R(x^) - s||^2

    KL = -1/2 sum_l (1 + log sigma_l^2 - mu_l^2 - sigma_l^2),   lambda = 10 (``regression_weight``).

``caae`` (conditional adversarial autoencoder) makes the encoder deterministic (``z = mu``) and replaces
the KL term with a discriminator ``Dis`` matching the codes to the prior: ``Dis`` maximises
``log Dis(z_prior) + log(1 - Dis(z))`` and the autoencoder adds ``w_prior * (-log Dis(z))``.

Retrieval: ``M`` codes ``z_m ~ N(0, I)`` (``samples``, 100 by default) are drawn **once** from
``sample_seed`` and shared by every query, so a query depends only on its sketch (deterministic, cacheable,
independent of the batch). The query is ``q = normalise(mean_m D(z_m, s))``; the gallery is the photos'
backbone features, L2-normalised, and photos are ranked by Euclidean distance between unit vectors, the
order of cosine similarity. Because the decoder's last layer is linear,
``mean_m D(z_m, s) = W_2 mean_m relu(W_z z_m + W_s s + b_1) + b_2``: the last layer runs once per query,
not ``M`` times. :meth:`CVAEBackend.sample_distance` gives the min-over-samples variant,
``d(s, g) = min_m ||normalise(D(z_m, s)) - g||``.

As an embedding backend: ``sketch_features`` = the backbone's pooled sketch feature (F), the gallery =
the normalised backbone photo features (``embed_dim = F``), ``queries`` = the averaged generated feature.
The query is not linear in the feature, so :meth:`CVAEBackend.query_layer` raises
``NotImplementedError``; everything else (the feature store, evaluation, an env's stored queries) goes
through :meth:`CVAEBackend.queries`.

The configuration stores the backbone checkpoint's absolute path and its fingerprint; building the
backend (and so loading a checkpoint) loads the backbone and raises :class:`BackendMismatchError` when its
fingerprint differs from the recorded one. Training: :mod:`embeddings.zero_shot`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embeddings.base import BackendMismatchError, EmbeddingBackend, l2_normalise, load_backend
from embeddings.losses import adversarial_discriminator_loss, adversarial_generator_loss, gaussian_kl, squared_error
from embeddings.triplet import TripletBackend
from sketch_env.errors import ArgumentError
from sketch_env.render import RenderConfig

__all__ = [
    "CVAEBackend",
    "FeatureCVAE",
    "default_config",
    "layer_sizes",
    "make_cvae",
    "make_caae",
    "backbone_photo_features",
    "unit_rms",
]


def default_config(name: str = "cvae") -> dict[str, Any]:
    """The default configuration of ``cvae`` / ``caae`` (plain data; ``None`` entries are filled in from the
    backbone: ``feature_dim``, ``embed_dim`` = F, ``hidden`` and ``latent`` by :func:`layer_sizes`)."""
    return {
        "name": name,
        "backbone": None,  # path of the frozen backbone checkpoint (stored absolute)
        "backbone_fingerprint": None,  # checked on load
        "feature_dim": None,
        "embed_dim": None,
        "hidden": None,  # [F, F / 2]
        "latent": None,  # F / 4
        "dropout": 0.3,
        "latent_activation": "tanh",  # on mu and log-variance, as in the paper's encoder; or "none"
        "prior": "adversarial" if name == "caae" else "kl",
        "prior_weight": 1.0,  # weight of the KL term (cvae) or of the adversarial term (caae)
        "regression_weight": 10.0,  # lambda of ||R(x^) - s||^2
        "samples": 100,  # M codes decoded per query
        "sample_seed": 0,
        # filled in by training: what the model was trained on
        "dataset": None,
        "scheme": None,
        "train_split": None,
    }


def layer_sizes(feature_dim: int) -> tuple[list[int], int]:
    """``([F, F // 2], F // 4)``: hidden widths and latent size for backbone features of size F (the paper's
    4096 / 2048 / 1024 for VGG-16 fc7), each at least 1."""
    f = int(feature_dim)
    if f < 1:
        raise ArgumentError(f"feature_dim must be >= 1, got {feature_dim}")
    return [f, max(1, f // 2)], max(1, f // 4)


def unit_rms(features: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``sqrt(F) f / ||f||`` along the last axis: the scale the CVAE works in (mean square 1 per dimension)."""
    if isinstance(features, torch.Tensor):
        return F.normalize(features.float(), dim=-1) * math.sqrt(features.shape[-1])
    f = np.asarray(features, dtype=np.float32)
    return l2_normalise(f) * np.float32(math.sqrt(f.shape[-1]))


class FeatureCVAE(nn.Module):
    """The networks of the CVAE / CAAE over F-dim features (see the module docstring for the loss)."""

    def __init__(
        self,
        feature_dim: int,
        hidden: list[int],
        latent: int,
        dropout: float = 0.3,
        prior: str = "kl",
        latent_activation: str = "tanh",
    ) -> None:
        super().__init__()
        if prior not in ("kl", "adversarial"):
            raise ArgumentError(f"prior must be 'kl' (CVAE) or 'adversarial' (CAAE), got {prior!r}")
        if latent_activation not in ("tanh", "none"):
            raise ArgumentError(f"latent_activation must be 'tanh' or 'none', got {latent_activation!r}")
        if len(hidden) != 2:
            raise ArgumentError(f"hidden must list 2 widths (encoder F -> F/2, decoder F/2), got {hidden}")
        f, (h1, h2) = int(feature_dim), (int(hidden[0]), int(hidden[1]))
        self.feature_dim, self.latent, self.prior = f, int(latent), prior
        self.latent_activation = latent_activation

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU(inplace=True), nn.Dropout(dropout)]

        self.encoder = nn.Sequential(*block(2 * f, h1), *block(h1, h2))
        self.mu = nn.Linear(h2, self.latent)
        self.logvar = nn.Linear(h2, self.latent) if prior == "kl" else None
        self.decoder_hidden = nn.Linear(self.latent + f, h2)
        self.decoder_out = nn.Linear(h2, f)
        self.regressor = nn.Linear(f, f)
        self.discriminator = (
            nn.Sequential(nn.Linear(self.latent, h2), nn.LeakyReLU(0.2), nn.Linear(h2, 1))
            if prior == "adversarial"
            else None
        )

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.latent_activation == "tanh" else x

    def encode(self, photo: torch.Tensor, sketch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, log sigma^2)`` of ``q(z | x, s)``; the log-variance is ``None`` for the CAAE."""
        h = self.encoder(torch.cat([photo, sketch], dim=1))
        return self._act(self.mu(h)), (self._act(self.logvar(h)) if self.logvar is not None else None)

    def decode(self, z: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
        """The generated photo feature ``x^ = W_2 relu(W_1 [z, s] + b_1) + b_2`` (``(B, F)``)."""
        return self.decoder_out(F.relu(self.decoder_hidden(torch.cat([z, sketch], dim=1))))

    def generate_mean(self, sketch: torch.Tensor, codes: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
        """``mean_m D(z_m, s)`` for every sketch ``(B, F)`` and codes ``(M, latent)``, computed as
        ``W_2 mean_m relu(W_z z_m + W_s s + b_1) + b_2`` in chunks of at most ``chunk_elems`` hidden units."""
        w = self.decoder_hidden.weight
        from_codes = codes @ w[:, : self.latent].T  # (M, H)
        from_sketch = F.linear(sketch, w[:, self.latent :], self.decoder_hidden.bias)  # (B, H)
        per = max(1, chunk_elems // max(1, codes.shape[0] * w.shape[0]))
        hidden = [
            F.relu(from_sketch[i : i + per, None, :] + from_codes[None]).mean(dim=1) for i in range(0, len(sketch), per)
        ]
        if not hidden:
            return sketch.new_zeros((0, self.feature_dim))
        return self.decoder_out(torch.cat(hidden))

    def losses(
        self, photo: torch.Tensor, sketch: torch.Tensor, regression_weight: float, prior_weight: float
    ) -> dict[str, torch.Tensor]:
        """The loss terms of a batch of paired, :func:`unit_rms`-scaled features (module docstring).

        Returns ``reconstruction``, ``prior`` (KL for the CVAE; ``-log Dis(z)`` for the CAAE), ``regression``
        and ``total = reconstruction + prior_weight * prior + regression_weight * regression``, plus ``z``
        (the codes, for the CAAE's discriminator step).
        """
        mu, logvar = self.encode(photo, sketch)
        if logvar is not None:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            prior = gaussian_kl(mu, logvar)
        else:
            z = mu
            prior = adversarial_generator_loss(self.discriminator, z)
        generated = self.decode(z, sketch)
        reconstruction = squared_error(generated, photo)
        regression = squared_error(self.regressor(generated), sketch)
        total = reconstruction + prior_weight * prior + regression_weight * regression
        return {"total": total, "reconstruction": reconstruction, "prior": prior, "regression": regression, "z": z}

    def discriminator_loss(self, z: torch.Tensor) -> torch.Tensor:
        """CAAE: ``-[log Dis(z_prior) + log(1 - Dis(z))]`` (batch means), ``z_prior ~ N(0, I)``; ``z`` detached."""
        if self.discriminator is None:
            raise ArgumentError("discriminator_loss is for the adversarial prior (caae)")
        return adversarial_discriminator_loss(self.discriminator, z)


def backbone_photo_features(backbone: TripletBackend, photos: np.ndarray) -> np.ndarray:
    """The backbone photo branch's pooled feature (before its embedding layer) of uint8 RGB photos
    ``(P, H, W, 3)``: float32 ``(P, F)``, the photo counterpart of ``backbone.sketch_features``."""
    return backbone.photo_features(photos)


class CVAEBackend(EmbeddingBackend):
    """``cvae`` / ``caae`` as an embedding backend (see the module docstring).

    Args (configuration keywords; see :func:`default_config`):
        backbone: path of the frozen backbone checkpoint (required).
        backbone_fingerprint: when given (a loaded checkpoint), must equal the backbone's fingerprint.
        samples, sample_seed: the ``M`` codes decoded per query and the seed they are drawn from.
    """

    def __init__(self, **config: Any) -> None:
        cfg = default_config(config.get("name", "cvae"))
        unknown = set(config) - set(cfg)
        if unknown:
            raise ArgumentError(f"unknown {cfg['name']} options {sorted(unknown)}; known: {sorted(cfg)}")
        cfg.update(config)
        if not cfg["backbone"]:
            raise ArgumentError(f"backend {cfg['name']!r} needs backbone=PATH, the frozen backbone checkpoint")
        path = Path(cfg["backbone"]).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{cfg['name']}: backbone checkpoint {path} does not exist")
        backbone = load_backend(path)
        if not isinstance(backbone, TripletBackend) or backbone.per_step:
            raise ArgumentError(
                f"{path}: the {cfg['name']} backbone must be a single-model triplet backend "
                f"(ts, b1, b2), got {backbone!r}"
            )
        fingerprint = backbone.fingerprint()
        if cfg["backbone_fingerprint"] is not None and cfg["backbone_fingerprint"] != fingerprint:
            raise BackendMismatchError(
                f"{path}: backbone fingerprint {fingerprint} differs from {cfg['backbone_fingerprint']}, the one "
                f"this {cfg['name']} was trained on (the checkpoint was retrained or replaced)"
            )
        feat = backbone.feature_dim
        if cfg["feature_dim"] is not None and int(cfg["feature_dim"]) != feat:
            raise BackendMismatchError(f"{path}: backbone features have {feat} dims, config says {cfg['feature_dim']}")
        hidden, latent = layer_sizes(feat)
        cfg.update(
            backbone=str(path),
            backbone_fingerprint=fingerprint,
            feature_dim=feat,
            embed_dim=feat,
            hidden=list(cfg["hidden"] or hidden),
            latent=int(cfg["latent"] or latent),
        )
        if int(cfg["samples"]) < 1:
            raise ArgumentError(f"samples must be >= 1, got {cfg['samples']}")
        super().__init__(cfg)
        self.name = cfg["name"]
        self.backbone = backbone
        self.model = FeatureCVAE(
            feat, cfg["hidden"], cfg["latent"], cfg["dropout"], cfg["prior"], cfg["latent_activation"]
        )
        self.device = torch.device("cpu")
        self.batch_size = 4096
        self.model.eval()

    # -- settings delegated to the backbone ------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])

    @property
    def render_config(self) -> RenderConfig:
        return self.backbone.render_config

    @property
    def photo_size(self) -> int:
        return self.backbone.photo_size

    def codes(self) -> torch.Tensor:
        """The ``M`` shared codes ``z_m ~ N(0, I)``, ``(M, latent)``, drawn from ``sample_seed`` on the CPU."""
        gen = torch.Generator().manual_seed(int(self.config["sample_seed"]))
        return torch.randn(int(self.config["samples"]), int(self.config["latent"]), generator=gen).to(self.device)

    # -- torch plumbing ---------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> CVAEBackend:
        self.device = torch.device(device)
        self.model.to(self.device)
        self.backbone.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    # -- the interface ----------------------------------------------------------------------------
    def photo_embeddings(self, photos: np.ndarray) -> np.ndarray:
        """The gallery: the backbone's pooled photo features, L2-normalised, float32 ``(P, F)``."""
        return l2_normalise(backbone_photo_features(self.backbone, photos))

    def sketch_features(self, rasters: np.ndarray, step: int | np.ndarray | None = None) -> np.ndarray:
        """The backbone's pooled sketch feature ``s``, float32 ``(B, F)`` (``step`` is ignored)."""
        return self.backbone.sketch_features(rasters)

    def query_layer(self, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(
            f"backend {self.name!r} has no linear query layer: its query is the normalised mean of "
            f"{self.config['samples']} decoded samples; use queries(features)"
        )

    def _batches(self, features: np.ndarray):
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != self.feature_dim:
            raise ArgumentError(f"features must have shape (B, {self.feature_dim}), got {f.shape}")
        for lo in range(0, len(f), self.batch_size):
            yield torch.from_numpy(unit_rms(f[lo : lo + self.batch_size])).to(self.device)

    def generated_mean(self, features: np.ndarray) -> np.ndarray:
        """``mean_m D(z_m, u(s))`` of sketch features ``(B, F)``, float32 ``(B, F)`` (not normalised)."""
        self.model.eval()
        codes = self.codes()
        out = [np.empty((0, self.feature_dim), np.float32)]
        with torch.inference_mode():
            for s in self._batches(features):
                out.append(self.model.generate_mean(s, codes).float().cpu().numpy())
        return np.concatenate(out)

    def queries(self, features: np.ndarray, step: int | np.ndarray | None = None) -> np.ndarray:
        """``normalise(mean_m D(z_m, u(s)))`` of sketch features ``(B, F)``: float32 ``(B, F)``."""
        return l2_normalise(self.generated_mean(features))

    def query_samples(self, features: np.ndarray) -> np.ndarray:
        """Every decoded sample, normalised: float32 ``(B, M, F)`` (for the min-over-samples variant)."""
        self.model.eval()
        codes = self.codes()
        m = len(codes)
        out = [np.empty((0, m, self.feature_dim), np.float32)]
        with torch.inference_mode():
            for s in self._batches(features):
                for i in range(0, len(s), 64):
                    part = s[i : i + 64]
                    gen = self.model.decode(codes.repeat(len(part), 1), part.repeat_interleave(m, dim=0))
                    out.append(F.normalize(gen, dim=-1).view(len(part), m, -1).float().cpu().numpy())
        return np.concatenate(out)

    def sample_distance(self, features: np.ndarray, gallery: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Min-over-samples distance ``d(s, g) = min_m ||normalise(D(z_m, u(s))) - g||``, float32 ``(B, P)``
        (``gallery`` L2-normalised); ``chunk`` sketches at a time."""
        g = torch.from_numpy(np.asarray(gallery, dtype=np.float32))
        out = np.empty((len(features), len(g)), dtype=np.float32)
        for lo in range(0, len(features), chunk):
            samples = torch.from_numpy(self.query_samples(features[lo : lo + chunk]))  # (b, M, F)
            cos = torch.einsum("bmf,pf->bmp", samples, g).amax(dim=1)
            out[lo : lo + chunk] = torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=0.0)).numpy()
        return out


def make_cvae(**config: Any) -> CVAEBackend:
    """``cvae``: conditional VAE generating photo features from sketch features (KL prior)."""
    return CVAEBackend(**{**config, "name": "cvae", "prior": config.get("prior", "kl")})


def make_caae(**config: Any) -> CVAEBackend:
    """``caae``: the conditional adversarial autoencoder variant (adversarial prior matching)."""
    return CVAEBackend(**{**config, "name": "caae", "prior": config.get("prior", "adversarial")})
