# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The one static image size an ONNX / OpenVINO export is traced at, checked before anything is traced.

anomalib exports with a dynamic height and width when no ``input_size`` is given and traces at 32x32 px. That is
below what the models' pyramids and backbones accept once the pre-processor does not resize (CflowAD fails, and
tracing HGAD's pyramid symbolically can run for many minutes), and a dynamic size buys nothing here: the
pre-processor resizes every image to the size the model was trained at anyway. So the export size defaults to the
pre-processor's output size, and any size is checked against the model's minimum first.
"""

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["export_input_size"]


def export_input_size(module: Any, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """Static ``(H, W)`` to export ``module`` at: ``input_size`` if given, else its pre-processor's output size.

    Args:
        module (Any): An ``AnomalibModule`` whose torch model may declare ``min_size`` (smallest height and width
            it accepts after pre-processing).
        input_size (Sequence[int] | None, optional): Requested ``(H, W)`` of the exported graph's input.

    Returns:
        tuple[int, int]: The size to trace at.

    Raises:
        ValueError: Without ``input_size`` and without a resizing pre-processor; on a malformed size; when the
            images the model would see at this size are smaller than its minimum.
    """
    name = type(module).__name__
    if input_size is None:
        trained = module.input_size  # anomalib: the pre-processor's output size, None if it does not resize
        if trained is None:
            msg = (
                f"{name} has no resizing pre-processor to take the export size from: pass input_size=(H, W) "
                '(CLI: --input_size "[H,W]"), the size it was trained at.'
            )
            raise ValueError(msg)
        input_size = trained
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 1:
        msg = f"input_size must be (height, width) in pixels, got {tuple(input_size)!r}."
        raise ValueError(msg)
    height, width = _seen_size(module, (size[0], size[1]))
    minimum = int(getattr(getattr(module, "model", None), "min_size", 1))
    if min(height, width) < minimum:
        through = "" if (height, width) == size else f" (its pre-processor makes them {height}x{width} px)"
        msg = (
            f"{name} cannot be exported for {size[0]}x{size[1]} px images{through}: the model needs at least "
            f"{minimum}x{minimum} px (its smallest pyramid level or deepest feature map would be empty). Export at "
            "the size it was trained at (leave input_size out to use the pre-processor's size)."
        )
        raise ValueError(msg)
    return size[0], size[1]


def _seen_size(module: Any, size: tuple[int, int]) -> tuple[int, int]:
    """Height and width of a ``size`` image after the pre-processor (the model's actual input)."""
    pre_processor = getattr(module, "pre_processor", None)
    transform = getattr(pre_processor, "transform", None)
    if transform is None:
        return size
    with torch.no_grad():
        height, width = transform(torch.zeros(1, 3, *size)).shape[-2:]
    return int(height), int(width)
