# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""INT8 post-training quantisation calibrated on *training* images.

anomalib 2.7's ``INT8_PTQ`` calibrates on the validation dataloader, which for MVTec-style datamodules is carved
from the test split and holds anomalous images. A one-class model must not see those: its quantisation ranges
would be fitted to defects. The plugin's models calibrate on the training images instead (normal by definition).
"""

from collections.abc import Iterator
from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["calibration_batches", "quantize_with_training_images"]


def calibration_batches(
    datamodule: Any,
    input_size: tuple[int, int] | None,
    max_images: int = 300,
) -> Iterator[torch.Tensor]:
    """Raw ``[0, 1]`` training images (what the exported graph takes), resized to a static ``input_size``."""
    datamodule.setup("fit")
    seen = 0
    for batch in datamodule.train_dataloader():
        images = batch.image if hasattr(batch, "image") else batch["image"]
        if input_size is not None and tuple(images.shape[-2:]) != tuple(input_size):
            images = F.interpolate(images, size=input_size, mode="bilinear", antialias=True, align_corners=False)
        for image in images:
            if seen >= max_images:
                return
            seen += 1
            yield image.unsqueeze(0)


def quantize_with_training_images(model: Any, datamodule: Any, max_images: int = 300) -> Any:
    """NNCF post-training quantisation of an OpenVINO model, calibrated on ``datamodule``'s training images."""
    import nncf

    if datamodule is None:
        msg = "INT8 quantisation needs the datamodule of the training images (pass datamodule= / --data ...)."
        raise ValueError(msg)
    shape = model.input(0).get_partial_shape()
    static = shape[2].is_static and shape[3].is_static
    size = (shape[2].get_length(), shape[3].get_length()) if static else None
    images = [image.numpy() for image in calibration_batches(datamodule, size, max_images)]
    if not images:
        msg = "INT8 quantisation found no training images in the datamodule."
        raise ValueError(msg)
    return nncf.quantize(model, nncf.Dataset(images), subset_size=len(images))
