# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Pure helpers: Gaussian log-densities and soft clamps."""

import math

import pytest
import torch

from anomalib_nfplus.flows import (
    LOG_2PI,
    allinone_clamp,
    atan_clamp,
    gaussian_log_normalizer,
    log_likelihood,
    standard_normal_log_prob,
)


def test_constants():
    assert math.isclose(LOG_2PI, math.log(2 * math.pi))
    assert math.isclose(gaussian_log_normalizer(4), -2 * math.log(2 * math.pi))


def test_standard_normal_log_prob_matches_torch_distributions():
    z = torch.randn(9, 5, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(standard_normal_log_prob(z), expected)
    torch.testing.assert_close(standard_normal_log_prob(z, include_const=False), -0.5 * (z**2).sum(-1))


def test_log_likelihood():
    z = torch.randn(6, 4, dtype=torch.float64)
    log_det = torch.randn(6, dtype=torch.float64)
    full = standard_normal_log_prob(z) + log_det
    torch.testing.assert_close(log_likelihood(z, log_det), full)
    torch.testing.assert_close(log_likelihood(z, log_det, per_dim=True), full / 4)
    torch.testing.assert_close(
        log_likelihood(z, log_det, per_dim=True, include_const=False), (-0.5 * (z**2).sum(-1) + log_det) / 4
    )


def test_allinone_clamp_is_freia_02_clamp():
    a = torch.linspace(-100, 100, 201)
    torch.testing.assert_close(allinone_clamp(a, 1.9), 1.9 * torch.tanh(0.1 * a))
    # not the post-2023 FrEIA clamp alpha * tanh(0.1 a / alpha)
    assert not torch.allclose(allinone_clamp(a, 1.9), 1.9 * torch.tanh(0.1 * a / 1.9))
    assert allinone_clamp(a, 1.9).abs().max() <= 1.9


@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_atan_clamp(alpha):
    s = torch.tensor([-1e8, -1.0, 0.0, 1e-4, 1.0, 1e8], dtype=torch.float64)
    out = atan_clamp(s, alpha)
    torch.testing.assert_close(out, 2 * alpha / math.pi * torch.atan(s / alpha))
    assert torch.all(out.abs() < alpha)
    torch.testing.assert_close(out[[0, -1]], torch.tensor([-alpha, alpha], dtype=torch.float64))
    assert math.isclose(out[3].item(), 2 / math.pi * 1e-4, rel_tol=1e-6)  # slope 2/pi at 0
