# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet's image transforms: fixed test-time rotations and random training transforms.

Both work on *pre-processed* (normalised) image batches, so they live in the model and need no change to the
datamodule. Rotations are affine grids sampled with ``grid_sample`` (exportable); pixels that a rotation brings in
from outside the image are zero after normalisation, i.e. the backbone's mean colour (for the EfficientNet-Lite
weights, mid-grey). The training transforms draw from torch's global RNG, so ``seed_everything`` makes a run
reproducible; they are only ever called from ``training_step``, never from ``forward``.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FixedRotations", "RandomTransforms", "rotate"]

# ITU-R 601 luma weights, as torchvision uses for grayscale/saturation.
_LUMA = (0.299, 0.587, 0.114)


def _thetas(cos: torch.Tensor, sin: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Affine matrices ``(N, 2, 3)`` of rotations by the given angles, in pixel space (any aspect ratio).

    ``affine_grid`` works in normalised coordinates (``[-1, 1]`` along each side), so on non-square images the
    off-diagonal terms are scaled by the aspect ratio to keep a rotation a rotation.
    """
    zero = torch.zeros_like(cos)
    row0 = torch.stack([cos, -sin * (height / width), zero], dim=-1)
    row1 = torch.stack([sin * (width / height), cos, zero], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def rotate(images: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each image ``i`` of ``(N, C, H, W)`` about its centre by the angle with ``cos[i]``, ``sin[i]``.

    Bilinear sampling, zero outside the image. The inverse rotation is ``rotate(x, cos, -sin)``.
    """
    height, width = images.shape[-2:]
    grid = F.affine_grid(_thetas(cos, sin, height, width), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class FixedRotations(nn.Module):
    """``n`` rotations evenly spaced over 360 degrees, starting at 0 (``n = 1``: the image itself).

    The angles are buffers, so the set is fixed, identical in every checkpoint and traced into an export.

    Args:
        n (int): Number of transforms ``T``.
    """

    # Buffers registered in ``__init__``.
    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        if n < 1:
            msg = f"The number of test-time transforms must be >= 1, got {n}."
            raise ValueError(msg)
        angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        self.n = n
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B * T, C, H, W)``: the ``T`` rotated views of each image, image-major."""
        if self.n == 1:
            return images
        batch = images.shape[0]
        views = images.repeat_interleave(self.n, dim=0)
        return rotate(views, self.cos.repeat(batch), self.sin.repeat(batch))

    def invert(self, maps: torch.Tensor) -> torch.Tensor:
        """Rotate ``(B * T, C, H, W)`` maps back into the frame of their source image."""
        if self.n == 1:
            return maps
        batch = maps.shape[0] // self.n
        return rotate(maps, self.cos.repeat(batch), -self.sin.repeat(batch))

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"n={self.n}"


class RandomTransforms(nn.Module):
    """DifferNet's random training transforms on normalised images: rotation and colour jitter.

    Each view gets its own uniformly random angle in ``[0, 360)`` degrees (or, with ``rotation_steps = k``, a
    random multiple of ``360 / k`` degrees: ``k = 4`` gives right angles, which lose no corners) and factors in
    ``[1 - x, 1 + x]`` for brightness, contrast and saturation (torchvision ``ColorJitter`` semantics, applied
    in ``[0, 1]`` pixel space between un- and re-normalising). Each transform can be switched off (the paper
    turns rotation off where the orientation is itself the defect, colour where colour is).

    Args:
        mean (Sequence[float]): Normalisation mean of the pre-processor (three channels).
        std (Sequence[float]): Normalisation std of the pre-processor (three channels).
        rotation (bool, optional): Random rotations. Defaults to ``True``.
        brightness (float, optional): Brightness jitter ``x`` (0: off). Defaults to ``0.0``.
        contrast (float, optional): Contrast jitter ``x`` (0: off). Defaults to ``0.0``.
        saturation (float, optional): Saturation jitter ``x`` (0: off). Defaults to ``0.0``.
        rotation_steps (int, optional): ``0``: continuous angles (the paper); ``k > 0``: multiples of
            ``360 / k`` degrees. Defaults to ``0``.
    """

    # Buffers registered in ``__init__``.
    mean: torch.Tensor
    std: torch.Tensor
    luma: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        rotation: bool = True,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        rotation_steps: int = 0,
    ) -> None:
        super().__init__()
        if rotation_steps < 0:
            msg = f"rotation_steps must be 0 (continuous angles) or a positive number of steps, got {rotation_steps}."
            raise ValueError(msg)
        self.rotation_steps = int(rotation_steps)
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                msg = f"{name} jitter must be in [0, 1) (factors drawn from [1 - x, 1 + x]), got {value}."
                raise ValueError(msg)
        self.rotation = rotation
        self.jitter = (float(brightness), float(contrast), float(saturation))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return an independently transformed copy of every image in ``(N, 3, H, W)``."""
        if any(self.jitter):
            images = self._colour(images * self.std + self.mean)
            images = (images - self.mean) / self.std
        if self.rotation:
            if self.rotation_steps:
                steps = torch.randint(self.rotation_steps, (images.shape[0],), device=images.device)
                angles = steps.to(images.dtype) * (2 * math.pi / self.rotation_steps)
            else:
                angles = torch.rand(images.shape[0], device=images.device) * (2 * math.pi)
            images = rotate(images, angles.cos(), angles.sin())
        return images

    def _factors(self, images: torch.Tensor, amount: float) -> torch.Tensor:
        shape = (images.shape[0], 1, 1, 1)
        return 1.0 + amount * (2.0 * torch.rand(shape, device=images.device, dtype=images.dtype) - 1.0)

    def _colour(self, pixels: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation (in this order) on ``[0, 1]`` pixels, clipped as torchvision does."""
        brightness, contrast, saturation = self.jitter
        if brightness:
            pixels = (pixels * self._factors(pixels, brightness)).clamp(0.0, 1.0)
        if contrast:
            grey_mean = (pixels * self.luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
            f = self._factors(pixels, contrast)
            pixels = (f * pixels + (1.0 - f) * grey_mean).clamp(0.0, 1.0)
        if saturation:
            grey = (pixels * self.luma).sum(1, keepdim=True)
            f = self._factors(pixels, saturation)
            pixels = (f * pixels + (1.0 - f) * grey).clamp(0.0, 1.0)
        return pixels

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        b, c, s = self.jitter
        rotation = f"rotation={self.rotation}, rotation_steps={self.rotation_steps}"
        return f"{rotation}, brightness={b}, contrast={c}, saturation={s}"
