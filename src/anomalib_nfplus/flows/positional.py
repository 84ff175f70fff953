# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""2-D sinusoidal positional encoding, the condition of CFLOW-AD and HGAD flows."""

import math

import torch

__all__ = ["positional_encoding_2d"]


def _sin_cos(positions: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Interleave ``sin`` and ``cos`` of ``positions * freqs``: ``(L,), (F,) -> (2F, L)``."""
    angles = freqs.unsqueeze(1) * positions.unsqueeze(0)  # (F, L)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=1).reshape(-1, positions.shape[0])


def positional_encoding_2d(
    dim: int,
    height: int,
    width: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """CFLOW-AD's 2-D sin/cos positional encoding of a ``height x width`` feature map.

    With ``d = dim / 2`` and frequencies ``w_j = 10000^(-2j/d)`` for ``j < d/2``, channel ``2j`` is
    ``sin(col * w_j)`` and ``2j + 1`` is ``cos(col * w_j)``; channels ``d + 2j`` and ``d + 2j + 1`` do the same
    for the row index. Positions are *integer* pixel indices of the feature map (not normalised), as in the
    official code, so the encoding depends on the feature-map size. Only static shapes are used, so it traces.

    Args:
        dim (int): Number of channels (a multiple of 4).
        height (int): Feature-map height ``H``.
        width (int): Feature-map width ``W``.
        dtype (torch.dtype | None, optional): Output dtype; the default dtype if ``None``. Defaults to ``None``.
        device (torch.device | str | None, optional): Output device. Defaults to ``None``.

    Returns:
        torch.Tensor: Encoding of shape ``(dim, H, W)``.

    Raises:
        ValueError: If ``dim`` is not a positive multiple of 4.

    Example:
        >>> positional_encoding_2d(8, 2, 3).shape
        torch.Size([8, 2, 3])
    """
    if dim <= 0 or dim % 4 != 0:
        msg = f"positional_encoding_2d needs dim to be a positive multiple of 4 (sin/cos per axis), got {dim}."
        raise ValueError(msg)
    dtype = dtype or torch.get_default_dtype()
    half = dim // 2
    freqs = torch.exp(torch.arange(0, half, 2, dtype=dtype, device=device) * (-math.log(1e4) / half))
    cols = _sin_cos(torch.arange(width, dtype=dtype, device=device), freqs)  # (half, W)
    rows = _sin_cos(torch.arange(height, dtype=dtype, device=device), freqs)  # (half, H)
    return torch.cat(
        [cols.unsqueeze(1).expand(half, height, width), rows.unsqueeze(2).expand(half, height, width)],
        dim=0,
    )
