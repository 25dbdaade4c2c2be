"""The embedding losses, in one place: the triplet baselines', the meta backend's, the zero-shot backends'.

=============================== ==========================================================================
:func:`batch_all_triplet_loss`  TS / B1 / B2 / B3: in-batch batch-all triplet loss, optionally with the
                                learnable :class:`HOLEFDistance` (Song et al. 2017)
:func:`gallery_triplet_loss`    meta backend: a task's sketches against its whole gallery (every other
                                photo a negative), hinge or smooth hinge (the inner loop's)
:func:`domain_loss`             meta backend's ``L_D``: sketch-vs-photo discriminator on
                                :func:`grad_reverse`-d features
:func:`cosine_loss`             meta backend's ``L_S``: ``1 - cos`` to the category's word vector
:func:`gaussian_kl`             CVAE prior: ``KL(N(mu, sigma^2) || N(0, I))``
:func:`adversarial_generator_loss`, :func:`adversarial_discriminator_loss`
                                CAAE prior: the encoder's and the discriminator's cross-entropies
:func:`contrastive_loss`        zero-shot Siamese row (Hadsell et al. 2006)
:func:`category_triplet_loss`   zero-shot coarse-grained triplet row (category positives)
=============================== ==========================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "batch_all_triplet_loss",
    "HOLEFDistance",
    "unit_distance",
    "gallery_triplet_loss",
    "grad_reverse",
    "domain_loss",
    "cosine_loss",
    "gaussian_kl",
    "adversarial_generator_loss",
    "adversarial_discriminator_loss",
    "squared_error",
    "contrastive_loss",
    "category_triplet_loss",
]


def batch_all_triplet_loss(sketch: torch.Tensor, photo: torch.Tensor, margin: float,
                           distance: nn.Module | None = None) -> tuple[torch.Tensor, float]:
    """In-batch batch-all triplet loss (Hermans et al. 2017) for B paired, L2-normalised embeddings.

    With ``D[i, j] = d(s_i, p_j)`` (Euclidean unless ``distance`` is given, e.g. :class:`HOLEFDistance`),
    every other photo of the batch is a negative: ``L = mean over active (i, j != i) of
    max(0, margin + D[i, i] - D[i, j])``, averaging over the triplets that still violate the margin so
    easy negatives do not dilute the gradient. Returns the loss and the active fraction.
    """
    d = torch.cdist(sketch, photo) if distance is None else distance(sketch, photo)
    pos = d.diagonal().unsqueeze(1)
    losses = F.relu(margin + pos - d)
    off = ~torch.eye(len(d), dtype=torch.bool, device=d.device)
    losses = losses[off]
    active = (losses > 1e-12).float()
    n_active = active.sum()
    return losses.sum() / n_active.clamp(min=1.0), float(n_active / losses.numel())


class HOLEFDistance(nn.Module):
    """Higher-order learnable energy function (Song et al. 2017):
    ``D(s, p) = sum_ij |W_ij (s_i - p_i)(s_j - p_j)|`` with ``W`` initialised to the identity, where it
    equals the squared Euclidean distance. Used only inside the training loss (an option); retrieval
    keeps the Euclidean distance, so an identity-regularised ``W`` (``reg`` * ||W - I||^2) keeps the two
    consistent.
    """

    def __init__(self, dim: int, reg: float = 1e-3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(dim))
        self.reg = reg

    def forward(self, s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        diff = s[:, None, :] - p[None, :, :]  # (B, B, d)
        energy = torch.einsum("abi,ij,abj->ab", diff.abs(), self.weight.abs(), diff.abs())
        return energy

    def penalty(self) -> torch.Tensor:
        return self.reg * ((self.weight - torch.eye(len(self.weight), device=self.weight.device)) ** 2).sum()


def unit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||`` for L2-normalised rows, as ``sqrt(2 - 2 a.b)``: twice differentiable everywhere
    (``torch.cdist``'s backward is not), which the second-order inner loop needs."""
    return torch.sqrt((2.0 - 2.0 * a @ b.T).clamp(min=1e-8))


