"""The RL objectives (agents.losses) on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from agents import losses


def test_clipped_surrogate_hand_computed():
    # ratios 1.5 and 0.5 with advantages +1 and -1, clip 0.2:
    # sample 1: min(1.5 * 1, 1.2 * 1) = 1.2; sample 2: min(0.5 * -1, 0.8 * -1) = -0.8; loss = -(1.2 - 0.8) / 2
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    adv = torch.tensor([1.0, -1.0])
    assert losses.clipped_surrogate_loss(new, old, adv, 0.2).item() == pytest.approx(-0.2)


def test_kl_penalty_loss_hand_computed():
    new = torch.log(torch.tensor([2.0, 1.0]))
    adv = torch.tensor([1.0, 3.0])
    kl = torch.tensor([0.1, 0.3])
    # -(2*1 + 1*3)/2 + 0.5 * 0.2
    assert losses.kl_penalty_surrogate_loss(new, torch.zeros(2), adv, kl, 0.5).item() == pytest.approx(-2.4)


def test_vpg_loss_and_value_loss():
    assert losses.vpg_loss(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5])).item() == pytest.approx(1.0)
    assert losses.value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])).item() == pytest.approx(2.5)


def test_diag_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m0, m1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    s0, s1 = torch.randn(3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.3
    ours = losses.diag_gaussian_kl(m0, s0, m1, s1)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m0, s0.exp()),
                                            torch.distributions.Normal(m1, s1.exp())).sum(-1)
    torch.testing.assert_close(ours, ref)


def test_adapt_kl_coef_directions():
    assert losses.adapt_kl_coef(1.0, kl=0.001, target_kl=0.01) == 0.5
    assert losses.adapt_kl_coef(1.0, kl=0.1, target_kl=0.01) == 2.0
    assert losses.adapt_kl_coef(1.0, kl=0.01, target_kl=0.01) == 1.0
