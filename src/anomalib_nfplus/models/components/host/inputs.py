# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Input handling shared by the models: the default pre-processor and the image check in ``forward``."""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_nfplus.backbones import normalization_for

__all__ = ["check_images", "flow_pre_processor", "keep_unstored_transform"]

logger = logging.getLogger(__name__)

#: Where anomalib stores the pre-processor's plain-data configuration in a checkpoint.
PRE_PROCESSOR_CONFIG = "anomalib_pre_processor_config"


def flow_pre_processor(backbone: str, image_size: int | Sequence[int] | None = None) -> PreProcessor:
    """Resize, then the normalisation the backbone's weights were trained with; grayscale comes out as RGB.

    anomalib's default normalises with ImageNet statistics, which is wrong for the EfficientNet-Lite TF ports
    (mean = std = 0.5); ``normalization_for`` knows each backbone. Only ``Resize`` and ``Normalize`` are used
    because anomalib stores a pre-processor in a checkpoint only when every transform is on its allow-list: the
    checkpoint then restores exactly this transform (a model reloaded with ``load_from_checkpoint``,
    ``ckpt_path=`` or ``anomalib export --ckpt_path`` sees the images it was trained on). Grayscale needs no
    transform of its own: ``Normalize``'s three-channel mean and std broadcast a one-channel image to three
    normalised channels, exactly what converting it to RGB first would give (and resizing one channel is cheaper).

    Args:
        backbone (str): timm backbone name.
        image_size (int | Sequence[int] | None, optional): Output size; ``(256, 256)`` if ``None``.

    Returns:
        PreProcessor: The pre-processor.
    """
    size = (256, 256) if image_size is None else _pair(image_size)
    mean, std = normalization_for(backbone)
    return PreProcessor(transform=Compose([Resize(size, antialias=True), Normalize(mean=mean, std=std)]))


@contextmanager
def keep_unstored_transform(pre_processor: Any, checkpoint: dict[str, Any], model_name: str) -> Iterator[None]:
    """Keep ``pre_processor``'s transform through anomalib's restore when the checkpoint stores none.

    anomalib writes ``{"transform": None}`` where it could not persist a transform (checkpoints saved while the
    default pre-processor held a transform off its allow-list, or a custom one) and then restores that ``None``,
    leaving a model that sees un-resized, un-normalised images. The model being loaded was built from the
    checkpoint's saved arguments (``load_from_checkpoint``) or by the user (``ckpt_path=``), so its own transform is
    the best one available: it is put back after the restore, with a warning. A stored transform is restored as
    anomalib does.

    Args:
        pre_processor (Any): The model's pre-processor (``None`` or one without a transform: nothing to keep).
        checkpoint (dict[str, Any]): The checkpoint being loaded.
        model_name (str): Model class name, for the warning.

    Yields:
        None: Run anomalib's ``on_load_checkpoint`` inside the block.
    """
    config = checkpoint.get(PRE_PROCESSOR_CONFIG)
    transform = getattr(pre_processor, "transform", None)
    unstored = isinstance(config, dict) and config.get("transform") is None
    if not unstored or transform is None:
        yield
        return
    export_transform = getattr(pre_processor, "export_transform", None)
    yield
    pre_processor.transform, pre_processor.export_transform = transform, export_transform
    logger.warning(
        "The %s checkpoint stores no pre-processing transform (saved by an older version, or the transform was not "
        "one anomalib can store); keeping the pre-processor built from the model's arguments: %s. Pass "
        "pre_processor=PreProcessor(transform=...) to load_from_checkpoint to use another.",
        model_name,
        " -> ".join(type(t).__name__ for t in getattr(transform, "transforms", [transform])),
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(s) for s in size)
    if len(values) != 2 or min(values) < 1:
        msg = f"image_size must be an int or (height, width) of positive ints, got {size!r}."
        raise ValueError(msg)
    return values[0], values[1]


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
