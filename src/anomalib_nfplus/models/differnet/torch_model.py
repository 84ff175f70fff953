# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""PyTorch model of DifferNet: multi-scale pooled features, one flow per image vector, TTA score, gradient maps.

Pipeline of one image (Rudolph et al., WACV 2021, arXiv 2008.12577):

1. ``T`` fixed rotations of the image (test time) or random transforms (training, see :mod:`.transforms`);
2. every view at ``len(scales)`` pyramid levels through one frozen backbone, all views of all images in one batch;
3. each feature map globally average-pooled and all levels x layers concatenated into one vector ``y`` of size
   ``D``;
4. ``z, log|det J| = flow(y)``; score ``= mean_T ||z||^2 / D`` (the log-det is not part of the score);
5. anomaly map: gradient of the per-view NLL ``(||z||^2 / 2 - log|det J|) / D`` w.r.t. the view's pixels,
   ``|.|`` summed over channels, blurred, rotated back and averaged over the views that see each pixel.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_nfplus.backbones import PyramidFeatureExtractor
from anomalib_nfplus.flows import differnet_flow
from anomalib_nfplus.models.components import GaussianBlur, check_images

from .anomaly_map import GradientMap
from .transforms import FixedRotations

__all__ = ["DifferNetModel"]

_MIN_LEVEL_SIZE = 8


class DifferNetModel(nn.Module):
    """DifferNet as a pure torch module.

    Args:
        backbone (str): timm backbone name.
        layers (Sequence[str]): Backbone layers to pool (each pooled separately, then concatenated).
        pre_trained (bool, optional): Pretrained backbone weights. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict. Defaults to ``None``.
        scales (Sequence[float], optional): Pyramid scales relative to the input. Defaults to ``(1.0, 0.5, 0.25)``.
        n_blocks (int, optional): Permutation + coupling blocks. Defaults to ``8``.
        hidden (int, optional): Subnet width. Defaults to ``2048``.
        depth (int, optional): Subnet hidden layers. Defaults to ``3``.
        clamp_alpha (float, optional): atan soft-clamp bound. Defaults to ``3.0``.
        n_test_transforms (int, optional): Test-time rotations ``T``. Defaults to ``64``.
        blur_sigma (float, optional): Gaussian blur of the gradient maps, pixels. Defaults to ``3.0``.
        compute_map (bool, optional): Return gradient maps (costs a backward pass). Defaults to ``True``.
        interpolation (str, optional): Pyramid resize mode. Defaults to ``"nearest"`` (the paper's).
        seed (int, optional): Seed of the flow's fixed permutations. Defaults to ``0``.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        scales: Sequence[float] = (1.0, 0.5, 0.25),
        n_blocks: int = 8,
        hidden: int = 2048,
        depth: int = 3,
        clamp_alpha: float = 3.0,
        n_test_transforms: int = 64,
        blur_sigma: float = 3.0,
        compute_map: bool = True,
        interpolation: str = "nearest",
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Gradients to the pixels are needed for the maps; training wraps the backbone in no_grad itself.
        self.pyramid = PyramidFeatureExtractor(
            backbone,
            layers,
            scales=scales,
            mode=interpolation,  # type: ignore[arg-type]
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            requires_input_grad=True,
        )
        # The smallest pyramid level must keep at least _MIN_LEVEL_SIZE px for its pooled features to mean anything.
        self.min_size = math.ceil(_MIN_LEVEL_SIZE / min(self.pyramid.scales or (1.0,)))
        self.feature_dim = self.pyramid.num_levels * sum(self.pyramid.channels)
        self.flow = differnet_flow(self.feature_dim, n_blocks, hidden, depth, clamp_alpha, seed)
        self.rotations = FixedRotations(n_test_transforms)
        self.gradient_map = GradientMap(GaussianBlur(blur_sigma)) if compute_map else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, D)``: pooled features of every pyramid level and layer, concatenated."""
        return torch.cat([f.mean(dim=(2, 3)) for level in self.pyramid(images) for f in level], dim=1)

    def embed(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow ``(N, D)`` features to ``z: (N, D)`` and ``log|det J|: (N,)`` (from the same pass)."""
        return self.flow(features)

    def nll(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view NLL ``(||z||^2 / 2 - log|det J|) / D`` and score term ``||z||^2 / D``, each ``(N,)``."""
        z, log_det = self.embed(self.features(views))
        squared = z.pow(2).sum(dim=1)
        return (0.5 * squared - log_det) / self.feature_dim, squared / self.feature_dim

    def forward(self, images: torch.Tensor) -> InferenceBatch | tuple[torch.Tensor, torch.Tensor]:
        """Training: ``(z, log_det)`` of the given (already transformed) views. Eval: score and map per image."""
        images = check_images(images, self.min_size)
        if self.training:
            with torch.no_grad():
                features = self.features(images)
            return self.embed(features)
        batch = images.shape[0]
        views = self.rotations(images)
        if self.gradient_map is None:
            _, terms = self.nll(views)
            return InferenceBatch(pred_score=terms.view(batch, -1).mean(dim=1))
        terms, maps = self.gradient_map(self.nll, views, self.rotations)
        return InferenceBatch(pred_score=terms.view(batch, -1).mean(dim=1), anomaly_map=maps)
