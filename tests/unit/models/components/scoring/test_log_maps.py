# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Log-domain maps: stable log-sum-exps, and a far-field estimate that bounds the exact map and keeps its order."""

import math

import pytest
import torch

from anomalib_nfplus.models.components import GaussianBlur, upsample_maps
from anomalib_nfplus.models.components.scoring import complements, logaddexp, logsumexp

SIZE = (16, 16)


def test_log_sum_exps_do_not_underflow() -> None:
    x = torch.tensor([[-1000.0, -1001.0, -1500.0]])
    expected = torch.logsumexp(x.double(), dim=1, keepdim=True)
    torch.testing.assert_close(logsumexp(x, dim=1).double(), expected, rtol=1e-7, atol=0)
    torch.testing.assert_close(logaddexp(x[:, :1], x[:, 1:2]).double(), expected, rtol=1e-6, atol=0)
    assert torch.isneginf(torch.log(torch.exp(x).sum(1)))  # the naive form the exporters would emit


def _ramps(generator: torch.Generator, batch: int) -> list[torch.Tensor]:
    """Two levels (8x8, 4x4): ``v - max`` from 0 at one corner to about -600 nats at the other, with 20 nats noise."""
    levels = []
    for side in (8, 4):
        ramp = torch.linspace(0, -300, side)
        ramp = ramp.view(-1, 1) + ramp.view(1, -1)
        noise = torch.rand(batch, side, side, generator=generator) * 20
        levels.append((ramp - noise).clamp_max(0.0))
    return levels


def _exact_log_s(d: list[torch.Tensor], blur: GaussianBlur) -> torch.Tensor:
    """``log(blur(min(S, L)) / L)`` in float64 with a per-image shift (float64 resolves far below float32)."""
    d = [v.double() for v in d]
    shift = torch.stack([v.flatten(1).amax(1) for v in d], 1).amax(1).clamp_max(0).view(-1, 1, 1, 1)
    scaled = upsample_maps([torch.exp(v - shift.view(-1, 1, 1)) for v in d], SIZE).sum(1, keepdim=True)
    kept = blur.double()(torch.minimum(scaled, len(d) * torch.exp(-shift)))
    return shift + torch.log(kept) - math.log(len(d))


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_far_field_is_a_lower_bound_that_keeps_every_resolved_value_exact(sigma: float) -> None:
    """Noisy ramps from 0 to -600 nats: resolved positions as in float64, the rest below them and below exact."""
    d = _ramps(torch.Generator().manual_seed(0), batch=2)
    blur = GaussianBlur(sigma)
    _, log_s = complements(d, SIZE, blur)
    exact = _exact_log_s(d, blur)
    resolved = exact > -80 - math.log(2) + 1e-3
    assert resolved.any()
    assert (~resolved).any()
    torch.testing.assert_close(log_s.double()[resolved], exact[resolved], rtol=1e-5, atol=1e-5)
    far = log_s.double()[~resolved]
    assert (far <= exact[~resolved] + 1e-4).all()  # Jensen: a lower bound (up to float32 rounding)
    assert far.max() <= log_s.double()[resolved].min()  # ranked below every resolved position
    assert torch.isfinite(log_s).all()


def test_far_field_is_monotone_in_every_input() -> None:
    """Raising any ``d`` never lowers ``log(1 - a)``, across the switch between exact and far-field values."""
    generator = torch.Generator().manual_seed(1)
    d = _ramps(generator, batch=1)
    blur = GaussianBlur(1.0)
    _, base = complements(d, SIZE, blur)
    for _ in range(5):
        raised = [v + torch.rand(v.shape, generator=generator) * 60 * (v < 0) for v in d]
        _, log_s = complements(raised, SIZE, blur)
        assert (log_s >= base - 1e-4).all()
