# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD in pure torch: frozen backbone, one positional flow and one hierarchical Gaussian-mixture prior per level.

Levels are an image pyramid over one backbone stage (the paper) or several layers (Yao et al., ECCV 2024,
arXiv 2403.13349).

The flows are not class-conditioned; the class enters only through the latent prior. The prior (and the training
statistics, whose size depends on the number of classes) can be built after construction with
:meth:`HGADModel.build_prior`, because a multi-class datamodule tells the number of classes only at set-up.
"""

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import torch
from anomalib.data import Batch, InferenceBatch
from torch import nn

from anomalib_nfplus.backbones import PyramidFeatureExtractor
from anomalib_nfplus.batch import batch_images, class_labels
from anomalib_nfplus.flows import HierarchicalGaussianMixture, PositionalFlows, is_tracing
from anomalib_nfplus.models.components import (
    GaussianBlur,
    TrainingStatistics,
    check_images,
    image_score,
    renamed_arguments,
)

from .anomaly_map import SCORINGS, AnomalyMapGenerator, Scoring, statistics_maps

__all__ = ["HGADModel"]


@renamed_arguments({"n_blocks": "coupling_blocks", "cond_dim": "condition_dim"})
class HGADModel(nn.Module):
    """HGAD network: backbone features -> per-level flows -> latents, scored by :class:`AnomalyMapGenerator`.

    Args:
        backbone (str): timm backbone.
        layers (Sequence[str]): Backbone layers; every layer at every pyramid scale is one level.
        pre_trained (bool, optional): Pretrained backbone weights from the hub. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict. Defaults to ``None``.
        pyramid_scales (Sequence[float], optional): Input scales (HGAD: ``(1, 0.5, 0.25)``). Defaults to ``(1.0,)``.
        n_classes (int | None, optional): Classes of the prior; ``None`` defers :meth:`build_prior`.
        n_intra (int, optional): Centres per class, main centre included. Defaults to ``10``.
        coupling_blocks (int, optional): Couplings per flow. Defaults to ``12``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``256``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotations between couplings. Defaults to ``True``.
        centre_distance (float, optional): Initial pairwise distance of the class centres. Defaults to ``5.0``.
        scoring (Scoring, optional): ``"label_free"`` or ``"class_conditional"``. Defaults to ``"label_free"``.
        use_entropy (bool, optional): Multiply by the entropy map (only meaningful with 2+ classes).
            Defaults to ``True``.
        blur_sigma (float, optional): Map blur in output pixels. Defaults to ``4.0``.
        top_k (float | None, optional): Image score from the top fraction of the map; ``None``: maximum.
        seed (int, optional): Seed of the flows' rotations and of the centre offsets. Defaults to ``0``.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        pyramid_scales: Sequence[float] = (1.0,),
        n_classes: int | None = None,
        n_intra: int = 10,
        coupling_blocks: int = 12,
        condition_dim: int = 256,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        centre_distance: float = 5.0,
        scoring: Scoring = "label_free",
        use_entropy: bool = True,
        blur_sigma: float = 4.0,
        top_k: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if scoring not in SCORINGS:
            msg = f"scoring must be one of {SCORINGS}, got {scoring!r}."
            raise ValueError(msg)
        self.feature_extractor = PyramidFeatureExtractor(
            backbone,
            layers,
            scales=tuple(pyramid_scales),
            mode="bilinear",
            align_corners=True,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
            defer_unavailable_weights=True,  # for a checkpoint's state dict to fill; running without them fails
        )
        self.channels = self.feature_extractor.channels * self.feature_extractor.num_levels
        #: Smallest image height and width: the smallest pyramid level needs one position of the deepest layer.
        self.min_size = math.ceil(max(self.feature_extractor.strides) / min(self.feature_extractor.scales or (1.0,)))
        self.flows = PositionalFlows(
            self.channels, coupling_blocks, condition_dim, clamp_alpha, permute_soft, seed=seed
        )
        self.n_intra, self.centre_distance, self.seed = n_intra, centre_distance, seed
        self.scoring, self.top_k = scoring, top_k
        self.anomaly_map = AnomalyMapGenerator(blur_sigma, use_entropy)
        self.priors: nn.ModuleList | None = None
        self.statistics: TrainingStatistics | None = None
        if n_classes is not None:
            self.build_prior(n_classes)

    @property
    def blur_sigma(self) -> float:
        """Blur of the anomaly maps in output pixels; setting it rebuilds the blur (``0`` disables it)."""
        return self.anomaly_map.blur.sigma

    @blur_sigma.setter
    def blur_sigma(self, sigma: float) -> None:
        old = self.anomaly_map.blur
        self.anomaly_map.blur = GaussianBlur(sigma, old.channels).to(old.kernel.device)

    @property
    def n_classes(self) -> int | None:
        """Number of classes of the prior, ``None`` before :meth:`build_prior`."""
        return None if self.priors is None else cast(HierarchicalGaussianMixture, self.priors[0]).n_classes

    def build_prior(self, n_classes: int) -> None:
        """Create one hierarchical prior per level and the matching training statistics."""
        if n_classes < 1:
            msg = f"n_classes must be >= 1, got {n_classes}."
            raise ValueError(msg)
        if n_classes > min(self.channels):
            msg = (
                f"HGAD places {n_classes} equidistant class centres in a {min(self.channels)}-dimensional latent "
                "space, which needs n_classes <= channels. Use a wider layer or fewer classes."
            )
            raise ValueError(msg)
        self.priors = nn.ModuleList(
            HierarchicalGaussianMixture(
                n_classes, self.n_intra, dim, self.centre_distance, include_const=False, seed=self.seed + level
            )
            for level, dim in enumerate(self.channels)
        )
        self.statistics = TrainingStatistics(statistics_maps(len(self.channels), n_classes))

    def forward(self, images: torch.Tensor, class_index: torch.Tensor | None = None) -> InferenceBatch:
        """Scores and maps of ``images``; training goes through :meth:`training_chunks`.

        Args:
            images (torch.Tensor): Pre-processed images ``(B, 3, H, W)``.
            class_index (torch.Tensor | None, optional): Class per image ``(B,)``; needed by class-conditional
                scoring only. Defaults to ``None``.
        """
        images = check_images(images, self.min_size)
        priors, stats = self.require_prior()
        stats.require_fitted(type(self).__name__)  # eager calls only: traces skip it
        conditional = self.scoring == "class_conditional"
        labels = self._labels_for_scoring(class_index, images.shape[0]) if conditional else None
        size = (images.shape[-2], images.shape[-1])
        anomaly_map = self.anomaly_map(self.latents(images), priors, stats, labels, size)
        return InferenceBatch(pred_score=image_score(anomaly_map, self.top_k), anomaly_map=anomaly_map)

    def latents(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Backbone features of every level through that level's flow."""
        return self.flows(self.features(images))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features ``(B, C, h, w)`` of every level (layers within scales)."""
        return [f for scale in self.feature_extractor(images) for f in scale]

    def training_chunks(
        self,
        images: torch.Tensor,
        fiber_batch_size: int | None = None,
    ) -> Iterator[list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """Encode once, then yield ``[(level, z, log_det)]`` per optimizer step.

        ``fiber_batch_size=None`` (official): every position of every level in one step, ``z (B, h, w, D)``.
        Otherwise :meth:`PositionalFlows.position_chunks`: groups of positions shared by all images, about
        ``fiber_batch_size`` fibers over all levels per step, ``z (B, p, D)``.
        """
        features = self.features(check_images(images, self.min_size))
        if fiber_batch_size is None:
            yield [(i, *level) for i, level in enumerate(self.flows(features))]
            return
        yield from self.flows.position_chunks(features, fiber_batch_size)

    @torch.no_grad()
    def update_statistics(self, batch: Batch) -> None:
        """Add a batch of pre-processed training images to the statistics of every map kind (all scoring modes).

        ``batch.class_index`` gives each image's class (see :func:`anomalib_nfplus.batch.class_labels`); batches
        without it are class 0 of a one-class model.
        """
        priors, stats = self.require_prior()
        labels = class_labels(batch, priors[0].n_classes, "HGAD")
        self.anomaly_map.update_statistics(stats, self.latents(check_images(batch_images(batch))), priors, labels)

    def classes_without_statistics(self) -> list[int]:
        """Classes whose likelihood maps received no training values in the current collection."""
        priors, stats = self.require_prior()
        return self.anomaly_map.classes_without_statistics(stats, priors[0].n_classes)

    def require_prior(self) -> tuple[Sequence[HierarchicalGaussianMixture], TrainingStatistics]:
        """The per-level priors and the statistics, with a clear error while they are not built yet."""
        if self.priors is None or self.statistics is None:
            msg = (
                "HGAD's prior is not built yet: its size depends on the number of classes. Pass n_classes to the "
                "model, or train it with a datamodule (the number of classes is read at set-up)."
            )
            raise RuntimeError(msg)
        # The ModuleList of build_prior: one HierarchicalGaussianMixture per level.
        return cast("Sequence[HierarchicalGaussianMixture]", self.priors), self.statistics

    def _labels_for_scoring(self, class_index: torch.Tensor | None, batch: int) -> torch.Tensor:
        if class_index is None:
            msg = (
                "scoring='class_conditional' needs the class index of every image (the batch's class_index, "
                "e.g. from the Unified datamodule) and cannot be exported. Use scoring='label_free' for inference "
                "without labels and for export (same trained weights: set model.model.scoring = 'label_free')."
            )
            raise ValueError(msg)
        if not is_tracing():
            self.require_prior()[0][0].validate_labels(class_index, batch)
        return class_index
