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

import torch
from anomalib.data import Batch, InferenceBatch
from torch import nn

from anomalib_nfplus.backbones import PyramidFeatureExtractor
from anomalib_nfplus.batch import class_labels
from anomalib_nfplus.flows import HierarchicalGaussianMixture, PositionalFlows, change_of_variables, is_tracing
from anomalib_nfplus.models.components import TrainingStatistics, check_images, image_score

from .anomaly_map import HGADAnomalyMap

__all__ = ["SCORING_MODES", "HGADModel"]

SCORING_MODES = ("label_free", "class_conditional")
_KINDS = 2  # per level: negative entropy, label-free log-likelihood; then one class-conditional map per class


class HGADModel(nn.Module):
    """HGAD network and scoring.

    Args:
        backbone (str): timm backbone.
        layers (Sequence[str]): Backbone layers; every layer at every pyramid scale is one level.
        pre_trained (bool, optional): Pretrained backbone weights from the hub. Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict. Defaults to ``None``.
        pyramid_scales (Sequence[float], optional): Input scales (HGAD: ``(1, 0.5, 0.25)``). Defaults to ``(1.0,)``.
        n_classes (int | None, optional): Classes of the prior; ``None`` defers :meth:`build_prior`.
        n_intra (int, optional): Centres per class, main centre included. Defaults to ``10``.
        n_blocks (int, optional): Couplings per flow. Defaults to ``12``.
        cond_dim (int, optional): Positional-encoding width. Defaults to ``256``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotations between couplings. Defaults to ``True``.
        centre_distance (float, optional): Initial pairwise distance of the class centres. Defaults to ``5.0``.
        scoring (str, optional): ``"label_free"`` or ``"class_conditional"``. Defaults to ``"label_free"``.
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
        n_blocks: int = 12,
        cond_dim: int = 256,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        centre_distance: float = 5.0,
        scoring: str = "label_free",
        use_entropy: bool = True,
        blur_sigma: float = 4.0,
        top_k: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if scoring not in SCORING_MODES:
            msg = f"scoring must be one of {SCORING_MODES}, got {scoring!r}."
            raise ValueError(msg)
        self.extractor = PyramidFeatureExtractor(
            backbone,
            layers,
            scales=tuple(pyramid_scales),
            mode="bilinear",
            align_corners=True,
            pre_trained=pre_trained,
            backbone_weights=backbone_weights,
        )
        self.channels = self.extractor.channels * self.extractor.num_levels
        #: Smallest image height and width: the smallest pyramid level needs one position of the deepest layer.
        self.min_size = math.ceil(max(self.extractor.strides) / min(self.extractor.scales or (1.0,)))
        self.flows = PositionalFlows(self.channels, n_blocks, cond_dim, clamp_alpha, permute_soft, seed=seed)
        self.n_intra, self.centre_distance, self.seed = n_intra, centre_distance, seed
        self.scoring, self.use_entropy, self.top_k = scoring, use_entropy, top_k
        self.anomaly_map = HGADAnomalyMap(blur_sigma)
        self.priors: nn.ModuleList | None = None
        self.statistics: TrainingStatistics | None = None
        if n_classes is not None:
            self.build_prior(n_classes)

    @property
    def n_classes(self) -> int | None:
        """Number of classes of the prior, ``None`` before :meth:`build_prior`."""
        return None if self.priors is None else self.priors[0].n_classes

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
        self.statistics = TrainingStatistics(len(self.channels) * (_KINDS + n_classes))

    def map_index(self, level: int, kind: int) -> int:
        """Statistics index: ``kind`` 0 = negative entropy, 1 = label-free, ``2 + c`` = class ``c`` likelihood."""
        return level * (_KINDS + (self.n_classes or 0)) + kind

    def forward(self, images: torch.Tensor, class_index: torch.Tensor | None = None) -> InferenceBatch:
        """Scores and maps of ``images``; training goes through :meth:`training_chunks`.

        Args:
            images (torch.Tensor): Pre-processed images ``(B, 3, H, W)``.
            class_index (torch.Tensor | None, optional): Class per image ``(B,)``; needed by class-conditional
                scoring only. Defaults to ``None``.
        """
        images = check_images(images, self.min_size)
        levels = self.latents(images)
        return self.score(levels, class_index, (images.shape[-2], images.shape[-1]))

    def latents(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Backbone features of every level through that level's flow."""
        return self.flows(self.features(images))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features ``(B, C, h, w)`` of every level (layers within scales)."""
        return [f for scale in self.extractor(images) for f in scale]

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

    def score(
        self,
        levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
        class_index: torch.Tensor | None,
        size: tuple[int, int],
    ) -> InferenceBatch:
        """Anomaly map and image score from the latents (per image; statistics from training data)."""
        priors, stats = self.require_prior()
        conditional = self.scoring == "class_conditional"
        labels = self._labels_for_scoring(class_index, levels[0][0].shape[0]) if conditional else None
        with_entropy = self.use_entropy and len(priors[0].inter_logits) > 1
        likelihood, likelihood_max, entropy, entropy_max = [], [], [], []
        for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
            batch, height, width, dim = z.shape
            log_p, neg_entropy = self.level_maps(prior, z.reshape(-1, dim), log_det.reshape(-1), labels, height * width)
            likelihood.append(log_p.view(batch, height, width))
            if labels is None:
                likelihood_max.append(stats.maximum[self.map_index(level, 1)])
            else:
                first = self.map_index(level, _KINDS)
                likelihood_max.append(stats.maximum[first : first + prior.n_classes][labels].view(batch, 1, 1))
            if with_entropy:
                entropy.append(neg_entropy.view(batch, height, width))
                entropy_max.append(stats.maximum[self.map_index(level, 0)])
        anomaly_map = self.anomaly_map(
            likelihood, likelihood_max, entropy or None, entropy_max if with_entropy else None, size
        )
        return InferenceBatch(pred_score=image_score(anomaly_map, self.top_k), anomaly_map=anomaly_map)

    @staticmethod
    def level_maps(
        prior: HierarchicalGaussianMixture,
        z: torch.Tensor,
        log_det: torch.Tensor,
        labels: torch.Tensor | None,
        positions: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension log-likelihood (label-free, or of each image's class) and negative class entropy (N,)."""
        if labels is not None:
            labels = labels.repeat_interleave(positions)
        log_pz = prior.log_prob(z, labels, include_const=True)  # HGAD's prior leaves the constant out of its losses
        log_p = change_of_variables(log_pz, log_det, prior.dim)
        return log_p, -prior.class_entropy(z, include_prior=False)  # class weights not included

    @torch.no_grad()
    def update_statistics(self, batch: Batch) -> None:
        """Add a batch of pre-processed training images to the statistics of every map kind (all scoring modes).

        ``batch.class_index`` gives each image's class (see :func:`anomalib_nfplus.batch.class_labels`); batches
        without it are class 0 of a one-class model.
        """
        priors, stats = self.require_prior()
        labels = class_labels(batch, priors[0].n_classes, "HGAD")
        images = check_images(batch.image)
        levels = self.latents(images)
        batch_size = images.shape[0]
        for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
            flat, flat_det = z.reshape(-1, z.shape[-1]), log_det.reshape(-1)
            positions = z.shape[1] * z.shape[2]
            free, neg_entropy = self.level_maps(prior, flat, flat_det, None, positions)
            conditional, _ = self.level_maps(prior, flat, flat_det, labels, positions)
            stats.update(self.map_index(level, 0), neg_entropy)
            stats.update(self.map_index(level, 1), free)
            conditional = conditional.view(batch_size, positions)
            for c in labels.unique().tolist():
                stats.update(self.map_index(level, _KINDS + int(c)), conditional[labels == c])

    def classes_without_statistics(self) -> list[int]:
        """Classes whose likelihood maps received no training values in the current collection."""
        _, stats = self.require_prior()
        empty = set(stats.empty_maps())
        return [c for c in range(self.n_classes or 0) if self.map_index(0, _KINDS + c) in empty]

    def require_prior(self) -> tuple[nn.ModuleList, TrainingStatistics]:
        """The per-level priors and the statistics, with a clear error while they are not built yet."""
        if self.priors is None or self.statistics is None:
            msg = (
                "HGAD's prior is not built yet: its size depends on the number of classes. Pass n_classes to the "
                "model, or train it with a datamodule (the number of classes is read at set-up)."
            )
            raise RuntimeError(msg)
        return self.priors, self.statistics

    def _labels_for_scoring(self, class_index: torch.Tensor | None, batch: int) -> torch.Tensor:
        if class_index is None:
            msg = (
                "scoring='class_conditional' needs the class index of every image (the batch's class_index, "
                "e.g. from the Unified datamodule) and cannot be exported. Use scoring='label_free' for inference "
                "without labels and for export (same trained weights: set model.model.scoring = 'label_free')."
            )
            raise ValueError(msg)
        if not is_tracing():
            self.priors[0].validate_labels(class_index, batch)  # type: ignore[index]
        return class_index
