# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Pre-processor and image checks: grayscale, any size, clear errors."""

import pytest
import torch

from anomalib_nfplus.models.components import check_images, flow_pre_processor


def test_pre_processor_takes_grayscale_and_any_size():
    pre = flow_pre_processor("tf_efficientnet_lite0", (48, 40))
    out = pre.transform(torch.rand(2, 1, 100, 77))
    assert out.shape == (2, 3, 48, 40)
    # lite weights expect mean = std = 0.5: an all-ones image maps to +1
    assert torch.allclose(pre.transform(torch.ones(1, 3, 8, 8)), torch.ones(1, 3, 48, 40))


def test_pre_processor_rejects_bad_size():
    with pytest.raises(ValueError, match="image_size"):
        flow_pre_processor("tf_efficientnet_lite0", (1, 2, 3))


def test_check_images_expands_grayscale():
    x = torch.rand(2, 1, 8, 8)
    out = check_images(x)
    assert out.shape == (2, 3, 8, 8)
    assert torch.equal(out[:, 2], x[:, 0])


@pytest.mark.parametrize(
    ("shape", "message"),
    [((3, 8, 8), "batch dimension"), ((1, 4, 8, 8), "4 channels"), ((1, 3, 8, 8), "too small")],
)
def test_check_images_errors(shape, message):
    with pytest.raises(ValueError, match=message):
        check_images(torch.rand(*shape), min_size=16)
