# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD torch model: frozen encoder, one conditional flow decoder per level, per-image anomaly maps.

Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022, https://arxiv.org/abs/2107.12571.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from anomalib.data import Batch, InferenceBatch
from torch import nn

from anomalib_nfplus.backbones import FeatureExtractor
from anomalib_nfplus.backbones.reflect_padding import (
    is_padding_error,
    reflect_padding_fits,
    smallest_reflect_size,
    use_reflect_padding,
)
from anomalib_nfplus.batch import batch_images
from anomalib_nfplus.models.components import TrainingStatistics, check_images, check_top_k, image_score

from .anomaly_map import AnomalyMapGenerator, Scoring
from .decoder import CflowDecoders

__all__ = ["CflowADModel"]


class CflowADModel(nn.Module):
    """Encoder features -> per-level conditional flows -> per-dimension log-likelihood maps -> anomaly map.

    :meth:`training_chunks` yields the log-likelihoods of fiber chunks for the optimizer steps. ``forward`` returns
    an ``InferenceBatch`` whose scores depend on each image alone: maps are normalised with
    :class:`TrainingStatistics` collected on training images (``update_statistics``).

    Args:
        backbone (str): timm CNN name.
        layers (Sequence[str]): Encoder layers, one decoder each.
        pre_trained (bool, optional): Pretrained encoder weights. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict for the encoder. Defaults to ``None``.
        reflect_padding (bool, optional): Reflect-pad the encoder's convolutions (official code). Defaults to
            ``True``.
        coupling_blocks (int, optional): Couplings per decoder. Defaults to ``8``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Fixed random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the rotations. Defaults to ``0``.
        scoring (Scoring, optional): Map aggregation, ``"zscore"`` or ``"likelihood"``. Defaults to ``"zscore"``.
        top_k (float | None, optional): Image score = mean of the top fraction of the map; ``None`` = maximum.
            Defaults to ``None``.

    Example:
        >>> from anomalib.data import ImageBatch
        >>> model = CflowADModel("resnet18", ("layer1", "layer2"), pre_trained=False, coupling_blocks=1).eval()
        >>> model.statistics.reset()  # statistics of (pre-processed) training images, before anything is scored
        >>> model.update_statistics(ImageBatch(image=torch.rand(4, 3, 64, 64)))
        >>> model.statistics.finalize()
        >>> output = model(torch.rand(2, 3, 64, 64))
        >>> output.pred_score.shape, output.anomaly_map.shape
        (torch.Size([2]), torch.Size([2, 1, 64, 64]))
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        reflect_padding: bool = True,
        coupling_blocks: int = 8,
        condition_dim: int = 128,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        seed: int = 0,
        scoring: Scoring = "zscore",
        top_k: float | None = None,
    ) -> None:
        super().__init__()
        check_top_k(top_k)
        self.top_k = top_k
        # Weights that cannot be obtained here are left for a checkpoint's state dict (running without them fails).
        self.feature_extractor = FeatureExtractor(
            backbone, layers, pre_trained=pre_trained, backbone_weights=backbone_weights, defer_unavailable_weights=True
        )
        # Every level needs at least one feature position; reflect padding may need more (see ``min_size``).
        self._stride_min = max(self.feature_extractor.strides)
        self._min_size: int | None = None
        self.reflect_padding = reflect_padding
        if reflect_padding:
            use_reflect_padding(self.feature_extractor.model)
        # oneDNN runs the (depth-wise) convolutions faster on CPU in channels-last layout.
        # call-overload: nn.Module.to takes memory_format, torch's type stubs omit it.
        self.feature_extractor.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        channels = self.feature_extractor.channels
        self.flows = CflowDecoders(channels, coupling_blocks, condition_dim, clamp_alpha, permute_soft, seed)
        self.statistics = TrainingStatistics(len(channels))
        self.anomaly_map = AnomalyMapGenerator(scoring)

    @property
    def min_size(self) -> int:
        """Smallest image height and width the encoder takes (found once, on the meta device, then cached).

        Every level needs one feature position, and with reflect padding every padded map must be larger than
        its padding.
        """
        if self._min_size is None:
            reflect = self.reflect_padding
            stride_min = self._stride_min
            self._min_size = smallest_reflect_size(self.feature_extractor.model, stride_min) if reflect else stride_min
        return self._min_size

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse a pre-processed image size the encoder cannot take, so it fails when the model is built.

        Raises:
            ValueError: The size is below :attr:`min_size`; the message names the minimum and the fixes.
        """
        fits = min(height, width) >= self._stride_min
        if fits and self.reflect_padding:
            fits = reflect_padding_fits(self.feature_extractor.model, height, width)
        if not fits:
            raise ValueError(self._too_small_message(height, width))

    def _too_small_message(self, height: int, width: int) -> str:
        minimum = self.min_size
        backbone, layers = self.feature_extractor.backbone, list(self.feature_extractor.layers)
        if not self.reflect_padding:
            return (
                f"CflowAD cannot take {height}x{width} px images: backbone {backbone!r} with layers {layers} needs at "
                f"least {minimum}x{minimum} px. Set image_size >= {minimum}."
            )
        return (
            f"CflowAD cannot take {height}x{width} px images: with reflect_padding=True, backbone {backbone!r} with "
            f"layers {layers} needs at least {minimum}x{minimum} px (its deepest feature maps must be larger than the "
            f"convolutions' padding). Set image_size >= {minimum}, or reflect_padding=False."
        )

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features ``(B, C_l, H_l, W_l)`` of every level, without gradients."""
        images = check_images(images, min_size=self._stride_min)
        try:
            return self.feature_extractor(images.contiguous(memory_format=torch.channels_last))
        except (RuntimeError, ValueError) as error:
            if not is_padding_error(error):
                raise
            raise ValueError(self._too_small_message(*images.shape[-2:])) from error

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """``InferenceBatch(pred_score (B,), anomaly_map (B, 1, H, W))``; training uses :meth:`training_chunks`.

        Eager calls need collected :attr:`statistics` (see :meth:`update_statistics`); traces skip that check.
        """
        features = self.encode(images)
        self.statistics.require_fitted(type(self).__name__)
        log_probs = self.flows.log_prob_maps(features)
        anomaly_map = self.anomaly_map(log_probs, self.statistics, tuple(images.shape[-2:]))
        return InferenceBatch(pred_score=image_score(anomaly_map, self.top_k), anomaly_map=anomaly_map)

    def training_chunks(
        self,
        images: torch.Tensor,
        fiber_batch_size: int | None = None,
        per_level: bool = False,
    ) -> Iterator[list[tuple[int, torch.Tensor]]]:
        """Encode once, then yield ``[(level, log-likelihoods)]`` of each fiber chunk (one optimizer step each).

        ``fiber_batch_size=None`` yields all fibers of all levels at once (one step per image batch).
        """
        features = self.encode(images)
        if fiber_batch_size is None:
            yield list(enumerate(self.flows.log_prob_maps(features)))
            return
        yield from self.flows.fiber_chunks(features, fiber_batch_size, per_level)

    @torch.no_grad()
    def update_statistics(self, batch: Batch) -> None:
        """Add the negative log-likelihoods of a batch of pre-processed training images to the per-level statistics."""
        for index, log_prob in enumerate(self.flows.log_prob_maps(self.encode(batch_images(batch)))):
            self.statistics.update(index, -log_prob)
