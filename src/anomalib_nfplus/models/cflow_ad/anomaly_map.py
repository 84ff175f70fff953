# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Anomaly maps from per-level log-likelihoods, normalised with training statistics (never the batch).

Two aggregations, both per image:

- ``"zscore"`` (default): per level, the negative log-likelihood z-scored with the mean and standard deviation
  of the training images' values at that level, upsampled to the image size and averaged over levels. Levels
  count equally whatever their likelihood scale.
- ``"likelihood"``: the official aggregation, ``A = L - sum_l up(exp(log p_l - m_l))``, with ``m_l`` the largest
  training log-likelihood of level ``l`` instead of the test-set maximum the official code uses (CFLOW-AD issue
  #24, anomalib #169: that makes a score depend on the other test images), returned as ``T = -log(1 - A / L)``.
  ``T`` is a strictly increasing function of ``A`` (the same pixel and image rankings, hence the same AUROC and
  PRO; ``A = L (1 - exp(-T))``), and keeps the order where float32's ``A`` does not: ``A`` ties every position
  about 17 nats below the training maximum at ``L``, ``T`` stays ordered at hundreds of nats (HGAD's log-domain
  form, :func:`~anomalib_nfplus.models.components.scoring.log_maps.complements`, without blur or clamp). It is
  ``>= 0`` up to the training maximum and negative for positions above it.
"""

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from anomalib_nfplus.models.components import TrainingStatistics, complements, log_domain, upsample_maps

__all__ = ["SCORINGS", "AnomalyMapGenerator", "Scoring"]

Scoring = Literal["zscore", "likelihood"]
SCORINGS: tuple[str, ...] = get_args(Scoring)


class AnomalyMapGenerator(nn.Module):
    """Combine per-level log-likelihood maps into one ``(B, 1, H, W)`` anomaly map.

    Args:
        scoring (Scoring, optional): ``"zscore"`` or ``"likelihood"`` (see the module docstring).
            Defaults to ``"zscore"``.

    Example:
        >>> stats = TrainingStatistics(2)
        >>> maps = [torch.zeros(1, 4, 4), torch.zeros(1, 2, 2)]
        >>> AnomalyMapGenerator()(maps, stats, (8, 8)).shape
        torch.Size([1, 1, 8, 8])
    """

    def __init__(self, scoring: Scoring = "zscore") -> None:
        super().__init__()
        if scoring not in SCORINGS:
            msg = f"scoring must be one of {SCORINGS}, got {scoring!r}."
            raise ValueError(msg)
        self.scoring = scoring
        self._combine = _zscore if scoring == "zscore" else _likelihood

    def forward(
        self,
        log_probs: Sequence[torch.Tensor],
        statistics: TrainingStatistics,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Map from per-level ``(B, h_l, w_l)`` per-dimension log-likelihoods, at ``size``."""
        return self._combine(log_probs, statistics, size)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"scoring={self.scoring!r}"


def _zscore(log_probs: Sequence[torch.Tensor], statistics: TrainingStatistics, size: tuple[int, int]) -> torch.Tensor:
    levels = [statistics.standardize(i, -log_prob) for i, log_prob in enumerate(log_probs)]
    return upsample_maps(levels, size).mean(dim=1, keepdim=True)


def _likelihood(
    log_probs: Sequence[torch.Tensor],
    statistics: TrainingStatistics,
    size: tuple[int, int],
) -> torch.Tensor:
    # The statistics hold the negative log-likelihood: its minimum is minus the largest training log-likelihood.
    a, log_s = complements(
        [log_prob + statistics.minimum[i] for i, log_prob in enumerate(log_probs)], size, clamp=False
    )
    return log_domain(a, log_s)
