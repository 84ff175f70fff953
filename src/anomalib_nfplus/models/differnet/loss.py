# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet's training loss: the negative log-likelihood of a standard normal latent, per dimension."""

import torch
from torch import nn

from anomalib_nfplus.flows import change_of_variables, standard_normal_log_prob

__all__ = ["DifferNetLoss"]


class DifferNetLoss(nn.Module):
    """``mean_batch(||z||^2 / 2 - log|det J|) / D`` (paper Eq. 4, the constant ``D/2 log 2 pi`` dropped).

    Dividing by ``D`` keeps the loss (and the learning rate it is used with) independent of the feature size.

    Example:
        >>> loss = DifferNetLoss()
        >>> float(loss(torch.ones(2, 4), torch.zeros(2)))  # ||z||^2 / 2 / D = 4 / 2 / 4
        0.5
    """

    def forward(self, z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """Scalar loss (usually negative once training has started) of latents ``(N, D)`` and ``log|det J|`` ``(N,)``.

        Raises:
            ValueError: The shapes are not ``(N, D)`` and ``(N,)``.
        """
        if z.dim() != 2 or log_det.shape != z.shape[:1]:
            msg = (
                f"Expected z of shape (N, D) and log_det of shape (N,), got {tuple(z.shape)} and "
                f"{tuple(log_det.shape)}."
            )
            raise ValueError(msg)
        log_px = change_of_variables(standard_normal_log_prob(z, include_const=False), log_det)
        return -log_px.mean() / z.shape[1]
