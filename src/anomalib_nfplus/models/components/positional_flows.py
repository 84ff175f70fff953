# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One conditional flow per feature level, applied to every position at once (CflowAD and HGAD).

Each level ``l`` has a chain of :class:`~anomalib_nfplus.flows.AllInOneCoupling` blocks over its ``C_l`` channels,
conditioned on the 2-D positional encoding of the position. All ``B * H * W`` fibers of a level go through the
flow in one call: no Python loop over positions or fiber chunks in the hot path.

The flows are evaluated more cheaply than the blocks' own ``forward`` (same parameters and results up to float
rounding). FrEIA, and the official CFLOW-AD and HGAD code, concatenate the encoding ``c`` to every fiber, so each
coupling's first subnet layer costs ``(C/2 + D) * 2i`` per fiber. Since ``W [x1; c] + b = W_x x1 + (W_c c + b)``
and ``c`` depends only on the position, ``W_c c + b`` is computed once per position and broadcast over the batch
(for EfficientNet-Lite0's 40-channel level that is about 85 % of the first layer's work). The global affine
is folded into the fixed rotation, and in training mode the subnets' matrix products may run in bfloat16
(``subnet_dtype``).
"""

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.flows import AllInOneCoupling, allinone_clamp, allinone_flow, positional_encoding_2d
from anomalib_nfplus.flows.functional import ALLINONE_COEFF_SCALE

__all__ = [
    "PositionalFlows",
    "SubnetPrecision",
    "check_fiber_batch_size",
    "coupling_forward",
    "subnet_dtype",
    "use_subnet_precision",
]

#: Precision of the coupling subnets' matrix products in training (see :func:`subnet_dtype`).
SubnetPrecision = Literal["auto", "float32", "bfloat16"]


def check_fiber_batch_size(fiber_batch_size: int | None) -> None:
    """Refuse a ``fiber_batch_size`` that is neither ``None`` nor a positive int (see :meth:`position_chunks`)."""
    if fiber_batch_size is not None and (isinstance(fiber_batch_size, bool) or fiber_batch_size < 1):
        msg = (
            "fiber_batch_size must be None (all fibers in one step per image batch) or a positive int, "
            f"got {fiber_batch_size!r}."
        )
        raise ValueError(msg)


def subnet_dtype(precision: SubnetPrecision, device: torch.device) -> torch.dtype | None:
    """``torch.bfloat16`` or ``None`` (float32) for ``precision`` on ``device``; ``"auto"`` asks the hardware.

    ``"auto"`` picks bfloat16 where it is computed natively (CPUs with AVX512-BF16 or AMX, bfloat16 GPUs), where
    it makes the subnets about 1.6x faster; elsewhere bfloat16 would be emulated and slower.
    """
    if precision not in {"auto", "float32", "bfloat16"}:
        msg = f"subnet_precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}."
        raise ValueError(msg)
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        # Without the argument torch also answers True where bfloat16 is only emulated (T4, V100), and slower.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return None


def use_subnet_precision(module: nn.Module, precision: SubnetPrecision, device: torch.device) -> None:
    """Set the training precision of the subnets of every :class:`PositionalFlows` in ``module``."""
    dtype = subnet_dtype(precision, device)
    for flows in module.modules():
        if isinstance(flows, PositionalFlows):
            flows.subnet_dtype = dtype


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
        block (AllInOneCoupling): Block whose parameters are used (subnet ``Linear - activation - Linear``).
        x (torch.Tensor): Inputs ``(..., D)``; any leading shape.
        cond_bias (torch.Tensor): ``W_c c + b`` of the first subnet layer, broadcastable to ``(..., 2i)``.
        subnet_dtype (torch.dtype | None, optional): Run the subnet's matrix products in this precision (e.g.
            ``torch.bfloat16`` for training); the coupling itself, the rotation and ``log|det J|`` stay in
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
                msg = f"PositionalFlows needs Linear-activation-Linear subnets, got {subnet}."
                raise TypeError(msg)


class PositionalFlows(nn.Module):
    """Per-level conditional flows over feature fibers.

    Args:
        channels (Sequence[int]): Channels of each level.
        n_blocks (int, optional): Couplings per flow (CFLOW-AD 8, HGAD 12). Defaults to ``8``.
        cond_dim (int, optional): Positional-encoding width (CFLOW-AD 128, HGAD 256). Defaults to ``128``.
        clamp_alpha (float, optional): Coupling clamp. Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotations between couplings. Defaults to ``True``.
        seed (int, optional): Seed of the fixed rotations; level ``l`` uses ``seed + 1000 * l``. Defaults to ``0``.

    Attributes:
        subnet_dtype (torch.dtype | None): Precision of the subnets' matrix products in training mode (``None``: that
            of the inputs). Eval mode always runs in the inputs' precision, so scores and exports are unaffected.
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
        _check_subnets(self.flows)
        self.subnet_dtype: torch.dtype | None = None
        self._encodings: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.flows)

    def encoding(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Positional encoding ``(H * W, cond_dim)`` of a level, cached per size, device and dtype.

        Computed in at least float32, then cast to ``like``'s dtype: built in bfloat16 (features under autocast),
        the sines of large integer positions would be off by up to 0.34 at 128x128. The cached tensor is created
        outside inference mode, so an encoding first built while testing or predicting can still be used in
        training (autograd refuses inference tensors).
        """
        build = torch.promote_types(like.dtype, torch.float32)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            pos = positional_encoding_2d(self.cond_dim, height, width, dtype=build, device=like.device)
            return pos.flatten(1).T.to(like.dtype)
        key = (height, width, like.device, like.dtype)
        if key not in self._encodings:
            with torch.inference_mode(False), torch.no_grad():
                pos = positional_encoding_2d(self.cond_dim, height, width, dtype=build, device=like.device)
                self._encodings[key] = pos.flatten(1).T.to(like.dtype).contiguous()
        return self._encodings[key]

    def transform(
        self,
        index: int,
        x: torch.Tensor,
        cond: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map fibers ``x: (..., C)`` of level ``index`` to ``z`` (same shape) and ``log|det J|`` (``x.shape[:-1]``).

        ``cond`` holds the encodings ``(P, D)`` of the positions; ``x`` is either ``(B, P, C)`` (the condition
        broadcasts over the batch) or ``(N, C)`` fibers at the indices ``positions: (N,)``.
        """
        channels = self.channels[index]
        if x.shape[-1] != channels:
            msg = f"Level {index} expects {channels} channels, got {x.shape[-1]}."
            raise ValueError(msg)
        if positions is not None and len(positions) < len(cond):  # few fibers: project only their encodings
            cond, positions = cond[positions], None
        dtype = self.subnet_dtype if self.training else None
        log_det = x.new_zeros(x.shape[:-1])
        for block in self.flows[index].blocks:
            first = block.subnet[0]
            cond_bias = F.linear(cond, first.weight[:, block.split[0] :], first.bias)  # (P, 2i)
            if positions is not None:
                cond_bias = cond_bias[positions]  # (N, 2i)
            x, block_log_det = coupling_forward(block, x, cond_bias, dtype)
            log_det = log_det + block_log_det
        return x, log_det

    def level(self, index: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map level ``index``'s ``(B, C, H, W)`` features to ``z: (B, H, W, C)`` and ``log_det: (B, H, W)``."""
        batch, channels, height, width = features.shape
        z, log_det = self.transform(index, *self.by_position(features))
        return z.view(batch, height, width, channels), log_det.view(batch, height, width)

    def forward(self, features: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Apply every level's flow; ``features[l]`` is ``(B, C_l, H_l, W_l)``."""
        self._check_levels(features)
        return [self.level(i, f) for i, f in enumerate(features)]

    def position_chunks(
        self,
        features: Sequence[torch.Tensor],
        fiber_batch_size: int,
    ) -> Iterator[list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """Yield ``[(level, z (B, p, C), log_det (B, p))]`` for one random group of positions at a time.

        Every level's positions are shuffled and cut into ``K = max(1, round(sum_l B * H_l * W_l / N))`` groups (at
        most as many as the largest level has positions); chunk ``k`` holds the fibers of *all* images at the
        ``k``-th group of positions of every level that has one, so about ``N`` fibers per chunk, each chunk one
        optimizer step. Sharing positions across the images lets the condition be projected once per position and
        broadcast, instead of gathered per fiber (whose backward is a slow scatter).
        """
        self._check_levels(features)
        total = sum(f.shape[0] * f.shape[2] * f.shape[3] for f in features)
        n_chunks = min(max(1, round(total / fiber_batch_size)), max(f.shape[2] * f.shape[3] for f in features))
        levels = [self.by_position(f) for f in features]
        groups = [torch.randperm(len(cond), device=cond.device).tensor_split(n_chunks) for _, cond in levels]
        for k in range(n_chunks):
            yield [
                (i, *self.transform(i, x[:, g[k]], cond[g[k]]))
                for i, ((x, cond), g) in enumerate(zip(levels, groups, strict=True))
                if len(g[k])
            ]

    def by_position(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fibers ``(B, H * W, C)`` of ``(B, C, H, W)`` features and the level's encodings ``(H * W, D)``."""
        batch, channels, height, width = features.shape
        x = features.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        return x, self.encoding(height, width, features)

    def _check_levels(self, features: Sequence[torch.Tensor]) -> None:
        if len(features) != len(self.flows):
            msg = f"Expected {len(self.flows)} feature levels, got {len(features)}."
            raise ValueError(msg)
