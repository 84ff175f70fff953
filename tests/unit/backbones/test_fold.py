# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""BatchNorm folding: same features as the unfolded encoder, no BatchNorm left, and a safe fallback."""

from pathlib import Path

import torch
from torch import nn

from anomalib_nfplus.backbones import FeatureExtractor
from anomalib_nfplus.backbones.fold import fold_batchnorm


def test_folded_lite0_gives_the_same_features(lite0_weights: Path) -> None:
    args = ("tf_efficientnet_lite0", ("blocks.2", "blocks.6"))
    plain = FeatureExtractor(*args, pre_trained=False, backbone_weights=lite0_weights, fold_norms=False)
    folded = FeatureExtractor(*args, pre_trained=False, backbone_weights=lite0_weights)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters())
    images = torch.rand(2, 3, 128, 128)
    for expected, actual in zip(plain(images), folded(images), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_resnet_bottlenecks_and_downsamples_fold() -> None:
    extractor = FeatureExtractor("resnet18", ("layer2",), pre_trained=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in extractor.modules())


class _NormBeforeConv(nn.Module):
    """Registration order says conv -> norm, but the data flows norm -> conv: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.norm = nn.BatchNorm2d(3).eval()
        self.norm.running_mean.fill_(2.0)
        self.norm.running_var.fill_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def test_folding_that_changes_outputs_is_refused() -> None:
    module = _NormBeforeConv()
    result, count = fold_batchnorm(module, torch.randn(1, 3, 4, 4))
    assert result is module
    assert count == 0
    assert isinstance(module.norm, nn.BatchNorm2d)


def test_folding_keeps_a_conv_bias_and_the_activation() -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    module[1].running_mean.uniform_(-1, 1)
    module[1].running_var.uniform_(0.5, 2)
    module[1].weight.data.uniform_(0.5, 2)
    module[1].bias.data.uniform_(-1, 1)
    probe = torch.randn(2, 3, 8, 8)
    folded, count = fold_batchnorm(module, probe)
    assert count == 1
    torch.testing.assert_close(folded(probe), module(probe), rtol=1e-5, atol=1e-5)
