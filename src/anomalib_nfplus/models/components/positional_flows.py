# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One conditional flow per feature level, applied to every position at once (CflowAD and HGAD).

Each level ``l`` has a chain of :class:`~anomalib_nfplus.flows.AllInOneCoupling` blocks over its ``C_l`` channels,
conditioned on the 2-D positional encoding of the position. All ``B * H * W`` fibers of a level go through the
flow in one call: no Python loop over positions or fiber chunks in the hot path.
"""

from collections.abc import Sequence

import torch
from torch import nn

from anomalib_nfplus.flows import SequentialFlow, allinone_flow, positional_encoding_2d

__all__ = ["PositionalFlows"]


class PositionalFlows(nn.Module):
    """Per-level conditional flows over feature fibers.

    Args:
        channels (Sequence[int]): Channels of each level.
        n_blocks (int, optional): Couplings per flow (CFLOW-AD 8, HGAD 12). Defaults to ``8``.
        cond_dim (int, optional): Positional-encoding width (CFLOW-AD 128, HGAD 256). Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the fixed rotations; level ``l`` uses ``seed + 1000 * l``. Defaults to ``0``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        n_blocks: int = 8,
        cond_dim: int = 128,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not channels:
            msg = "PositionalFlows needs at least one feature level."
            raise ValueError(msg)
        self.channels = tuple(int(c) for c in channels)
        self.cond_dim = cond_dim
        self.flows = nn.ModuleList(
            allinone_flow(c, n_blocks, cond_dim, clamp_alpha, permute_soft, seed=seed + 1000 * level)
            for level, c in enumerate(self.channels)
        )
        self._encodings: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.flows)

    def encoding(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Positional encoding ``(H * W, cond_dim)`` of a level, cached per size, device and dtype."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return (
                positional_encoding_2d(self.cond_dim, height, width, dtype=like.dtype, device=like.device).flatten(1).T
            )
        key = (height, width, like.device, like.dtype)
        if key not in self._encodings:
            pos = positional_encoding_2d(self.cond_dim, height, width, dtype=like.dtype, device=like.device)
            self._encodings[key] = pos.flatten(1).T.contiguous()
        return self._encodings[key]

    def fibers(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flatten ``(B, C, H, W)`` features into fibers ``(B * H * W, C)`` and their conditions."""
        batch, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        cond = self.encoding(height, width, features).repeat(batch, 1)
        return x, cond

    def level(self, index: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map level ``index``'s ``(B, C, H, W)`` features to ``z: (B, H, W, C)`` and ``log_det: (B, H, W)``."""
        batch, channels, height, width = features.shape
        if channels != self.channels[index]:
            msg = f"Level {index} expects {self.channels[index]} channels, got {channels}."
            raise ValueError(msg)
        x, cond = self.fibers(features)
        flow: SequentialFlow = self.flows[index]  # type: ignore[assignment]
        z, log_det = flow(x, cond)
        return z.view(batch, height, width, channels), log_det.view(batch, height, width)

    def forward(self, features: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Apply every level's flow; ``features[l]`` is ``(B, C_l, H_l, W_l)``."""
        if len(features) != len(self.flows):
            msg = f"Expected {len(self.flows)} feature levels, got {len(features)}."
            raise ValueError(msg)
        return [self.level(i, f) for i, f in enumerate(features)]