def gallery_triplet_loss(sketch: torch.Tensor, gallery: torch.Tensor, positive: torch.Tensor,
                         margin: float | torch.Tensor, softness: float = 0.0) -> torch.Tensor:
    """Triplet loss of L2-normalised sketch embeddings ``(n, d)`` against a gallery ``(G, d)`` where
    ``gallery[positive[i]]`` is sketch ``i``'s photo and every other gallery photo is a negative.

    ``softness = 0``: ``mean over active (i, j != p_i) of max(0, m + D[i, p_i] - D[i, j])`` (averaged over
    the triplets that violate the margin, as :func:`batch_all_triplet_loss`).
    ``softness = tau > 0``: the smooth hinge ``mean over (i, j != p_i) of tau softplus((m + D[i, p_i] -
    D[i, j]) / tau)``. The inner loop needs it: the hinge's gradient in ``theta_M`` does not depend on ``m``
    (``m`` is additive; it only switches triplets on and off), so the adapted head, and the query loss,
    would carry no gradient to a meta-learned margin; the smooth hinge weights each triplet's gradient by
    ``sigmoid((m + D_pos - D_neg) / tau)``, which does. ``margin`` may be a tensor.
    """
    d = unit_distance(sketch, gallery)
    pos = d.gather(1, positive.view(-1, 1))
    negative = torch.ones_like(d, dtype=torch.bool)
    negative[torch.arange(len(d), device=d.device), positive] = False
    if softness > 0:
        return (softness * F.softplus((margin + pos - d) / softness))[negative].mean()
    losses = F.relu(margin + pos - d)[negative]
    n_active = (losses.detach() > 1e-12).sum().clamp(min=1)
    return losses.sum() / n_active


class _GradReverse(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def grad_reverse(x: torch.Tensor) -> torch.Tensor:
    """The gradient-reversal layer: ``x`` forward, ``-grad`` backward."""
    return _GradReverse.apply(x)


def domain_loss(logits: torch.Tensor, num_sketches: int) -> torch.Tensor:
    """``L_D``: binary cross-entropy of discriminator ``logits`` whose first ``num_sketches`` rows are sketches
    (target 1) and the rest photos (target 0)."""
    target = torch.zeros(len(logits), device=logits.device)
    target[:num_sketches] = 1.0
    return F.binary_cross_entropy_with_logits(logits, target)


def cosine_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_S = mean_i 1 - cos(predicted_i, target_i)``."""
    return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean_batch KL(N(mu, exp(logvar)) || N(0, I)) = mean_batch -1/2 sum_k (1 + logvar - mu^2 - exp(logvar))``."""
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def squared_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_batch ||predicted - target||^2`` (the CVAE's reconstruction and regression terms)."""
    return (predicted - target).pow(2).sum(dim=1).mean()


def adversarial_generator_loss(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The CAAE's prior term for the encoder: ``-log Dis(z)`` (batch mean)."""
    fake = discriminator(z)
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def adversarial_discriminator_loss(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The CAAE discriminator's loss: ``-[log Dis(z_prior) + log(1 - Dis(z))]`` (batch means),
    ``z_prior ~ N(0, I)``, ``z`` detached."""
    z = z.detach()
    real = discriminator(torch.randn_like(z))
    fake = discriminator(z)
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake))


def contrastive_loss(s: torch.Tensor, p: torch.Tensor, same: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``mean_pos d^2 + mean_neg max(0, margin - d)^2`` over all pairs ``d = ||s_i - p_j||`` (Hadsell et al.)."""
    d = torch.cdist(s, p)
    pos = d[same].pow(2).mean() if same.any() else d.new_zeros(())
    neg = F.relu(margin - d[~same]).pow(2).mean() if (~same).any() else d.new_zeros(())
    return pos + neg


def category_triplet_loss(s: torch.Tensor, p: torch.Tensor, same: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Batch-all triplet loss with category positives: ``mean over active (i, j+, k-) of
    max(0, margin + d(s_i, p_j) - d(s_i, p_k))``, ``j`` of the sketch's category, ``k`` of another."""
    d = torch.cdist(s, p)
    losses = F.relu(margin + d[:, :, None] - d[:, None, :])  # (i, j, k)
    valid = same[:, :, None] & ~same[:, None, :]
    losses = losses[valid]
    active = (losses > 1e-12).float().sum()
    return losses.sum() / active.clamp(min=1.0)
