# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Image-pyramid feature extraction: one frozen backbone applied to several resized copies of the input.

DifferNet (Rudolph et al., 2021, arXiv 2008.12577) and HGAD (Yao et al., 2024, arXiv 2403.13349) get their
multi-scale features from an image pyramid rather than from several layers: DifferNet resizes to 448/224/112 px
with nearest-neighbour interpolation, HGAD to 1024/512/256 px bilinearly with ``align_corners=True``.

Example:
    >>> import torch
    >>> from anomalib_nfplus.backbones import PyramidFeatureExtractor
    >>> pyramid = PyramidFeatureExtractor("resnet18", layers=("layer3",), scales=(1.0, 0.5), pre_trained=False)
    >>> [[f.shape for f in level] for level in pyramid(torch.rand(2, 3, 64, 64))]
    [[torch.Size([2, 256, 4, 4])], [torch.Size([2, 256, 2, 2])]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.backbones.features import FeatureExtractor

__all__ = ["PyramidFeatureExtractor"]

InterpolationMode = Literal["nearest", "nearest-exact", "bilinear", "bicubic", "area"]
_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
_DEFAULT_SCALES = (1.0, 0.5, 0.25)


class PyramidFeatureExtractor(nn.Module):
    """Apply one :class:`FeatureExtractor` to the input at several resolutions.

    Each level is resized from the input (not from the previous level) and runs through the backbone as one
    batch. Give either relative ``scales`` or absolute ``sizes``; with neither, ``scales=(1.0, 0.5, 0.25)``.
    A relative level has ``floor(H * scale) x floor(W * scale)`` pixels, so ``scales=(1.0, 0.5)`` and
    ``sizes=(448, 224)`` give identical results on 448 px inputs. A scale of exactly ``1.0`` skips resizing.

    Args:
        backbone (str): timm model name.
        layers (Sequence[str]): Layer names, as for :class:`FeatureExtractor`.
        scales (Sequence[float] | None, optional): Resize factors relative to the input. Defaults to ``None``.
        sizes (Sequence[int | tuple[int, int]] | None, optional): Absolute sizes, ``s`` meaning ``(s, s)``.
            Defaults to ``None``.
        mode (InterpolationMode, optional): ``torch.nn.functional.interpolate`` mode. Defaults to ``"nearest"``.
        align_corners (bool | None, optional): Only for ``"bilinear"`` and ``"bicubic"``. Defaults to ``None``.
        pre_trained (bool, optional): Start from pretrained weights. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict of the full model.
            Defaults to ``None``.
        requires_input_grad (bool, optional): Let gradients reach the input images. Defaults to ``False``.
        defer_unavailable_weights (bool, optional): Pending weights instead of an error when they cannot be
            obtained here, for a checkpoint to fill (see :class:`FeatureExtractor`). Defaults to ``False``.

    Attributes:
        extractor (FeatureExtractor): The shared frozen backbone.
        channels (list[int]): Channels per layer (equal at every level).
        strides (list[int]): Downsampling per layer, relative to each level's own resolution.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        scales: Sequence[float] | None = None,
        sizes: Sequence[int | tuple[int, int]] | None = None,
        mode: InterpolationMode = "nearest",
        align_corners: bool | None = None,
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        requires_input_grad: bool = False,
        defer_unavailable_weights: bool = False,
    ) -> None:
        super().__init__()
        self.scales, self.sizes = _check_levels(scales, sizes)
        if mode not in _MODES:
            msg = f"mode must be one of {_MODES}, got {mode!r}."
            raise ValueError(msg)
        if align_corners is not None and mode not in {"bilinear", "bicubic"}:
            msg = f"align_corners works only with 'bilinear' or 'bicubic', got {align_corners} with mode {mode!r}."
            raise ValueError(msg)
        self.mode = mode
        self.align_corners = align_corners
        self.extractor = FeatureExtractor(
            backbone,
            layers,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            requires_input_grad=requires_input_grad,
            defer_unavailable_weights=defer_unavailable_weights,
        )
        self.channels = list(self.extractor.channels)
        self.strides = list(self.extractor.strides)

    @property
    def num_levels(self) -> int:
        """Number of pyramid levels."""
        return len(self.scales) if self.scales is not None else len(self.sizes or ())

    @property
    def pending_weights(self) -> str | None:
        """Why the shared backbone lacks its weights, ``None`` when it has them (see :class:`FeatureExtractor`)."""
        return self.extractor.pending_weights

    @property
    def requires_input_grad(self) -> bool:
        """Whether gradients reach the input images (forwarded to the shared extractor)."""
        return self.extractor.requires_input_grad

    @requires_input_grad.setter
    def requires_input_grad(self, value: bool) -> None:
        self.extractor.requires_input_grad = value

    def forward(self, images: torch.Tensor) -> list[list[torch.Tensor]]:
        """Return ``features[level][layer]``: levels in the order of ``scales``/``sizes``, layers as given."""
        return [self.extractor(level) for level in self.resize(images)]

    def resize(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the input resized to every pyramid level."""
        if self.scales is not None:
            return [images if scale == 1.0 else self._interpolate(images, scale_factor=scale) for scale in self.scales]
        return [self._interpolate(images, size=size) for size in self.sizes or ()]

    def _interpolate(
        self,
        images: torch.Tensor,
        size: tuple[int, int] | None = None,
        scale_factor: float | None = None,
    ) -> torch.Tensor:
        # recompute_scale_factor: sample like an explicit ``size`` would, so scales and sizes agree.
        return F.interpolate(
            images,
            size=size,
            scale_factor=scale_factor,
            mode=self.mode,
            align_corners=self.align_corners,
            recompute_scale_factor=True if scale_factor is not None else None,
        )


def _check_levels(
    scales: Sequence[float] | None,
    sizes: Sequence[int | tuple[int, int]] | None,
) -> tuple[tuple[float, ...] | None, tuple[tuple[int, int], ...] | None]:
    """Validate the pyramid definition; return ``(scales, None)`` or ``(None, sizes)``."""
    if scales is not None and sizes is not None:
        msg = f"Give either scales or sizes, not both (got scales={scales!r}, sizes={sizes!r})."
        raise ValueError(msg)
    if sizes is None:
        scales = tuple(float(s) for s in (_DEFAULT_SCALES if scales is None else scales))
        if not scales or any(not s > 0.0 for s in scales):
            msg = f"scales must be a non-empty sequence of positive factors, got {scales!r}."
            raise ValueError(msg)
        return scales, None
    pairs = tuple((s, s) if isinstance(s, int) else tuple(s) for s in sizes)
    if not pairs or any(len(p) != 2 or not all(isinstance(v, int) and v > 0 for v in p) for p in pairs):
        msg = f"sizes must be a non-empty sequence of positive ints or (height, width) pairs, got {sizes!r}."
        raise ValueError(msg)
    return None, tuple((height, width) for height, width in pairs)
