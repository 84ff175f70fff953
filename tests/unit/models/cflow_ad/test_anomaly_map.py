# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD's likelihood scoring: a monotone transform of the official aggregation that stays ordered far out."""

import numpy as np
import pytest
import torch

from anomalib_nfplus.models.cflow_ad.anomaly_map import AnomalyMapGenerator
from anomalib_nfplus.models.components import TrainingStatistics, upsample_maps
from tests.helpers.compare import torch_and_openvino

#: ``log p - max`` of the stripes: the most normal position, then anomalies out to where real data reaches.
FAR = (0.0, -50.0, -150.0, -300.0, -600.0, -1000.0)
STRIPES = (32, 32 * len(FAR))  # one 32-pixel stripe per value, wider than the upsampling's reach
MAXIMA = (1.5, -0.7)  # largest training log-likelihood per level


def _statistics(maxima: tuple[float, ...] = MAXIMA) -> TrainingStatistics:
    """Statistics of negative log-likelihoods: their minimum is minus the largest training log-likelihood."""
    statistics = TrainingStatistics(len(maxima))
    statistics.minimum.copy_(-torch.tensor(maxima))
    return statistics


def _stripes(batch: int = 1) -> list[torch.Tensor]:
    """Per-dimension log-likelihoods of two levels (factors 2 and 4): vertical stripes at ``max + FAR``."""
    row = torch.tensor(FAR).repeat_interleave(16)
    return [
        (row.view(1, 1, -1) + MAXIMA[0]).expand(batch, 16, -1).contiguous(),
        (row[::2].view(1, 1, -1) + MAXIMA[1]).expand(batch, 8, -1).contiguous(),
    ]


def _official(log_probs: list[torch.Tensor], maxima: tuple[float, ...], size: tuple[int, int]) -> torch.Tensor:
    """``L - sum_l up(exp(log p_l - m_l))`` in float64."""
    levels = [(v.double() - m).exp() for v, m in zip(log_probs, maxima, strict=True)]
    return len(levels) - upsample_maps(levels, size).sum(1, keepdim=True)


def test_far_out_positions_keep_their_order() -> None:
    """50 to 1000 nats below the training maximum: ``T = -d`` on constant stripes, ordered (float32's ``A`` ties)."""
    got = AnomalyMapGenerator("likelihood")(_stripes(), _statistics(), STRIPES)[0, 0, 16, 16::32].double()
    torch.testing.assert_close(got, -torch.tensor(FAR, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert (got.diff() > 0).all()


def test_far_out_images_keep_their_order_each_on_its_own() -> None:
    """Image scores (map maxima) of far-out images are ordered, and one image alone scores as in the batch."""
    first = torch.tensor(FAR[1:]).view(-1, 1, 1).repeat(1, 16, 16)
    first[:, :4, :4] = 0.0  # a normal corner in every image
    log_probs = [first + MAXIMA[0], first[:, ::2, ::2] + MAXIMA[1]]
    generator = AnomalyMapGenerator("likelihood")
    maps = generator(log_probs, _statistics(), (32, 32))
    scores = maps.flatten(1).amax(1).double()
    torch.testing.assert_close(scores, -torch.tensor(FAR[1:], dtype=torch.float64), rtol=1e-5, atol=0)
    for i in range(len(scores)):
        alone = generator([v[i : i + 1] for v in log_probs], _statistics(), (32, 32))
        torch.testing.assert_close(alone, maps[i : i + 1], rtol=1e-5, atol=1e-5)


def test_single_level_positions_are_minus_d_on_both_sides_of_the_maximum() -> None:
    """One level at output size: ``T = -(log p - max)`` at every position, negative above the training maximum."""
    d = torch.tensor((3.0, 0.5, *FAR, -537.0, -88.0, -104.0))
    got = AnomalyMapGenerator("likelihood")([d.view(1, 1, -1) + 2.0], _statistics((2.0,)), (1, len(d)))
    torch.testing.assert_close(got.flatten(), -d, rtol=1e-6, atol=1e-7)


def test_monotone_transform_of_the_official_map() -> None:
    """``L (1 - exp(-T))`` is the official aggregation, including positions above the training maximum (``A < 0``)."""
    generator = torch.Generator().manual_seed(0)
    log_probs = [
        torch.rand(3, 8, 8, generator=generator) * 30 - 28 + MAXIMA[0],
        torch.rand(3, 4, 4, generator=generator) * 4 - 3.5 + MAXIMA[1],
    ]
    got = AnomalyMapGenerator("likelihood")(log_probs, _statistics(), (16, 16)).double()
    official = _official(log_probs, MAXIMA, (16, 16))
    assert (official < 0).any()
    torch.testing.assert_close(2 * (1 - torch.exp(-got)), official, rtol=1e-5, atol=1e-6)


@pytest.mark.export
def test_openvino_matches_torch_far_out() -> None:
    """The likelihood map exports (``torch.export`` -> OpenVINO, f32) and keeps far-out positions ordered."""

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.map = AnomalyMapGenerator("likelihood")
            self.statistics = _statistics()

        def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            return self.map([first, second], self.statistics, STRIPES)

    inputs = tuple(_stripes())
    got, expected = torch_and_openvino(Module().eval(), inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (np.diff(got[0, 0, 16, 16::32]) > 0).all()
