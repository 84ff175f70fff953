# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Pure tensor helpers shared by the flow blocks and the priors: the Gaussian constant and the soft clamps.

The Gaussian normalising constant lives here and only here (:func:`gaussian_log_normalizer`), so that every
log-likelihood in the package agrees on it. The two soft clamps reproduce the published models:
:func:`allinone_clamp` is the one of FrEIA 0.2's ``AllInOneBlock`` (CFLOW-AD, HGAD) and :func:`atan_clamp` is
DifferNet's (Eq. 2 of the paper).
"""

import math

import torch

__all__ = ["ALLINONE_COEFF_SCALE", "LOG_2PI", "allinone_clamp", "atan_clamp", "gaussian_log_normalizer"]

LOG_2PI: float = math.log(2.0 * math.pi)
"""``log(2 pi)``, the per-dimension constant of a unit Gaussian (times -1/2)."""

ALLINONE_COEFF_SCALE: float = 0.1
"""Factor that FrEIA 0.2's ``AllInOneBlock`` applies to *all* subnet outputs (scale and shift) before use."""


def gaussian_log_normalizer(dim: int) -> float:
    """Log normalising constant of a ``dim``-variate Gaussian with identity covariance.

    Args:
        dim (int): Number of dimensions ``D``.

    Returns:
        float: ``-D/2 * log(2 pi)``.
    """
    return -0.5 * dim * LOG_2PI


def allinone_clamp(a: torch.Tensor, alpha: float) -> torch.Tensor:
    """Soft clamp of the log-scale in FrEIA 0.2's ``AllInOneBlock``: ``alpha * tanh(0.1 * a)``.

    ``a`` is the *raw* subnet output. FrEIA 0.2 first multiplies every coupling coefficient by
    :data:`ALLINONE_COEFF_SCALE` (0.1) and then applies ``alpha * tanh``. This is the clamp CFLOW-AD and HGAD were
    trained with; FrEIA after commit ``ae74fd4`` (2023) uses ``alpha * tanh(0.1 * a / alpha)`` instead, which
    changes the dynamics.

    Args:
        a (torch.Tensor): Raw log-scale coefficients.
        alpha (float): Clamp bound; the result lies in ``(-alpha, alpha)``.

    Returns:
        torch.Tensor: Clamped log-scale, same shape as ``a``.
    """
    return alpha * torch.tanh(ALLINONE_COEFF_SCALE * a)


def atan_clamp(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """DifferNet's soft clamp of the log-scale (paper Eq. 2): ``(2 alpha / pi) * atan(s / alpha)``.

    Its slope at zero is ``2/pi`` (not 1) and it is bounded by ``(-alpha, alpha)``. The original code writes ``2/pi``
    as ``0.636``; the exact value is used here (a 0.1 % difference of the bound).

    Args:
        s (torch.Tensor): Raw log-scale coefficients.
        alpha (float): Clamp bound.

    Returns:
        torch.Tensor: Clamped log-scale, same shape as ``s``.
    """
    return (2.0 * alpha / math.pi) * torch.atan(s / alpha)
