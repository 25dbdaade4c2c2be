"""The embedding losses (embeddings.losses) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.losses import HOLEFDistance, batch_all_triplet_loss
from embeddings.zero_shot import (
    category_triplet_loss,
    contrastive_loss,
)


def test_batch_all_triplet_loss_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # D = [[0, 0.894], [1.414, 0.632]]: anchor 0 is satisfied by 0.894 > 0 + 0.2;
    # anchor 1: 0.2 + 0.632 - 1.414 < 0 -> no violation
    loss, active = batch_all_triplet_loss(s, p, margin=0.2)
    assert float(loss) == 0.0 and active == 0.0
    loss, active = batch_all_triplet_loss(s, p, margin=1.0)
    # anchor 0: 1 + 0 - 0.8944 = 0.1056; anchor 1: 1 + 0.6325 - 1.4142 = 0.2183
    assert active == 1.0
    assert abs(float(loss) - (0.10557 + 0.21828) / 2) < 1e-4


def test_holef_starts_as_squared_euclidean():
    h = HOLEFDistance(3)
    s, p = torch.randn(4, 3), torch.randn(5, 3)
    np.testing.assert_allclose(h(s, p).detach().numpy(), (torch.cdist(s, p) ** 2).numpy(), rtol=1e-5)
    assert float(h.penalty().detach()) == 0.0


def test_category_losses_on_hand_cases():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    same = torch.tensor([[True, False], [False, True]])
    # positives at distance 0, negatives at sqrt(2) > margin 1: no loss
    assert float(contrastive_loss(s, p, same)) == pytest.approx(0.0)
    # swapped labels: positives at sqrt(2) (d^2 = 2), negatives at 0 ((1 - 0)^2 = 1)
    assert float(contrastive_loss(s, p, ~same)) == pytest.approx(3.0)
    # triplet: d(s_i, p+) = 0, d(s_i, p-) = sqrt(2): inactive; swapped: 0.2 + sqrt(2) each
    assert float(category_triplet_loss(s, p, same)) == pytest.approx(0.0)
    assert float(category_triplet_loss(s, p, ~same)) == pytest.approx(0.2 + np.sqrt(2), rel=1e-5)
