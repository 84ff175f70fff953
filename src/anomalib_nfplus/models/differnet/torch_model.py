# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""PyTorch model of DifferNet: multi-scale pooled features, one flow per image vector, TTA score, gradient maps.

Pipeline of one image (Rudolph et al., WACV 2021, arXiv 2008.12577):

1. ``T`` fixed rotations of the image (test time) or random transforms (training, see :mod:`.transforms`);
2. every view at ``len(pyramid_scales)`` pyramid levels through one frozen backbone, all views of all images in one
   batch;
3. each feature map globally average-pooled and all levels x layers concatenated into one vector ``y`` of size
   ``D``;
4. ``z, log|det J| = flow(y)``; score ``= mean_T ||z||^2 / D`` (the log-det is not part of the score);
5. anomaly map: gradient of the per-view NLL ``(||z||^2 / 2 - log|det J|) / D`` w.r.t. the view's pixels,
   ``|.|`` summed over channels, blurred, rotated back and averaged over the views that see each pixel.

Speed on CPU: the views go through the backbone in passes of at most ``max_pass_pixels`` pixels (16 views
at 224 px), in channels-last memory layout. One pass over all ``B x T`` views (64 views per 16-image batch and 4
transforms) overflows the CPU caches and runs the depthwise convolutions of EfficientNet-Lite in NCHW layout: on one
core that made scoring and, much more, gradient maps slower (more so at 448 px). The split changes results
only by float rounding: every view is independent. Traced graphs (``torch.export``, the export's gradient trace)
keep one pass over all views.
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_nfplus.backbones import PyramidFeatureExtractor
from anomalib_nfplus.flows import change_of_variables, differnet_flow, is_tracing, standard_normal_log_prob
from anomalib_nfplus.models.components import GaussianBlur, check_images, renamed_arguments

from .anomaly_map import AnomalyMapGenerator
from .transforms import FixedRotations

__all__ = ["PASS_PIXELS", "DifferNetModel"]

_MIN_LEVEL_SIZE = 8
#: Default pixels (views x H x W) per backbone pass in eager mode: 16 views at 224 px, 4 at 448 px.
PASS_PIXELS = 16 * 224 * 224


@renamed_arguments({"scales": "pyramid_scales", "n_blocks": "coupling_blocks"})
class DifferNetModel(nn.Module):
    """DifferNet as a pure torch module.

    Args:
        backbone (str): timm backbone name.
        layers (Sequence[str]): Backbone layers to pool (each pooled separately, then concatenated).
        pre_trained (bool, optional): Pretrained backbone weights. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict. Defaults to ``None``.
        pyramid_scales (Sequence[float], optional): Pyramid scales relative to the input. Defaults to
            ``(1.0, 0.5, 0.25)``.
        coupling_blocks (int, optional): Permutation + coupling blocks. Defaults to ``8``.
        hidden (int, optional): Subnet width. Defaults to ``2048``.
        depth (int, optional): Subnet hidden layers. Defaults to ``3``.
        clamp_alpha (float, optional): atan soft-clamp bound. Defaults to ``3.0``.
        n_test_transforms (int, optional): Test-time rotations ``T``. Defaults to ``64``.
        blur_sigma (float, optional): Gaussian blur of the gradient maps, pixels. Defaults to ``3.0``.
        compute_map (bool, optional): Return gradient maps (costs a backward pass). Defaults to ``True``.
        interpolation (str, optional): Pyramid resize mode. Defaults to ``"nearest"`` (the paper's).
        seed (int, optional): Seed of the flow's fixed permutations. Defaults to ``0``.
        max_pass_pixels (int | None, optional): Eager mode: at most this many pixels (views x H x W) per backbone
            pass, at least one view (cache-sized passes are much faster on CPU). ``None``: all views in one pass
            (e.g. on a GPU). Results do not depend on it. Defaults to ``PASS_PIXELS`` (16 views at 224 px).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        pyramid_scales: Sequence[float] = (1.0, 0.5, 0.25),
        coupling_blocks: int = 8,
        hidden: int = 2048,
        depth: int = 3,
        clamp_alpha: float = 3.0,
        n_test_transforms: int = 64,
        blur_sigma: float = 3.0,
        compute_map: bool = True,
        interpolation: str = "nearest",
        seed: int = 0,
        max_pass_pixels: int | None = PASS_PIXELS,
    ) -> None:
        super().__init__()
        if max_pass_pixels is not None and max_pass_pixels < 1:
            msg = f"max_pass_pixels must be a positive number of pixels or None (one pass), got {max_pass_pixels}."
            raise ValueError(msg)
        self.max_pass_pixels = max_pass_pixels
        # Gradients to the pixels are needed for the maps; training wraps the backbone in no_grad itself.
        self.feature_extractor = PyramidFeatureExtractor(
            backbone,
            layers,
            scales=pyramid_scales,
            mode=interpolation,  # type: ignore[arg-type]
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            requires_input_grad=True,
            defer_unavailable_weights=True,  # for a checkpoint's state dict to fill; running without them fails
        )
        # The smallest pyramid level must keep at least _MIN_LEVEL_SIZE px for its pooled features to mean anything.
        self.min_size = math.ceil(_MIN_LEVEL_SIZE / min(self.feature_extractor.scales or (1.0,)))
        self.feature_dim = self.feature_extractor.num_levels * sum(self.feature_extractor.channels)
        self.flow = differnet_flow(self.feature_dim, coupling_blocks, hidden, depth, clamp_alpha, seed)
        self.rotations = FixedRotations(n_test_transforms)
        self.anomaly_map = AnomalyMapGenerator(GaussianBlur(blur_sigma)) if compute_map else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, D)``: pooled features of every pyramid level and layer, concatenated."""
        return torch.cat([f.mean(dim=(2, 3)) for level in self.feature_extractor(images) for f in level], dim=1)

    def embed(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow ``(N, D)`` features to ``z: (N, D)`` and ``log|det J|: (N,)`` (from the same pass)."""
        return self.flow(features)

    def nll(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view NLL ``(||z||^2 / 2 - log|det J|) / D`` and score term ``||z||^2 / D``, each ``(N,)``."""
        z, log_det = self.embed(self.features(views))
        log_pz = standard_normal_log_prob(z, include_const=False)  # -||z||^2 / 2
        return -change_of_variables(log_pz, log_det, self.feature_dim), -2.0 * log_pz / self.feature_dim

    def in_passes(
        self,
        function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        views: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """``function(views)`` computed in backbone passes of at most ``max_pass_pixels`` pixels, concatenated.

        ``function`` must treat views independently (row ``i`` of every output depends on view ``i`` only). In
        eager mode on CPU, each pass is also made channels-last (EfficientNet-Lite's depthwise convolutions are
        several times faster so). While tracing (``torch.export``, ``make_fx``), ``function`` sees all views.
        """
        if is_tracing() or not isinstance(views.shape[0], int):
            return function(views)
        size = views.shape[0]
        per_pass = size if self.max_pass_pixels is None else max(1, self.max_pass_pixels // views[0, 0].numel())
        cpu = views.device.type == "cpu"
        outputs = [
            function(chunk.contiguous(memory_format=torch.channels_last) if cpu else chunk)
            for chunk in views.split(per_pass)
        ]
        if len(outputs) == 1:
            return outputs[0]
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))

    def forward(self, images: torch.Tensor) -> InferenceBatch | tuple[torch.Tensor, torch.Tensor]:
        """Training: ``(z, log_det)`` of the given (already transformed) views. Eval: score and map per image."""
        images = check_images(images, self.min_size)
        if self.training:
            with torch.no_grad():
                (features,) = self.in_passes(lambda chunk: (self.features(chunk),), images)
            return self.embed(features)
        batch = images.shape[0]
        views = self.rotations(images)
        if self.anomaly_map is None:
            _, terms = self.in_passes(self.nll, views)
            return InferenceBatch(pred_score=terms.view(batch, -1).mean(dim=1))
        terms, maps = self.anomaly_map(self.nll, views, self.rotations, self.in_passes)
        return InferenceBatch(pred_score=terms.view(batch, -1).mean(dim=1), anomaly_map=maps)
