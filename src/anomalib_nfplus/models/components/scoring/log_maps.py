# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The likelihood aggregation of CFLOW-AD and HGAD in the log domain, exact at both ends and over any range.

Both papers turn per-level log-likelihoods into ``A = blur(L - S)``, ``S = sum_l up(exp(d_l))``, with ``d`` the
log-likelihood minus its (training) maximum and ``L`` the number of levels. In float32 ``A`` saturates at ``L``
for anomalous pixels and loses ``1 - exp(d)`` to cancellation for normal ones. The models return instead
``T = -log(1 - A / L)``, a strictly increasing function of ``A`` (the same rankings), from whichever complement is
exact there (:func:`complements`, :func:`log_domain`):

- ``a = A / L`` through ``expm1``: bilinear upsampling and the blur keep constants, so
  ``L - sum_l up(exp(d_l)) = sum_l up(-expm1(d_l))``, exact near 0 (normal pixels);
- ``log(1 - a) = log(blur(S) / L)`` with ``S`` scaled by a per-image shift (the image's most normal position is
  ``exp(0)``), exact down to a blurred sum of :data:`RESOLVED` (``e^-80``) below that position. Further out the
  scaled ``exp`` terms underflow, and the log of ``S`` is estimated in the log domain: per level the log values
  ``d`` are upsampled, the levels combined with a log-sum-exp, blurred, all without ``exp`` of far-out values.
  By Jensen's inequality (bilinear weights and blur taps are convex combinations) that estimate is a lower bound of
  the exact value, equal to it on constant regions; it is monotone in every input and never underflows. It is
  capped below the smallest exactly resolved value, so every resolved position stays ranked above every estimated
  one. Where the exact branch applies the result is bit-identical to the exact formula.

``expm1``, ``log1p``, ``logaddexp`` and ``logsumexp`` are written with ``exp``, ``log`` and series: ONNX has no
``Expm1``/``Log1p``, and the exporters lower all four naively (``exp(x) - 1``, ``log(1 + x)``,
``log(sum(exp(x)))``), which would lose the resolution, or underflow, in every exported model. Everything here is
per image and traceable by ``torch.export`` (no data-dependent Python control flow).
"""

import math
from collections.abc import Callable, Sequence

import torch

from .maps import upsample_maps

__all__ = ["RESOLVED", "complements", "expm1", "log1p", "log_domain", "logaddexp", "logsumexp"]

_SERIES_BELOW = 0.1  # |x| under which the series are used; their truncation error there is below 1e-9 relative
_LOG_HALF = math.log(0.5)
_TINY = torch.finfo(torch.float32).tiny
_LOG_RESOLVED = -80.0

#: Smallest shifted, blurred sum ``blur(S) exp(-shift)`` taken as exact: ``e^-80``, far enough above float32's
#: smallest normal number (about ``e^-87.3``) that the terms lost to underflow (or flushed denormals) are negligible.
RESOLVED = math.exp(_LOG_RESOLVED)


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


def logaddexp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log(exp(x) + exp(y))`` without overflow or underflow (ONNX lowers ``torch.logaddexp`` naively)."""
    high = torch.maximum(x, y)
    return high + torch.log(torch.exp(x - high) + torch.exp(y - high))


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(sum(exp(x)))`` over ``dim`` (kept), shifted by the maximum: ``log(sum(exp(-1000)))`` is ``-1000 + log n``.

    Example:
        >>> round(logsumexp(torch.tensor([[-1000.0, -1000.0]]), dim=1).item(), 3)  # torch.log(2 * exp(-1000)) is -inf
        -999.307
    """
    high = x.amax(dim=dim, keepdim=True)
    return high + torch.log(torch.exp(x - high).sum(dim=dim, keepdim=True))


def _identity(maps: torch.Tensor) -> torch.Tensor:
    return maps


def complements(
    log_normality: Sequence[torch.Tensor],
    size: tuple[int, int],
    blur: Callable[[torch.Tensor], torch.Tensor] | None = None,
    clamp: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = A / L`` and ``log(1 - a)`` of per-level ``d = v - max`` maps, ``(B, 1, H, W)`` each.

    ``a`` is exact where it is small (normal pixels), ``log(1 - a)`` where ``1 - a`` is small (anomalous pixels),
    and beyond the resolution of the exact form a lower bound that keeps the order (module docstring).

    Args:
        log_normality (Sequence[torch.Tensor]): Per-level ``v - max`` maps ``(B, h_l, w_l)``.
        size (tuple[int, int]): Output size.
        blur (Callable[[torch.Tensor], torch.Tensor] | None, optional): Blur of ``(B, 1, H, W)`` maps (linear,
            non-negative weights summing to 1, e.g. :class:`GaussianBlur`); ``None``: no blur. Defaults to ``None``.
        clamp (bool, optional): Clamp ``A`` at 0 (HGAD: positions more normal than the training maximum count as
            0 anomaly); ``False`` keeps ``A < 0`` there (CFLOW-AD's aggregation, strictly monotone everywhere).
            Defaults to ``True``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``a`` and ``log(1 - a)``.

    Example:
        >>> far = [torch.tensor([[[0.0, -1000.0]]])]  # one image: its most normal position and one 1000 nats below
        >>> a, log_s = complements(far, (1, 2))
        >>> log_s.flatten().tolist()
        [0.0, -1000.0]
    """
    smooth = blur if blur is not None else _identity
    levels = len(log_normality)
    log_levels = math.log(levels)
    # A / L from sum_l up(1 - exp(d)) = L - sum_l up(exp(d)): exact near 0 (normal pixels).
    a = upsample_maps([-expm1(d) for d in log_normality], size).sum(1, keepdim=True)
    a = smooth(a.clamp_min(0.0) if clamp else a)
    # 1 - A / L = blur(min(S, L)) / L with S scaled by exp(-shift): the most normal position of each image is exp(0),
    # so S does not underflow there. With the clamp the shift stays <= 0 so that the scaled bound L exp(-shift)
    # cannot underflow either (it may overflow to inf, which min() ignores).
    peaks = torch.stack([d.flatten(1).amax(dim=1) for d in log_normality], dim=1).amax(dim=1)
    shift = (peaks.clamp_max(0.0) if clamp else peaks).view(-1, 1, 1, 1)
    scaled = upsample_maps([torch.exp(d - shift.view(-1, 1, 1)) for d in log_normality], size).sum(1, keepdim=True)
    kept = smooth(torch.minimum(scaled, levels * torch.exp(-shift)) if clamp else scaled)
    exact = shift + torch.log(kept.clamp_min(_TINY)) - log_levels
    # Beyond the resolution: log(blur(min(S, L))) >= blur(min(log-sum-exp_l up(d_l), log L)) (Jensen), in logs only,
    # capped below every resolved value.
    far = logsumexp(upsample_maps(list(log_normality), size), dim=1)
    far = smooth(far.clamp_max(log_levels) if clamp else far) - log_levels
    log_s = torch.where(kept >= RESOLVED, exact, torch.minimum(far, shift + (_LOG_RESOLVED - log_levels)))
    return a / levels, log_s


def log_domain(a: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """``-log(1 - a)`` from whichever complement is exact there: ``-log s`` for ``s < 1/2``, else ``-log1p(-a)``."""
    return torch.where(log_s < _LOG_HALF, -log_s, -log1p(-a))
