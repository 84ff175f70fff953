# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD's training loss: ``-log sigmoid`` of the per-dimension log-likelihood, summed over levels."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CflowADLoss"]


class CflowADLoss(nn.Module):
    r"""Mean :math:`-\log\sigma(\log p(x) / C)` over the fibers of each level, summed over the levels.

    The official code divides ``log p`` by the channel count (nats per dimension) and passes it through
    ``-log sigmoid``, which behaves like the negative log-likelihood for ``log p << 0`` and stops pushing once a
    fiber is likely (``log p > 0``). Each level has its own decoder, so summing per-level means gives each decoder
    the gradient it would get if trained alone, as the official per-level steps do.

    Example:
        >>> loss = CflowADLoss()
        >>> float(loss([torch.zeros(4), torch.zeros(2, 3)]))  # 2 * log 2
        1.3862943649291992
    """

    def forward(self, log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Loss of the per-dimension log-likelihoods of each level (any shape per level)."""
        if not log_probs:
            msg = "CflowADLoss needs the log-likelihoods of at least one level."
            raise ValueError(msg)
        return torch.stack([-F.logsigmoid(log_prob).mean() for log_prob in log_probs]).sum()
