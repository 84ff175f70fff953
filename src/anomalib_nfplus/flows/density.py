# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
r"""Densities defined by a flow and a prior: :math:`\log p(x) = \log p_Z(f(x)) + \log|\det J_f(x)|`.

:func:`change_of_variables` is the one place where a prior's ``log p(z)`` and a flow's log-determinant are combined
(optionally per dimension); :class:`FlowDensity` holds a flow and a prior and applies it. Models that evaluate
their flows their own way (per feature level, in fiber chunks, under test-time augmentation) call
:func:`change_of_variables` on their priors' ``log_prob`` directly.
"""

import torch
from torch import nn

from .base import InvertibleBlock
from .priors import Prior, standard_normal_log_prob

__all__ = ["FlowDensity", "change_of_variables", "log_likelihood"]


def change_of_variables(log_pz: torch.Tensor, log_det: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``log p(x) = log p_Z(z) + log|det J|``, in nats per dimension when ``dim`` is given.

    Dividing by the feature width ``D`` (CFLOW-AD, HGAD, DifferNet) makes the scale of losses and scores
    independent of ``D``.

    Args:
        log_pz (torch.Tensor): The prior's log-density of the latents, any shape.
        log_det (torch.Tensor): ``log|det J_f(x)|``, same shape.
        dim (int | None, optional): Divide by this many dimensions. Defaults to ``None`` (total nats).

    Returns:
        torch.Tensor: ``log p(x)``, same shape.

    Example:
        >>> change_of_variables(torch.tensor([-3.0]), torch.tensor([1.0]), dim=2)
        tensor([-1.])
    """
    log_px = log_pz + log_det
    return log_px if dim is None else log_px / dim


def log_likelihood(
    z: torch.Tensor,
    log_det: torch.Tensor,
    *,
    per_dim: bool = False,
    include_const: bool = True,
) -> torch.Tensor:
    """:func:`change_of_variables` under a standard normal prior, for latents ``z: (..., D)`` of any leading shape.

    Args:
        z (torch.Tensor): Flow outputs ``f(x)`` of shape ``(..., D)``.
        log_det (torch.Tensor): ``log|det J_f(x)|`` of shape ``z.shape[:-1]``.
        per_dim (bool, optional): Divide by ``D`` (nats per dimension). Defaults to ``False``.
        include_const (bool, optional): Include the Gaussian constant. Defaults to ``True``.

    Returns:
        torch.Tensor: Log-likelihood of shape ``z.shape[:-1]``.
    """
    log_pz = standard_normal_log_prob(z, include_const=include_const)
    return change_of_variables(log_pz, log_det, z.shape[-1] if per_dim else None)


class FlowDensity(nn.Module):
    r"""The density of :math:`x` under a flow :math:`z = f(x; c)` and a prior :math:`p_Z(z \mid y)`.

    .. math::

        \log p(x \mid c, y) = \log p_Z(f(x; c) \mid y) + \log|\det J_f(x; c)|

    ``c`` is the flow's condition and ``y`` the prior's class label (only for priors with classes). With
    ``per_dim=True`` the result is divided by ``D`` (nats per dimension).

    Args:
        flow (InvertibleBlock): The flow, ``(N, D) -> (z, log_det)``.
        prior (Prior): The base distribution, with ``dim == flow.dim``.

    Example:
        >>> from anomalib_nfplus.flows import StandardNormal, allinone_flow
        >>> density = FlowDensity(allinone_flow(4, n_blocks=2), StandardNormal(4))
        >>> x = torch.randn(8, 4)
        >>> density.log_prob(x).shape, bool(torch.allclose(density.nll(x, per_dim=True), -density.log_prob(x) / 4))
        (torch.Size([8]), True)
    """

    def __init__(self, flow: InvertibleBlock, prior: Prior) -> None:
        super().__init__()
        if flow.dim != prior.dim:
            msg = f"The flow maps {flow.dim} dimensions but the prior has {prior.dim}; they must match."
            raise ValueError(msg)
        self.flow = flow
        self.prior = prior

    @property
    def dim(self) -> int:
        """Dimension ``D`` of ``x`` and ``z``."""
        return self.flow.dim

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents ``z: (N, D)`` and ``log|det J|: (N,)`` of ``x``."""
        return self.flow(x, cond)

    def latent_log_prob(
        self,
        z: torch.Tensor,
        log_det: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        per_dim: bool = False,
    ) -> torch.Tensor:
        """``log p(x)`` from latents already computed by the flow (e.g. when ``z`` is needed as well)."""
        return change_of_variables(self.prior.log_prob(z, y), log_det, self.dim if per_dim else None)

    def log_prob(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        per_dim: bool = False,
    ) -> torch.Tensor:
        """``log p(x | c, y)``, shape ``(N,)``.

        Args:
            x (torch.Tensor): Inputs ``(N, D)``.
            cond (torch.Tensor | None, optional): Flow condition ``(N, cond_dim)``. Defaults to ``None``.
            y (torch.Tensor | None, optional): Class labels ``(N,)`` for the prior. Defaults to ``None``.
            per_dim (bool, optional): Divide by ``D``. Defaults to ``False``.
        """
        z, log_det = self.flow(x, cond)
        return self.latent_log_prob(z, log_det, y, per_dim=per_dim)

    def nll(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        per_dim: bool = False,
    ) -> torch.Tensor:
        """Negative log-likelihood ``-log p(x | c, y)``, shape ``(N,)``; its mean is the usual training loss."""
        return -self.log_prob(x, cond, y, per_dim=per_dim)
