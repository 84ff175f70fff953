# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""INT8 calibration reads training images (never validation/test), resized to the graph's static size."""

import pytest
import torch

from anomalib_nfplus.models.components.quantization import calibration_batches, quantize_with_training_images


class _Batch:
    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


class _DataModule:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def setup(self, stage: str) -> None:
        self.stages.append(stage)

    def train_dataloader(self):
        return [_Batch(torch.full((3, 3, 10, 12), 0.25)), _Batch(torch.full((3, 3, 10, 12), 0.75))]

    def val_dataloader(self):
        msg = "calibration must not read the validation set"
        raise AssertionError(msg)


def test_uses_training_images_resized_and_capped():
    dm = _DataModule()
    images = list(calibration_batches(dm, (8, 8), max_images=4))
    assert dm.stages == ["fit"]
    assert len(images) == 4
    assert all(image.shape == (1, 3, 8, 8) for image in images)
    assert [round(float(image.mean()), 2) for image in images] == [0.25, 0.25, 0.25, 0.75]


def test_dynamic_graphs_keep_the_size():
    assert next(calibration_batches(_DataModule(), None)).shape == (1, 3, 10, 12)


def test_quantisation_needs_a_datamodule():
    with pytest.raises(ValueError, match="datamodule"):
        quantize_with_training_images(object(), None)
