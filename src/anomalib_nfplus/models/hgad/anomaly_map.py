# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's anomaly map: a log-likelihood map times an entropy map (methods.md 3.7), normalised with training data.

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
complement is computed in the form that is exact where it is small: ``1 - A / L`` in the log domain with a
per-image shift (so ``exp`` of far-out positions cannot underflow), ``A / L`` through ``expm1`` (bilinear
upsampling and the blur keep constants, so ``L - sum_l up(e_l) = sum_l up(1 - e_l)``). ``expm1`` and ``log1p``
are written with ``exp``, ``log`` and series (:func:`expm1`, :func:`log1p`): ONNX has neither, and the exporters
lower them to ``exp(x) - 1`` and ``log(1 + x)``, which would lose the resolution in every exported model.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

from anomalib_nfplus.models.components import GaussianBlur, upsample_maps

__all__ = ["HGADAnomalyMap", "expm1", "log1p"]

_SERIES_BELOW = 0.1  # |x| under which the series are used; their truncation error there is below 1e-9 relative
_LOG_HALF = math.log(0.5)
_TINY = torch.finfo(torch.float32).tiny


def expm1(x: torch.Tensor) -> torch.Tensor:
    """``exp(x) - 1``, accurate to float32 rounding near 0, from ops every exporter keeps (Taylor to ``x^6``)."""
    series = x * (1 + x / 2 * (1 + x / 3 * (1 + x / 4 * (1 + x / 5 * (1 + x / 6)))))
    return torch.where(x.abs() < _SERIES_BELOW, series, torch.exp(x) - 1)


def log1p(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + x)``, accurate near 0, exportable: ``2 atanh(x / (2 + x))`` as a series to the 7th power."""
    y = x / (2 + x)
    y2 = y * y
    series = 2 * y * (1 + y2 * (1 / 3 + y2 * (1 / 5 + y2 / 7)))
    return torch.where(x.abs() < _SERIES_BELOW, series, torch.log(1 + x))


def _logaddexp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log(exp(x) + exp(y))`` without overflow or underflow (ONNX lowers ``torch.logaddexp`` naively)."""
    high = torch.maximum(x, y)
    return high + torch.log(torch.exp(x - high) + torch.exp(y - high))


class HGADAnomalyMap(nn.Module):
    """Turn per-level normality maps into one blurred anomaly map (in the log domain, see the module docstring).

    Args:
        blur_sigma (float): Gaussian blur in output pixels (official: 4 at 256 px); ``0`` disables it.
    """

    def __init__(self, blur_sigma: float) -> None:
        super().__init__()
        self.blur = GaussianBlur(blur_sigma)

    @staticmethod
    def normality(values: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
        """``v - max``, the log of the official ``exp(v - max)``: 0 as normal as the most normal training pixel."""
        return values - maximum

    def complements(
        self,
        log_normality: Sequence[torch.Tensor],
        size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``a = A / L`` and ``log(1 - a)`` of one map kind, ``(B, 1, H, W)`` each, exact where each is small.

        Args:
            log_normality (Sequence[torch.Tensor]): Per-level ``v - max`` maps ``(B, h, w)``.
            size (tuple[int, int]): Output size.
        """
        levels = len(log_normality)
        # A / L from sum_l up(1 - exp(d)) = L - sum_l up(exp(d)): exact near 0 (normal pixels).
        a = self.blur(upsample_maps([-expm1(d) for d in log_normality], size).sum(1, keepdim=True).clamp_min(0.0))
        # 1 - A / L = blur(min(S, L)) / L with S scaled by exp(-shift): the most normal position of each image is
        # exp(0), so S cannot underflow to 0; the shift stays <= 0 so that the scaled bound L exp(-shift) cannot
        # underflow either (it may overflow to inf, which min() ignores).
        peaks = torch.stack([d.flatten(1).amax(dim=1) for d in log_normality], dim=1).amax(dim=1)
        shift = peaks.clamp_max(0.0).view(-1, 1, 1, 1)
        scaled = upsample_maps([torch.exp(d - shift.view(-1, 1, 1)) for d in log_normality], size).sum(1, keepdim=True)
        kept = self.blur(torch.minimum(scaled, levels * torch.exp(-shift)))
        log_s = shift + torch.log(kept.clamp_min(_TINY)) - math.log(levels)
        return a / levels, log_s

    @staticmethod
    def log_domain(a: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        """``-log(1 - a)`` from whichever complement is exact there: ``-log s`` for ``s < 1/2``, else ``-log1p(-a)``."""
        return torch.where(log_s < _LOG_HALF, -log_s, -log1p(-a))

    def forward(
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
            log_s = _logaddexp(log_s, log_s_entropy + torch.log(a))
            a = a * a_entropy
        return self.log_domain(a, log_s)
