# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Map post-processing shared by the models: upsampling, Gaussian blur and the image score.

All functions act per image (no statistic crosses the batch axis), so scoring one image alone gives the same
result as scoring it inside a batch.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GaussianBlur", "check_top_k", "image_score", "upsample_maps"]


def upsample_maps(maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample ``(B, h, w)`` or ``(B, 1, h, w)`` maps to ``size``; returns ``(B, L, H, W)``."""
    resized = [
        F.interpolate(m if m.dim() == 4 else m.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        for m in maps
    ]
    return torch.cat(resized, dim=1)


def image_score(anomaly_map: torch.Tensor, top_k: float | None = None) -> torch.Tensor:
    """Image score from a ``(B, 1, H, W)`` map: its maximum, or the mean of its top ``top_k`` fraction.

    Args:
        anomaly_map (torch.Tensor): The map.
        top_k (float | None, optional): Fraction in ``(0, 1]`` of the highest pixels to average; ``None`` for the
            maximum (the papers' score). Defaults to ``None``.

    Returns:
        torch.Tensor: Scores of shape ``(B,)``.
    """
    flat = anomaly_map.flatten(1)
    if top_k is None:
        return flat.amax(dim=1)
    k = max(1, math.ceil(top_k * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


def check_top_k(top_k: float | None) -> None:
    """Reject a ``top_k`` outside ``(0, 1]`` when a model is built, not at the first score."""
    if top_k is not None and not 0.0 < top_k <= 1.0:
        msg = f"top_k must be None (maximum) or a fraction in (0, 1], got {top_k}."
        raise ValueError(msg)


class GaussianBlur(nn.Module):
    """Depth-wise Gaussian blur with a fixed kernel buffer and reflect padding (exportable, per image).

    Args:
        sigma (float): Standard deviation in pixels; ``0`` disables the blur.
        channels (int, optional): Channels of the maps to blur. Defaults to ``1``.
    """

    kernel: torch.Tensor  # buffer registered in ``__init__``

    def __init__(self, sigma: float, channels: int = 1) -> None:
        super().__init__()
        if sigma < 0:
            msg = f"Blur sigma must be >= 0, got {sigma}."
            raise ValueError(msg)
        self.sigma = float(sigma)
        self.channels = channels
        radius = max(1, math.ceil(4 * sigma)) if sigma > 0 else 0
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else torch.ones(1)
        kernel = kernel / kernel.sum()
        self.radius = radius
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Blur ``(B, C, H, W)`` maps; the two separable passes keep the cost linear in the radius."""
        if self.radius == 0:
            return maps
        k = self.kernel.to(maps.dtype)
        channels = maps.shape[1]
        pad = min(self.radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
        if pad < self.radius:  # maps smaller than the kernel: crop the kernel rather than fail on reflect padding
            k = k[self.radius - pad : self.radius + pad + 1]
            k = k / k.sum()
        horizontal = k.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        vertical = k.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        out = F.conv2d(F.pad(maps, (pad, pad, 0, 0), mode="reflect"), horizontal, groups=channels)
        return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), vertical, groups=channels)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"sigma={self.sigma}, radius={self.radius}"
