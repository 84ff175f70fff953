# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Reflect padding of a backbone's convolutions."""

import pytest
import torch
from timm.layers import Conv2dSame
from torch import nn

from anomalib_nfplus.backbones import FeatureExtractor
from anomalib_nfplus.backbones.reflect_padding import ReflectConv2dSame, use_reflect_padding


def test_resnet_convolutions_reflect_and_keep_their_weights():
    extractor = FeatureExtractor("resnet18", ("layer1", "layer2"), pre_trained=False)
    keys = set(extractor.state_dict())
    x = torch.rand(1, 3, 64, 64)
    zero = [f.clone() for f in extractor(x)]
    changed = use_reflect_padding(extractor)
    padded = [m for m in extractor.modules() if isinstance(m, nn.Conv2d) and max(m.padding) > 0]
    assert changed == len(padded) > 0
    assert all(m.padding_mode == "reflect" for m in padded)
    assert set(extractor.state_dict()) == keys
    reflect = extractor(x)
    assert not torch.allclose(zero[0], reflect[0])  # borders change...
    torch.testing.assert_close(zero[0][..., 4:-4, 4:-4], reflect[0][..., 4:-4, 4:-4])  # ...the interior does not
    torch.testing.assert_close(reflect[1], extractor(x)[1], rtol=0, atol=0)  # deterministic


def test_tf_same_padding_becomes_reflect():
    conv = Conv2dSame(2, 3, kernel_size=3, stride=2)
    conv.__class__ = ReflectConv2dSame
    x = torch.randn(1, 2, 7, 8)
    expected = nn.functional.conv2d(
        nn.functional.pad(x, (0, 1, 1, 1), mode="reflect"), conv.weight, conv.bias, stride=2
    )  # timm "same" at stride 2: 8 wide -> pad (0, 1); 7 high -> pad (1, 1)
    torch.testing.assert_close(conv(x), expected)
    with pytest.raises(ValueError, match="Reflect padding needs feature maps larger"):
        ReflectConv2dSame(2, 3, kernel_size=5)(torch.randn(1, 2, 2, 2))


def test_efficientnet_lite_gets_reflect_padding_everywhere():
    extractor = FeatureExtractor("tf_efficientnet_lite0", ("blocks.2",), pre_trained=False)
    use_reflect_padding(extractor)
    kinds = {type(m) for m in extractor.modules() if isinstance(m, nn.Conv2d)}
    assert Conv2dSame not in kinds
    assert ReflectConv2dSame in kinds
    assert extractor(torch.rand(1, 3, 96, 96))[0].shape == (1, 40, 12, 12)  # 64 px: deepest maps too small


def test_backbone_without_padded_convolutions_is_rejected():
    with pytest.raises(ValueError, match="reflect_padding=False"):
        use_reflect_padding(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(4, 4)))
