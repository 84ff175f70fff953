# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD's decoders: per-level positional flows scoring fibers by per-dimension log-likelihood.

:class:`~anomalib_nfplus.flows.PositionalFlows` evaluates the flows (condition projected once per
position, bfloat16 subnets in training); this adds CFLOW-AD's log-likelihood maps and the fiber chunks of its
optimizer steps.
"""

from collections.abc import Iterator, Sequence

import torch

from anomalib_nfplus.flows import PositionalFlows, log_likelihood

__all__ = ["CflowDecoders"]


class CflowDecoders(PositionalFlows):
    """Per-level conditional flows returning per-dimension log-likelihoods (CFLOW-AD Eq. 7, divided by ``C``).

    Args:
        channels (Sequence[int]): Channels of each encoder level.
        coupling_blocks (int, optional): Couplings per flow. Defaults to ``8``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Fixed random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the rotations. Defaults to ``0``.

    Example:
        >>> decoders = CflowDecoders([8, 16], coupling_blocks=2, condition_dim=8)
        >>> maps = decoders.log_prob_maps([torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)])
        >>> [tuple(m.shape) for m in maps]
        [(2, 4, 4), (2, 2, 2)]
    """

    def __init__(
        self,
        channels: Sequence[int],
        coupling_blocks: int = 8,
        condition_dim: int = 128,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(channels, coupling_blocks, condition_dim, clamp_alpha, permute_soft, seed)

    def _log_prob(
        self,
        index: int,
        x: torch.Tensor,
        cond: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-dimension ``log p`` of fibers ``x: (..., C)`` (see :meth:`transform` for the shapes)."""
        return self._per_dim(index, *self.transform(index, x, cond, positions))

    def _per_dim(self, index: int, z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-likelihood of latents ``z: (..., C)`` with ``log_det`` of shape ``z.shape[:-1]``."""
        if z.shape[-1] != self.channels[index]:
            msg = f"Level {index} has {self.channels[index]} channels, got latents of shape {tuple(z.shape)}."
            raise ValueError(msg)
        return log_likelihood(z, log_det, per_dim=True)

    def log_prob_map(self, index: int, features: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-likelihood map ``(B, H, W)`` of level ``index``'s ``(B, C, H, W)`` features."""
        batch, _, height, width = features.shape
        x, cond = self.by_position(features)  # (B, P, C), (P, D): the condition is shared by all images
        return self._log_prob(index, x, cond).view(batch, height, width)

    def log_prob_maps(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`log_prob_map` of every level."""
        if len(features) != len(self.flows):
            msg = f"Expected {len(self.flows)} feature levels, got {len(features)}."
            raise ValueError(msg)
        return [self.log_prob_map(i, f) for i, f in enumerate(features)]

    def fiber_chunks(
        self,
        features: Sequence[torch.Tensor],
        fiber_batch_size: int,
        per_level: bool,
    ) -> Iterator[list[tuple[int, torch.Tensor]]]:
        """Yield ``[(level, log p)]`` for one random chunk of fibers at a time (one optimizer step each).

        ``per_level=True`` is the official scheme: the ``B * H * W`` fibers of each level in turn are shuffled and cut
        into ``E_l // N`` chunks of ``N`` (the remainder dropped), each yielded as a one-element list (its loss trains
        that level only). Otherwise the chunks are :meth:`position_chunks`: groups of positions shared by all images
        of the batch, about ``N`` fibers over all levels each (a level with fewer positions than there are chunks
        is absent from some). The level indices tell which decoders a chunk's loss does not reach.
        """
        if per_level:
            for index, feature in enumerate(features):
                x, pos, cond = self._shuffled(feature)
                usable = torch.arange(_usable(len(x), fiber_batch_size), device=x.device)  # no per-chunk copy
                for part in torch.split(usable, fiber_batch_size):
                    yield [(index, self._log_prob(index, x[part], cond, pos[part]))]
            return
        for chunk in self.position_chunks(features, fiber_batch_size):
            yield [(i, self._per_dim(i, z, log_det)) for i, z, log_det in chunk]

    def _shuffled(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fibers ``(B * H * W, C)`` in random order, their position indices and the level's encodings."""
        _, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(-1, channels)  # (B * H * W, C)
        order = torch.randperm(len(x), device=x.device)
        return x[order], order % (height * width), self.encoding(height, width, features)


def _usable(count: int, chunk: int) -> int:
    """Fibers used per level in the official scheme: whole chunks only, but at least one (smaller) chunk."""
    return count if count < chunk else count - count % chunk
