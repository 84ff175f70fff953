# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's anomaly map from the flows' latents: a log-likelihood map times an entropy map, normalised with training data.

**Maps.** Per level, the prior scores every position's latent ``z`` (:func:`level_maps`): its per-dimension
log-likelihood (label-free: under the mixture over classes; class-conditional: under the image's class) and the
negative entropy of the class posterior. Training images fill :class:`TrainingStatistics` with the same maps
(:meth:`AnomalyMapGenerator.update_statistics`), one statistics entry per level and map kind (:func:`map_index`):
negative entropy, label-free likelihood, then one class-conditional likelihood per class.

The official code turns each level's map ``v`` into ``exp(v - max)`` with the maximum over the *test images of
the class*, sums the upsampled levels, takes ``max - sum`` and blurs. Here the maximum is that of the *training*
images (``TrainingStatistics``), so a score never depends on other test images, and ``max - sum`` uses the bound
``L`` (number of levels) of the summed map; values above the training maximum are clamped to 0 anomaly. Both
changes keep every image's score independent of the rest of the test set and make the graph exportable.

**Resolution.** That map ``A = blur(clamp(L - S, 0))``, ``S = sum_l up(exp(v_l - max_l))``, lies in ``[0, L]``
and float32 resolves it to about ``1e-7`` at either end. Anomalous pixels sit at ``v - max`` of -10 to -25 nats
per dimension (``S`` of 1e-5 to 1e-11), so short trainings gave every test image the score ``L`` exactly; normal
pixels near the training maximum lose ``1 - exp(v - max)`` to cancellation. The map returned is therefore

    ``T = -log(1 - A / L)``  (with the entropy map: ``T = -log(1 - A_logp * A_entropy / L^2)``),

a strictly increasing function of the paper's map (``A = L * (1 - exp(-T))``): the same pixel and image
rankings, hence the same AUROC and PRO, and the image score (max of the map) orders images as the paper's. Each
complement is computed in the form that is exact where it is small (shared with CflowAD's likelihood scoring,
:func:`~anomalib_nfplus.models.components.scoring.log_maps.complements`): ``A / L`` through ``expm1``, and
``1 - A / L`` in the log domain with a per-image shift, exact down to ``e^-80`` below the image's most normal
position. Further out (real anomalies reach hundreds of nats per dimension below it, where ``exp`` underflows)
``log(1 - A / L)`` is a lower bound computed from the log values alone (upsampled, combined over levels, blurred),
exact on constant regions and capped below every exactly resolved value, so the map keeps its order over any
range. ``expm1``, ``log1p`` and ``logaddexp`` are written with ``exp``, ``log`` and series: ONNX has neither of
the first two, and the exporters lower all three naively, which would lose the resolution in every exported model.
"""

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from anomalib_nfplus.flows import HierarchicalGaussianMixture, change_of_variables
from anomalib_nfplus.models.components import GaussianBlur, TrainingStatistics, renamed_attributes
from anomalib_nfplus.models.components.scoring import complements, expm1, log1p, log_domain, logaddexp

__all__ = [
    "SCORINGS",
    "AnomalyMapGenerator",
    "Scoring",
    "expm1",
    "level_maps",
    "log1p",
    "map_index",
    "statistics_maps",
]

Scoring = Literal["label_free", "class_conditional"]
SCORINGS: tuple[str, ...] = get_args(Scoring)

#: Statistics map kinds of every level, before the one class-conditional likelihood per class.
_NEG_ENTROPY, _LABEL_FREE, _KINDS = 0, 1, 2


def statistics_maps(levels: int, n_classes: int) -> int:
    """Number of statistics maps: per level, negative entropy, label-free likelihood and one per class."""
    return levels * (_KINDS + n_classes)


def map_index(level: int, kind: int, n_classes: int) -> int:
    """Statistics index: ``kind`` 0 = negative entropy, 1 = label-free, ``2 + c`` = class ``c`` likelihood."""
    return level * (_KINDS + n_classes) + kind


def level_maps(
    prior: HierarchicalGaussianMixture,
    z: torch.Tensor,
    log_det: torch.Tensor,
    labels: torch.Tensor | None,
    positions: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension log-likelihood (label-free, or of each image's class) and negative class entropy, ``(N,)`` each.

    Args:
        prior (HierarchicalGaussianMixture): The level's prior.
        z (torch.Tensor): Latents ``(N, D)``, image-major (``positions`` per image).
        log_det (torch.Tensor): Their log-determinants ``(N,)``.
        labels (torch.Tensor | None): Class per image ``(B,)``; ``None``: label-free.
        positions (int): Positions per image.
    """
    if labels is not None:
        labels = labels.repeat_interleave(positions)
    log_pz = prior.log_prob(z, labels, include_const=True)  # HGAD's prior leaves the constant out of its losses
    log_p = change_of_variables(log_pz, log_det, prior.dim)
    return log_p, -prior.class_entropy(z, include_prior=False)  # class weights not included


class AnomalyMapGenerator(nn.Module):
    """Latents of every level -> one blurred ``(B, 1, H, W)`` anomaly map (in the log domain, see the module docstring).

    Args:
        blur_sigma (float): Gaussian blur in output pixels (official: 4 at 256 px); ``0`` disables it.
        use_entropy (bool, optional): Multiply by the entropy map when the prior has 2+ classes. Defaults to
            ``True``.
    """

    def __init__(self, blur_sigma: float, use_entropy: bool = True) -> None:
        super().__init__()
        self.blur = GaussianBlur(blur_sigma)
        self.use_entropy = use_entropy

    def forward(
        self,
        levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
        priors: Sequence[HierarchicalGaussianMixture],
        statistics: TrainingStatistics,
        labels: torch.Tensor | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Anomaly map of the latents, normalised with the training statistics (each image on its own).

        Args:
            levels (Sequence[tuple[torch.Tensor, torch.Tensor]]): ``(z (B, h, w, D), log_det (B, h, w))`` per level.
            priors (Sequence[HierarchicalGaussianMixture]): One prior per level.
            statistics (TrainingStatistics): Filled by :meth:`update_statistics`.
            labels (torch.Tensor | None): Class per image ``(B,)`` for class-conditional scoring; ``None``:
                label-free.
            size (tuple[int, int]): Output size.
        """
        n_classes = priors[0].n_classes
        with_entropy = self.use_entropy and len(priors[0].inter_logits) > 1
        likelihood, likelihood_max, entropy, entropy_max = [], [], [], []
        for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
            batch, height, width, dim = z.shape
            log_p, neg_entropy = level_maps(prior, z.reshape(-1, dim), log_det.reshape(-1), labels, height * width)
            likelihood.append(log_p.view(batch, height, width))
            if labels is None:
                likelihood_max.append(statistics.maximum[map_index(level, _LABEL_FREE, n_classes)])
            else:
                first = map_index(level, _KINDS, n_classes)
                likelihood_max.append(statistics.maximum[first : first + n_classes][labels].view(batch, 1, 1))
            if with_entropy:
                entropy.append(neg_entropy.view(batch, height, width))
                entropy_max.append(statistics.maximum[map_index(level, _NEG_ENTROPY, n_classes)])
        return self.combine(likelihood, likelihood_max, entropy or None, entropy_max if with_entropy else None, size)

    @staticmethod
    def update_statistics(
        statistics: TrainingStatistics,
        levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
        priors: Sequence[HierarchicalGaussianMixture],
        labels: torch.Tensor,
    ) -> None:
        """Add the maps of training latents to the statistics of every map kind (all scoring modes).

        Args:
            statistics (TrainingStatistics): Statistics of :func:`statistics_maps` maps.
            levels (Sequence[tuple[torch.Tensor, torch.Tensor]]): ``(z (B, h, w, D), log_det (B, h, w))`` per level.
            priors (Sequence[HierarchicalGaussianMixture]): One prior per level.
            labels (torch.Tensor): Class per image ``(B,)``.
        """
        n_classes = priors[0].n_classes
        for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
            flat, flat_det = z.reshape(-1, z.shape[-1]), log_det.reshape(-1)
            positions = z.shape[1] * z.shape[2]
            free, neg_entropy = level_maps(prior, flat, flat_det, None, positions)
            conditional, _ = level_maps(prior, flat, flat_det, labels, positions)
            statistics.update(map_index(level, _NEG_ENTROPY, n_classes), neg_entropy)
            statistics.update(map_index(level, _LABEL_FREE, n_classes), free)
            conditional = conditional.view(z.shape[0], positions)
            for c in labels.unique().tolist():
                statistics.update(map_index(level, _KINDS + int(c), n_classes), conditional[labels == c])

    @staticmethod
    def classes_without_statistics(statistics: TrainingStatistics, n_classes: int) -> list[int]:
        """Classes whose likelihood maps received no training values in the current collection."""
        empty = set(statistics.empty_maps())
        return [c for c in range(n_classes) if map_index(0, _KINDS + c, n_classes) in empty]

    @staticmethod
    def normality(values: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
        """``v - max``, the log of the official ``exp(v - max)``: 0 as normal as the most normal training pixel."""
        return values - maximum

    def complements(
        self,
        log_normality: Sequence[torch.Tensor],
        size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``a = A / L`` and ``log(1 - a)`` of one map kind, ``(B, 1, H, W)`` each (blurred, clamped at 0 anomaly).

        Args:
            log_normality (Sequence[torch.Tensor]): Per-level ``v - max`` maps ``(B, h, w)``.
            size (tuple[int, int]): Output size.
        """
        return complements(log_normality, size, self.blur)

    @staticmethod
    def log_domain(a: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        """``-log(1 - a)`` from whichever complement is exact there: ``-log s`` for ``s < 1/2``, else ``-log1p(-a)``."""
        return log_domain(a, log_s)

    def combine(
        self,
        likelihood: Sequence[torch.Tensor],
        likelihood_max: Sequence[torch.Tensor],
        entropy: Sequence[torch.Tensor] | None,
        entropy_max: Sequence[torch.Tensor] | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Final map ``-log(1 - A_logp * A_entropy / L^2)`` (or ``-log(1 - A_logp / L)`` when ``entropy`` is None).

        Args:
            likelihood (Sequence[torch.Tensor]): Per-level per-dimension log-likelihood maps ``(B, h, w)``.
            likelihood_max (Sequence[torch.Tensor]): Their training maxima (scalars or ``(B, 1, 1)``).
            entropy (Sequence[torch.Tensor] | None): Per-level negative class entropies ``(B, h, w)``.
            entropy_max (Sequence[torch.Tensor] | None): Their training maxima.
            size (tuple[int, int]): Output size.

        Returns:
            torch.Tensor: The anomaly map ``(B, 1, H, W)``, ``>= 0``; the paper's map is ``L^k (1 - exp(-map))``.
        """
        a, log_s = self.complements(
            [self.normality(v, m) for v, m in zip(likelihood, likelihood_max, strict=True)], size
        )
        if entropy is not None and entropy_max is not None:
            a_entropy, log_s_entropy = self.complements(
                [self.normality(v, m) for v, m in zip(entropy, entropy_max, strict=True)], size
            )
            # 1 - a1 a2 = s1 + s2 a1, in the log domain
            log_s = logaddexp(log_s, log_s_entropy + torch.log(a))
            a = a * a_entropy
        return self.log_domain(a, log_s)


__getattr__ = renamed_attributes(__name__, {"HGADAnomalyMap": "AnomalyMapGenerator"})
