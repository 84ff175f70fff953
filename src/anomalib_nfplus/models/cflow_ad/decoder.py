# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD's decoders: one positional-encoding-conditioned flow per encoder level, evaluated cheaply.

Same parameters, state-dict keys and outputs as :class:`~anomalib_nfplus.models.components.PositionalFlows`.
What differs is how the first subnet layer sees the condition. FrEIA (and the official code) concatenates the
128-d positional encoding ``c`` to every fiber, so the first ``Linear`` costs ``(C/2 + 128) * 2i`` per fiber. Since
``W [x1; c] + b = W_x x1 + (W_c c + b)`` and ``c`` depends only on the position, ``W_c c + b`` is computed once per
position and broadcast over the batch. For EfficientNet-Lite0's 40-channel level that removes about 85 % of the
first layer's work; the results agree with the concatenating block to float rounding.
"""

from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.flows import AllInOneCoupling, allinone_clamp, log_likelihood
from anomalib_nfplus.flows.functional import ALLINONE_COEFF_SCALE
from anomalib_nfplus.models.components import PositionalFlows

__all__ = ["CflowDecoders", "coupling_forward"]


def _subnet(
    block: AllInOneCoupling,
    x1: torch.Tensor,
    cond_bias: torch.Tensor,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """The coupling's subnet on ``x1``; with ``dtype``, its two matrix products run in that precision."""
    first, activation, last = block.subnet
    weight = first.weight[:, : block.split[0]]
    if dtype is None:
        return last(activation(F.linear(x1, weight) + cond_bias))
    hidden = activation(F.linear(x1.to(dtype), weight.to(dtype)) + cond_bias.to(dtype))
    return F.linear(hidden, last.weight.to(dtype), last.bias.to(dtype)).float()


