# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The one contract every invertible block of :mod:`anomalib_nfplus.flows` follows."""

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["InvertibleBlock", "is_tracing"]


def is_tracing() -> bool:
    """Tell whether the current call is being traced, exported or compiled rather than run eagerly.

    Covers TorchScript (scripting and ``torch.jit.trace``), the TorchScript-based ONNX exporter,
    ``torch.export`` (strict and non-strict, hence the dynamo ONNX exporter) and ``torch.compile``. Checks that
    read tensor *values* (``.min()``, ``.tolist()``) or compare symbolic sizes are skipped while tracing, so that
    eager calls get clear errors and exported graphs stay free of data-dependent guards; eager-only speed-ups
    (caches, chunking) are skipped too, so that a trace records one plain graph.

    Returns:
        bool: ``True`` while tracing, exporting or compiling.

    Example:
        >>> is_tracing()
        False
    """
    return (
        torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_exporting()
        or torch.compiler.is_compiling()
    )


class InvertibleBlock(nn.Module, ABC):
    r"""Abstract invertible map :math:`y = f(x; c)` on flat feature vectors, with its log-Jacobian determinant.

    Contract (every block and :class:`~anomalib_nfplus.flows.SequentialFlow` follow it):

    - Inputs are 2-D: ``x`` of shape ``(N, dim)`` and an optional condition ``cond`` of shape ``(N, cond_dim)``.
      Models flatten spatial positions into ``N``; blocks never loop over positions.
    - ``forward(x, cond=None) -> (y, log_det)`` with ``log_det = log|det df/dx|`` of shape ``(N,)``.
    - ``inverse(y, cond=None) -> (x, log_det)`` with ``log_det = log|det df^{-1}/dy|``, i.e. **minus** the
      forward value at the matching point, so ``forward`` then ``inverse`` sums to zero.
    - A block with ``cond_dim == 0`` takes no condition; a conditional block requires one.
    - Fixed random quantities (permutations, rotations) are drawn from a seeded ``torch.Generator`` in
      ``__init__`` and stored as buffers; forward paths have no data-dependent Python control flow, so blocks
      trace under ``torch.export`` and the ONNX dynamo exporter.

    Args:
        dim (int): Feature dimension ``D``.
        cond_dim (int, optional): Condition dimension ``Dc``; 0 for an unconditional block. Defaults to ``0``.
    """

    def __init__(self, dim: int, cond_dim: int = 0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            msg = f"dim must be a positive int, got {dim!r}."
            raise ValueError(msg)
        if not isinstance(cond_dim, int) or cond_dim < 0:
            msg = f"cond_dim must be a non-negative int (0 = unconditional), got {cond_dim!r}."
            raise ValueError(msg)
        self.dim = dim
        self.cond_dim = cond_dim

    @abstractmethod
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` to ``y``; return ``(y, log|det dy/dx|)``."""

    @abstractmethod
    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` back to ``x``; return ``(x, log|det dx/dy|)`` (minus the forward log-det)."""

    def check_inputs(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> None:
        """Validate the shapes of ``x`` and ``cond`` against ``dim`` and ``cond_dim``.

        Only static properties (rank, feature sizes, presence of the condition) are checked while tracing, so
        the check adds no guard to an exported graph.

        Args:
            x (torch.Tensor): Input expected as ``(N, dim)``.
            cond (torch.Tensor | None, optional): Condition expected as ``(N, cond_dim)``. Defaults to ``None``.

        Raises:
            ValueError: If a shape does not match, or a condition is missing/unexpected.
        """
        name = type(self).__name__
        if x.dim() != 2 or x.shape[1] != self.dim:
            msg = f"{name} expects input of shape (N, {self.dim}), got {tuple(x.shape)}."
            raise ValueError(msg)
        if self.cond_dim == 0:
            if cond is not None:
                msg = f"{name} is unconditional (cond_dim=0) but got a condition of shape {tuple(cond.shape)}."
                raise ValueError(msg)
            return
        if cond is None:
            msg = f"{name} is conditional and needs cond of shape (N, {self.cond_dim}), got None."
            raise ValueError(msg)
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            msg = f"{name} expects cond of shape (N, {self.cond_dim}), got {tuple(cond.shape)}."
            raise ValueError(msg)
        if not is_tracing() and cond.shape[0] != x.shape[0]:
            msg = f"{name}: x has {x.shape[0]} rows but cond has {cond.shape[0]}; they must match."
            raise ValueError(msg)

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"dim={self.dim}, cond_dim={self.cond_dim}"
