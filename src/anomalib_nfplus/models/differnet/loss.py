# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet's training loss: the negative log-likelihood of a standard normal latent, per dimension."""

import torch

from anomalib_nfplus.flows import change_of_variables, standard_normal_log_prob

__all__ = ["differnet_loss"]


def differnet_loss(z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """``mean_batch(||z||^2 / 2 - log|det J|) / D`` (paper Eq. 4, the constant ``D/2 log 2 pi`` dropped).

    Dividing by ``D`` keeps the loss (and the learning rate it is used with) independent of the feature size.

    Args:
        z (torch.Tensor): Latent vectors ``(N, D)``.
        log_det (torch.Tensor): ``log|det J|`` per vector ``(N,)``.

    Returns:
        torch.Tensor: Scalar loss (usually negative once training has started).
    """
    if z.dim() != 2 or log_det.shape != z.shape[:1]:
        msg = f"Expected z of shape (N, D) and log_det of shape (N,), got {tuple(z.shape)} and {tuple(log_det.shape)}."
        raise ValueError(msg)
    log_px = change_of_variables(standard_normal_log_prob(z, include_const=False), log_det)
    return -log_px.mean() / z.shape[1]
