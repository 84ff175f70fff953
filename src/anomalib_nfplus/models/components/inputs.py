# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Input handling shared by the models: the default pre-processor and the image check in ``forward``."""

from collections.abc import Sequence

import torch
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import RGB, Compose, Normalize, Resize

from anomalib_nfplus.backbones import normalization_for

__all__ = ["check_images", "flow_pre_processor"]


def flow_pre_processor(backbone: str, image_size: int | Sequence[int] | None = None) -> PreProcessor:
    """Grayscale to RGB, resize, and the normalisation the backbone's weights were trained with.

    anomalib's default normalises with ImageNet statistics, which is wrong for the EfficientNet-Lite TF ports
    (mean = std = 0.5); ``normalization_for`` knows each backbone. ``RGB()`` lets single-channel images through
    (a no-op on RGB input), so grayscale datasets and grayscale tensors both work.

    Args:
        backbone (str): timm backbone name.
        image_size (int | Sequence[int] | None, optional): Output size; ``(256, 256)`` if ``None``.

    Returns:
        PreProcessor: The pre-processor.
    """
    size = (256, 256) if image_size is None else _pair(image_size)
    mean, std = normalization_for(backbone)
    return PreProcessor(transform=Compose([RGB(), Resize(size, antialias=True), Normalize(mean=mean, std=std)]))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(s) for s in size)
    if len(values) != 2 or min(values) < 1:
        msg = f"image_size must be an int or (height, width) of positive ints, got {size!r}."
        raise ValueError(msg)
    return values  # type: ignore[return-value]


def check_images(images: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """Return ``(B, 3, H, W)`` images; expand grayscale; reject anything else with a message naming the fix.

    Shape checks only (static under tracing), so ``forward`` stays exportable.

    Args:
        images (torch.Tensor): Pre-processed images.
        min_size (int, optional): Smallest height and width the backbone accepts. Defaults to ``1``.

    Returns:
        torch.Tensor: The images, with one channel expanded to three.

    Raises:
        ValueError: On a wrong rank, channel count or a too small image.
    """
    if images.dim() != 4:
        msg = f"Expected images of shape (B, C, H, W), got shape {tuple(images.shape)}. Add a batch dimension."
        raise ValueError(msg)
    channels, height, width = images.shape[1:]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 3:
        msg = f"Expected RGB or grayscale images (3 or 1 channels), got {channels} channels."
        raise ValueError(msg)
    if height < min_size or width < min_size:
        msg = f"Images of {height}x{width} px are too small for this model; use at least {min_size}x{min_size} px."
        raise ValueError(msg)
    return images
