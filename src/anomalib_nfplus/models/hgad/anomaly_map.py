# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's anomaly map: a log-likelihood map times an entropy map (methods.md 3.7), normalised with training data.

The official code turns each level's map ``v`` into ``exp(v - max)`` with the maximum over the *test images of
the class*, sums the upsampled levels, takes ``max - sum`` and blurs. Here the maximum is that of the *training*
images (``TrainingStatistics``), so a score never depends on other test images, and ``max - sum`` uses the bound
``L`` (number of levels) of the summed map; values above the training maximum are clamped to 0 anomaly. Both
changes keep every image's score independent of the rest of the test set and make the graph exportable.
"""

from collections.abc import Sequence

import torch
from torch import nn

from anomalib_nfplus.models.components import GaussianBlur, upsample_maps

__all__ = ["HGADAnomalyMap"]


class HGADAnomalyMap(nn.Module):
    """Turn per-level normality maps into one blurred anomaly map.

    Args:
        blur_sigma (float): Gaussian blur in output pixels (official: 4 at 256 px); ``0`` disables it.
    """

    def __init__(self, blur_sigma: float) -> None:
        super().__init__()
        self.blur = GaussianBlur(blur_sigma)

    @staticmethod
    def normality(values: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
        """``exp(v - max)``: about 1 where a position is as normal as the most normal training position."""
        return torch.exp(values - maximum)

    def anomaly(self, maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Upsample ``(B, h, w)`` normality maps, sum them and return ``blur(clamp(L - sum, 0))`` ``(B, 1, H, W)``."""
        summed = upsample_maps(maps, size).sum(dim=1, keepdim=True)
        return self.blur((float(len(maps)) - summed).clamp_min(0.0))

    def forward(
        self,
        likelihood: Sequence[torch.Tensor],
        likelihood_max: Sequence[torch.Tensor],
        entropy: Sequence[torch.Tensor] | None,
        entropy_max: Sequence[torch.Tensor] | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Final map ``A_logp * A_entropy`` (or ``A_logp`` alone when ``entropy`` is ``None``).

        Args:
            likelihood (Sequence[torch.Tensor]): Per-level per-dimension log-likelihood maps ``(B, h, w)``.
            likelihood_max (Sequence[torch.Tensor]): Their training maxima (scalars or ``(B, 1, 1)``).
            entropy (Sequence[torch.Tensor] | None): Per-level negative class entropies ``(B, h, w)``.
            entropy_max (Sequence[torch.Tensor] | None): Their training maxima.
            size (tuple[int, int]): Output size.

        Returns:
            torch.Tensor: The anomaly map ``(B, 1, H, W)``.
        """
        result = self.anomaly([self.normality(v, m) for v, m in zip(likelihood, likelihood_max, strict=True)], size)
        if entropy is not None and entropy_max is not None:
            entropy_map = self.anomaly([self.normality(v, m) for v, m in zip(entropy, entropy_max, strict=True)], size)
            result = result * entropy_map
        return result
