# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of PyramidFeatureExtractor: level sizes, resizing, one batch per level, export."""

import pytest
import torch
from torch.nn import functional as F

from anomalib_nfplus.backbones import PyramidFeatureExtractor

SIZE = 64


@pytest.fixture(scope="module")
def pyramid() -> PyramidFeatureExtractor:
    return PyramidFeatureExtractor("resnet18", layers=("layer2", "layer3"), pre_trained=False)


def test_shapes_per_level(pyramid: PyramidFeatureExtractor) -> None:
    assert pyramid.scales == (1.0, 0.5, 0.25)
    assert pyramid.num_levels == 3
    assert (pyramid.channels, pyramid.strides) == ([128, 256], [8, 16])
    features = pyramid(torch.rand(2, 3, SIZE, SIZE))
    expected = [[(2, 128, 8, 8), (2, 256, 4, 4)], [(2, 128, 4, 4), (2, 256, 2, 2)], [(2, 128, 2, 2), (2, 256, 1, 1)]]
    assert [[f.shape for f in level] for level in features] == expected


def test_one_backbone_batch_per_level(pyramid: PyramidFeatureExtractor) -> None:
    batches: list[int] = []
    handle = pyramid.extractor.model.register_forward_pre_hook(lambda _, args: batches.append(args[0].shape[0]))
    try:
        pyramid(torch.rand(5, 3, SIZE, SIZE))
    finally:
        handle.remove()
    assert batches == [5, 5, 5]


@pytest.mark.parametrize(("mode", "align_corners"), [("nearest", None), ("bilinear", True), ("bilinear", False)])
def test_levels_are_resized_input(mode: str, align_corners: bool | None) -> None:
    by_size = PyramidFeatureExtractor(
        "resnet18", ("layer2",), sizes=(64, (32, 16)), mode=mode, align_corners=align_corners, pre_trained=False
    )
    images = torch.rand(1, 3, SIZE, SIZE)
    levels = by_size.resize(images)
    torch.testing.assert_close(levels[0], images)  # same-size resize is the identity for these modes
    expected = F.interpolate(images, size=(32, 16), mode=mode, align_corners=align_corners)
    torch.testing.assert_close(levels[1], expected)
    assert by_size(images)[1][0].shape == (1, 128, 4, 2)


def test_relative_scales_agree_with_sizes(pyramid: PyramidFeatureExtractor) -> None:
    by_size = PyramidFeatureExtractor("resnet18", ("layer2", "layer3"), sizes=(64, 32, 16), pre_trained=False)
    by_size.load_state_dict(pyramid.state_dict())
    images = torch.rand(2, 3, SIZE, SIZE)
    for level_a, level_b in zip(pyramid(images), by_size(images), strict=True):
        for a, b in zip(level_a, level_b, strict=True):
            torch.testing.assert_close(a, b)


def test_input_gradient_reaches_images(pyramid: PyramidFeatureExtractor) -> None:
    pyramid.requires_input_grad = True
    try:
        images = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)
        sum(f.mean() for level in pyramid(images) for f in level).backward()
    finally:
        pyramid.requires_input_grad = False
    assert pyramid.extractor.requires_input_grad is False
    assert images.grad is not None
    assert images.grad.abs().sum() > 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="either scales or sizes"):
        PyramidFeatureExtractor("resnet18", ("layer2",), scales=(1.0,), sizes=(64,), pre_trained=False)
    with pytest.raises(ValueError, match="align_corners"):
        PyramidFeatureExtractor("resnet18", ("layer2",), align_corners=True, pre_trained=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        PyramidFeatureExtractor("resnet18", ("layer2",), mode="lanczos", pre_trained=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive factors"):
        PyramidFeatureExtractor("resnet18", ("layer2",), scales=(1.0, 0.0), pre_trained=False)
    with pytest.raises(ValueError, match="positive ints"):
        PyramidFeatureExtractor("resnet18", ("layer2",), sizes=(64, 0), pre_trained=False)


def test_torch_export_non_strict() -> None:
    # HGAD's setting: bilinear with align_corners=True, on an EfficientNet.
    pyramid = PyramidFeatureExtractor(
        "tf_efficientnet_lite0", ("blocks.4",), sizes=(64, 32), mode="bilinear", align_corners=True, pre_trained=False
    )
    images = torch.rand(1, 3, SIZE, SIZE)
    exported = torch.export.export(pyramid, (images,), strict=False).module()(images)
    for level_a, level_b in zip(exported, pyramid(images), strict=True):
        torch.testing.assert_close(level_a[0], level_b[0])
