# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Frozen timm feature extractor with layers chosen by module name.

The flows of the plugin model the features of a fixed, pretrained encoder, so the encoder never trains: its
parameters do not require gradients and it stays in eval mode (BatchNorm uses its ImageNet statistics) even when
the enclosing model is put in training mode. Gradients can still flow through it to the input pixels, which
DifferNet's gradient maps need.

Example:
    >>> import torch
    >>> from anomalib_nfplus.backbones import FeatureExtractor
    >>> extractor = FeatureExtractor("resnet18", layers=("layer2", "layer3"), pre_trained=False)
    >>> extractor.channels, extractor.strides
    ([128, 256], [8, 16])
    >>> [f.shape for f in extractor(torch.rand(1, 3, 64, 64))]
    [torch.Size([1, 128, 8, 8]), torch.Size([1, 256, 4, 4])]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from timm.models import FeatureInfo
from torch import nn

from anomalib_nfplus.backbones._timm import check_backbone, feature_module_names
from anomalib_nfplus.backbones.fold import fold_batchnorm
from anomalib_nfplus.backbones.weights import create_timm_model

__all__ = ["FeatureExtractor", "available_layers"]


def available_layers(backbone: str) -> list[str]:
    """Return the layer names :class:`FeatureExtractor` accepts for ``backbone``, shallow to deep.

    Args:
        backbone (str): timm model name.

    Returns:
        list[str]: Module names from timm's ``feature_info`` (``["act1", "layer1", ...]`` for ResNets,
        ``["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]`` for EfficientNets).
    """
    check_backbone(backbone)
    return feature_module_names(backbone)


class FeatureExtractor(nn.Module):
    """Frozen timm backbone returning the feature maps of the named layers.

    Args:
        backbone (str): timm model name.
        layers (Sequence[str]): Module names to return, as listed by :func:`available_layers`
            (``("layer2", "layer3")``, ``("blocks.2", "blocks.4", "blocks.6")``). Outputs follow this order.
        pre_trained (bool, optional): Start from pretrained weights (see
            :func:`~anomalib_nfplus.backbones.create_timm_model` for where they come from). Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict of the full model, used instead
            of the hub. Defaults to ``None``.
        requires_input_grad (bool, optional): Keep the autograd graph so gradients reach the input images;
            otherwise the backbone runs under ``torch.no_grad()``. An attribute that may be switched later.
            Defaults to ``False``.
        fold_norms (bool, optional): Fold each ``conv -> BatchNorm`` pair into the convolution (same outputs up to
            rounding, one pass per feature map fewer; see :func:`~anomalib_nfplus.backbones.fold.fold_batchnorm`).
            Defaults to ``True``.

    Attributes:
        layers (tuple[str, ...]): The selected layers.
        channels (list[int]): Channels of each output.
        strides (list[int]): Downsampling factor of each output relative to the input.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        requires_input_grad: bool = False,
        fold_norms: bool = True,
    ) -> None:
        super().__init__()
        check_backbone(backbone)
        self.backbone = backbone
        self.layers = _check_layers(layers)
        names = feature_module_names(backbone)
        unknown = [layer for layer in self.layers if layer not in names]
        if unknown:
            msg = f"Unknown layers {unknown} for backbone {backbone!r}. Available layers: {names}."
            raise ValueError(msg)
        indices = sorted(names.index(layer) for layer in self.layers)
        self.model = create_timm_model(
            backbone,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            features_only=True,
            out_indices=tuple(indices),
        )
        info = cast(FeatureInfo, self.model.feature_info)  # a features_only model's
        if info.module_name() != [names[i] for i in indices]:  # guards against a timm indexing change
            msg = f"timm returned layers {info.module_name()} for out_indices {indices} of {backbone!r}."
            raise RuntimeError(msg)
        # timm returns outputs shallow to deep; ``_order`` puts them back in the requested order.
        self._order = tuple(indices.index(names.index(layer)) for layer in self.layers)
        self.channels = [info.channels()[i] for i in self._order]
        self.strides = [info.reduction()[i] for i in self._order]
        self.requires_input_grad = requires_input_grad
        if fold_norms:
            probe = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
            self.model, _ = fold_batchnorm(self.model, probe)
        self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Keep the backbone in eval mode whatever ``mode`` is, so BatchNorm statistics never change."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return one ``(B, C_i, H / s_i, W / s_i)`` map per layer, in the order of ``layers``."""
        if self.requires_input_grad:
            features = self.model(images)
        else:
            with torch.no_grad():
                features = self.model(images)
        return [features[i] for i in self._order]


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers):
        msg = f"layers must be a sequence of layer names such as ('layer2', 'layer3'), got {layers!r}."
        raise TypeError(msg)
    if not layers or len(set(layers)) != len(layers):
        msg = f"layers must be non-empty and without duplicates, got {list(layers)!r}."
        raise ValueError(msg)
    return tuple(layers)
