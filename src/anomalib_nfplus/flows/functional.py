# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Pure tensor helpers shared by the flow blocks, the priors and the model losses.

The Gaussian normalising constant lives here and only here (:func:`gaussian_log_normalizer`), so that every
log-likelihood in the package agrees on it. The two soft clamps reproduce the published models:
:func:`allinone_clamp` is the one of FrEIA 0.2's ``AllInOneBlock`` (CFLOW-AD, HGAD) and :func:`atan_clamp` is
DifferNet's (Eq. 2 of the paper).
"""

import math

import torch

__all__ = [
    "ALLINONE_COEFF_SCALE",
    "LOG_2PI",
    "allinone_clamp",
    "atan_clamp",
    "gaussian_log_normalizer",
    "log_likelihood",
    "standard_normal_log_prob",
]

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


def standard_normal_log_prob(z: torch.Tensor, include_const: bool = True) -> torch.Tensor:
    """Log-density of ``N(0, I)`` summed over the last dimension.

    Args:
        z (torch.Tensor): Latents of shape ``(N, D)``.
        include_const (bool, optional): Add ``-D/2 log(2 pi)``. DifferNet's loss leaves it out; it does not
            change gradients. Defaults to ``True``.

    Returns:
        torch.Tensor: ``log N(z; 0, I)`` of shape ``(N,)``.
    """
    log_prob = -0.5 * z.pow(2).sum(dim=-1)
    if include_const:
        log_prob = log_prob + gaussian_log_normalizer(z.shape[-1])
    return log_prob


def log_likelihood(
    z: torch.Tensor,
    log_det: torch.Tensor,
    *,
    per_dim: bool = False,
    include_const: bool = True,
) -> torch.Tensor:
    """Change-of-variables log-likelihood ``log p(x) = log N(f(x); 0, I) + log|det J_f(x)|``.

    Args:
        z (torch.Tensor): Flow outputs ``f(x)`` of shape ``(N, D)``.
        log_det (torch.Tensor): ``log|det J_f(x)|`` of shape ``(N,)``.
        per_dim (bool, optional): Divide by ``D`` (nats per dimension), as CFLOW-AD and HGAD do so that the
            loss scale does not depend on the feature width. Defaults to ``False``.
        include_const (bool, optional): Include the Gaussian constant. Defaults to ``True``.

    Returns:
        torch.Tensor: Log-likelihood of shape ``(N,)``.
    """
    log_prob = standard_normal_log_prob(z, include_const=include_const) + log_det
    if per_dim:
        log_prob = log_prob / z.shape[-1]
    return log_prob


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