def coupling_forward(
    block: AllInOneCoupling,
    x: torch.Tensor,
    cond_bias: torch.Tensor,
    subnet_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``AllInOneCoupling.forward`` with the condition's share of the first layer given precomputed.

    Args:
        block (AllInOneCoupling): Block whose parameters are used (subnet ``Linear - ReLU - Linear``).
        x (torch.Tensor): Inputs ``(..., D)``; any leading shape.
        cond_bias (torch.Tensor): ``W_c c + b`` of the first subnet layer, broadcastable to ``(..., 2i)``.
        subnet_dtype (torch.dtype | None, optional): Run the subnet's matrix products in this precision (e.g.
            ``torch.bfloat16`` for training); the coupling itself, the permutation and ``log|det J|`` stay in
            ``x``'s precision. Defaults to ``None`` (all in ``x``'s precision).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``y`` of the shape of ``x`` and ``log|det J|`` of shape ``x.shape[:-1]``.
    """
    active, passive = block.split
    x1, x2 = x[..., :active], x[..., active:]
    a = _subnet(block, x1, cond_bias, subnet_dtype)
    s = allinone_clamp(a[..., :passive], block.clamp_alpha)
    t = ALLINONE_COEFF_SCALE * a[..., passive:]
    u = torch.cat([x1, x2 * torch.exp(s) + t], dim=-1)
    scale = block.global_scaling()
    # W (g * u + b) as one affine map: saves two elementwise passes over all fibers.
    y = F.linear(u, block.w_perm * scale, block.w_perm @ block.global_offset)
    return y, s.sum(dim=-1) + torch.log(scale).sum()


def _check_subnets(flows: nn.ModuleList) -> None:
    for flow in flows:
        for block in flow.blocks:
            subnet = block.subnet
            layout = [type(m) for m in subnet] if isinstance(subnet, nn.Sequential) else []
            if len(layout) != 3 or layout[0] is not nn.Linear or layout[2] is not nn.Linear:
                msg = f"CflowDecoders needs Linear-activation-Linear subnets, got {subnet}."
                raise TypeError(msg)


class CflowDecoders(PositionalFlows):
    """Per-level conditional flows returning per-dimension log-likelihoods (CFLOW-AD Eq. 7, divided by ``C``).

    Args:
        channels (Sequence[int]): Channels of each encoder level.
        coupling_blocks (int, optional): Couplings per flow. Defaults to ``8``.
        condition_dim (int, optional): Positional-encoding width. Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Fixed random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the rotations. Defaults to ``0``.

    Attributes:
        subnet_dtype (torch.dtype | None): Precision of the subnets' matrix products in training mode (``None``: that
            of the inputs). Eval mode always runs in the inputs' precision, so scores and exports are unaffected.

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
        _check_subnets(self.flows)
        self.subnet_dtype: torch.dtype | None = None

    def _log_prob(
        self,
        index: int,
        x: torch.Tensor,
        cond: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-dimension ``log p`` of fibers ``x: (..., C)``.

        ``cond`` holds the encodings ``(P, D)`` of the level's positions; ``x`` is either ``(B, P, C)`` (the
        condition broadcasts over the batch) or ``(N, C)`` fibers at the indices ``positions: (N,)``.
        """
        channels = self.channels[index]
        if x.shape[-1] != channels:
            msg = f"Level {index} expects {channels} channels, got {x.shape[-1]}."
            raise ValueError(msg)
        if positions is not None and len(positions) < len(cond):  # few fibers: project only their encodings
            cond, positions = cond[positions], None
        log_det = x.new_zeros(x.shape[:-1])
        for block in self.flows[index].blocks:
            first = block.subnet[0]
            cond_bias = F.linear(cond, first.weight[:, block.split[0] :], first.bias)  # (P, 2i)
            if positions is not None:
                cond_bias = cond_bias[positions]  # (N, 2i)
            x, block_log_det = coupling_forward(block, x, cond_bias, self.subnet_dtype if self.training else None)
            log_det = log_det + block_log_det
        return log_likelihood(x.reshape(-1, channels), log_det.reshape(-1), per_dim=True).view(log_det.shape)

    def log_prob_map(self, index: int, features: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-likelihood map ``(B, H, W)`` of level ``index``'s ``(B, C, H, W)`` features."""
        batch, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (B, P, C)
        cond = self.encoding(height, width, features)  # (P, D): shared by all images
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
    ) -> Iterator[list[torch.Tensor]]:
        """Yield the per-level ``log p`` of one random chunk of fibers at a time (one optimizer step each).

        ``per_level=True`` is the official scheme: the ``B * H * W`` fibers of each level in turn are shuffled and cut
        into ``E_l // N`` chunks of ``N`` (the remainder dropped), each yielded as a one-element list (its loss trains
        that level only). Otherwise every level's positions are shuffled and cut into
        ``K = max(1, round(sum_l E_l / N))`` groups (at most as many as the largest level has positions); chunk ``k``
        holds the fibers of all images at the ``k``-th group of positions of every level that has one. Sharing
        positions across the images of a chunk lets the condition be projected once per position and broadcast,
        instead of gathered per fiber (whose backward is a slow scatter).
        """
        if per_level:
            for index, feature in enumerate(features):
                x, pos, cond = self._shuffled(feature)
                for part in torch.split(torch.arange(_usable(len(x), fiber_batch_size)), fiber_batch_size):
                    yield [self._log_prob(index, x[part], cond, pos[part])]
            return
        total = sum(f.shape[0] * f.shape[2] * f.shape[3] for f in features)
        n_chunks = min(max(1, round(total / fiber_batch_size)), max(f.shape[2] * f.shape[3] for f in features))
        levels = [self._by_position(f) for f in features]
        groups = [torch.randperm(len(cond), device=cond.device).tensor_split(n_chunks) for _, cond in levels]
        for k in range(n_chunks):
            yield [
                self._log_prob(i, x[:, g[k]], cond[g[k]])
                for i, ((x, cond), g) in enumerate(zip(levels, groups, strict=True))
                if len(g[k])
            ]

    def _by_position(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fibers ``(B, H * W, C)`` and the level's encodings ``(H * W, D)``."""
        batch, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        return x, self.encoding(height, width, features)

    def _shuffled(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fibers ``(B * H * W, C)`` in random order, their position indices and the level's encodings."""
        _, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(-1, channels)  # (B * H * W, C)
        order = torch.randperm(len(x), device=x.device)
        return x[order], order % (height * width), self.encoding(height, width, features)


def _usable(count: int, chunk: int) -> int:
    """Fibers used per level in the official scheme: whole chunks only, but at least one (smaller) chunk."""
    return count if count < chunk else count - count % chunk
