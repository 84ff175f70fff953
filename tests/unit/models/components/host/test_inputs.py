# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Pre-processor and image checks: grayscale, any size, checkpoint persistence, clear errors."""

import pytest
import torch
from anomalib.pre_processing import PreProcessor

from anomalib_nfplus.models.components import check_images, flow_pre_processor
from anomalib_nfplus.models.components.host.inputs import keep_unstored_transform


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


def test_pre_processor_persists_in_a_checkpoint_and_restores_exactly():
    """Every transform is on anomalib's allow-list: the checkpoint stores it and a reload applies the same one."""
    pre = flow_pre_processor("tf_efficientnet_b0", (40, 48))  # ImageNet statistics: channels normalised differently
    config = pre.checkpoint_config()
    assert config["transform"] is not None
    restored = PreProcessor()
    restored.load_checkpoint_config(config)
    images = torch.rand(2, 3, 100, 77)
    assert torch.equal(restored.transform(images), pre.transform(images))
    assert torch.equal(restored.export_transform(images), pre.export_transform(images))


def test_grayscale_is_normalised_as_its_rgb_copy():
    pre = flow_pre_processor("tf_efficientnet_b0", (40, 48))
    gray = torch.rand(2, 1, 100, 77)
    out = pre.transform(gray)
    assert out.shape == (2, 3, 40, 48)
    assert torch.allclose(out, pre.transform(gray.expand(-1, 3, -1, -1)), atol=1e-6)
    assert not torch.allclose(out[:, 0], out[:, 1])  # per-channel statistics applied


def test_checkpoint_without_a_stored_transform_keeps_the_built_one(caplog: pytest.LogCaptureFixture):
    pre = flow_pre_processor("tf_efficientnet_lite0", 48)
    transform = pre.transform
    checkpoint = {"anomalib_pre_processor_config": {"transform": None}}  # what older checkpoints hold
    with keep_unstored_transform(pre, checkpoint, "CflowAD"):
        pre.load_checkpoint_config(checkpoint["anomalib_pre_processor_config"])  # anomalib's restore
        assert pre.transform is None
    assert pre.transform is transform
    assert pre.export_transform is not None
    assert "stores no pre-processing transform" in caplog.text


def test_a_stored_transform_is_restored_over_the_built_one():
    pre = flow_pre_processor("tf_efficientnet_lite0", 48)
    stored = flow_pre_processor("tf_efficientnet_lite0", 32).checkpoint_config()
    with keep_unstored_transform(pre, {"anomalib_pre_processor_config": stored}, "CflowAD"):
        pre.load_checkpoint_config(stored)
    assert pre.transform(torch.rand(1, 3, 64, 64)).shape[-2:] == (32, 32)
