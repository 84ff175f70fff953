# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Chains of invertible blocks and the builders of the published flows."""

from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch import nn

from .base import InvertibleBlock
from .coupling import AllInOneCoupling, DoubleAffineCoupling
from .permutations import FixedPermutation
from .subnets import SubnetFactory, allinone_subnet, mlp_subnet_factory

__all__ = ["SequentialFlow", "allinone_flow", "differnet_flow"]

_MASK64 = (1 << 64) - 1


def _block_seed(seed: int, index: int) -> int:
    """Seed of block ``index`` of a flow seeded with ``seed``: distinct for distinct indices.

    SplitMix64 finaliser of ``seed + (index + 1) * golden_gamma``: a bijection of 64-bit states, so blocks of one
    flow never share a seed, and nearby flow seeds do not produce shifted copies of each other's blocks.
    """
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1  # 63 bits: a valid torch.Generator seed on every platform


class SequentialFlow(InvertibleBlock):
    """Composition of invertible blocks; itself an :class:`InvertibleBlock`, so flows nest.

    ``forward`` applies the blocks in order and sums their log-dets, ``inverse`` applies the block inverses in
    reverse order. The condition is passed to conditional blocks only (``cond_dim > 0``); all conditional blocks
    must share one ``cond_dim``, which becomes the flow's.

    Args:
        blocks (Iterable[InvertibleBlock]): Blocks with the same ``dim``, in forward order.

    Example:
        >>> flow = allinone_flow(8, n_blocks=2, cond_dim=4)
        >>> x, c = torch.randn(5, 8), torch.randn(5, 4)
        >>> z, log_det = flow(x, c)
        >>> torch.allclose(flow.inverse(z, c)[0], x, atol=1e-5), z.shape, log_det.shape
        (True, torch.Size([5, 8]), torch.Size([5]))
    """

    def __init__(self, blocks: Iterable[InvertibleBlock]) -> None:
        blocks = list(blocks)
        if not blocks or not all(isinstance(block, InvertibleBlock) for block in blocks):
            received = [type(block).__name__ for block in blocks]
            msg = f"SequentialFlow needs a non-empty sequence of InvertibleBlock, got {received}."
            raise TypeError(msg)
        dims = {block.dim for block in blocks}
        cond_dims = {block.cond_dim for block in blocks if block.cond_dim > 0}
        if len(dims) != 1 or len(cond_dims) > 1:
            msg = f"All blocks must share dim and (if conditional) cond_dim, got dims {dims}, cond_dims {cond_dims}."
            raise ValueError(msg)
        super().__init__(dims.pop(), cond_dims.pop() if cond_dims else 0)
        self.blocks = nn.ModuleList(blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the blocks in order; the log-dets add up."""
        self.check_inputs(x, cond)
        log_det = x.new_zeros(x.shape[0])
        for block in cast("Sequence[InvertibleBlock]", self.blocks):
            x, block_log_det = block(x, cond if block.cond_dim > 0 else None)
            log_det = log_det + block_log_det
        return x, log_det

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the block inverses in reverse order; the log-dets add up."""
        self.check_inputs(y, cond)
        log_det = y.new_zeros(y.shape[0])
        for block in reversed(cast("Sequence[InvertibleBlock]", self.blocks)):
            y, block_log_det = block.inverse(y, cond if block.cond_dim > 0 else None)
            log_det = log_det + block_log_det
        return y, log_det


def allinone_flow(
    dim: int,
    n_blocks: int = 8,
    cond_dim: int = 0,
    clamp_alpha: float = 1.9,
    permute_soft: bool = True,
    seed: int = 0,
    subnet_factory: SubnetFactory = allinone_subnet,
) -> SequentialFlow:
    """Flow of CFLOW-AD (8 blocks) and HGAD (12 blocks): a chain of :class:`AllInOneCoupling`.

    Args:
        dim (int): Feature channels ``D``.
        n_blocks (int, optional): Number of blocks. Defaults to ``8``.
        cond_dim (int, optional): Width of the condition (e.g. the positional encoding). Defaults to ``0``.
        clamp_alpha (float, optional): Log-scale bound. Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotations instead of hard permutations. Defaults to ``True``.
        seed (int, optional): Flow seed; block ``k`` gets a distinct seed derived from it. Defaults to ``0``.
        subnet_factory (SubnetFactory, optional): Subnet constructor. Defaults to :func:`allinone_subnet`.

    Returns:
        SequentialFlow: The flow.
    """
    _check_n_blocks(n_blocks)
    return SequentialFlow(
        AllInOneCoupling(
            dim,
            cond_dim,
            subnet_factory=subnet_factory,
            clamp_alpha=clamp_alpha,
            permute_soft=permute_soft,
            seed=_block_seed(seed, k),
        )
        for k in range(n_blocks)
    )


def differnet_flow(
    dim: int,
    n_blocks: int = 8,
    hidden: int = 2048,
    depth: int = 3,
    clamp_alpha: float = 3.0,
    seed: int = 0,
    cond_dim: int = 0,
) -> SequentialFlow:
    """Flow of DifferNet: ``n_blocks`` x (:class:`FixedPermutation` + :class:`DoubleAffineCoupling`).

    Args:
        dim (int): Feature channels ``D`` (768 in the paper).
        n_blocks (int, optional): Number of permutation + coupling pairs. Defaults to ``8``.
        hidden (int, optional): Subnet width. Defaults to ``2048``.
        depth (int, optional): Subnet hidden layers. Defaults to ``3``.
        clamp_alpha (float, optional): Log-scale bound of the atan clamp. Defaults to ``3.0``.
        seed (int, optional): Flow seed; permutation ``k`` gets a distinct seed derived from it. Defaults to ``0``.
        cond_dim (int, optional): Optional condition width (DifferNet itself has none). Defaults to ``0``.

    Returns:
        SequentialFlow: The flow, with ``2 * n_blocks`` blocks.
    """
    _check_n_blocks(n_blocks)
    factory = mlp_subnet_factory(hidden=hidden, depth=depth)
    blocks: list[InvertibleBlock] = []
    for k in range(n_blocks):
        blocks.append(FixedPermutation(dim, seed=_block_seed(seed, k)))
        blocks.append(DoubleAffineCoupling(dim, cond_dim, subnet_factory=factory, clamp_alpha=clamp_alpha))
    return SequentialFlow(blocks)


def _check_n_blocks(n_blocks: int) -> None:
    if n_blocks < 1:
        msg = f"n_blocks must be >= 1, got {n_blocks}."
        raise ValueError(msg)
