# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One conditional flow per feature level, applied to every position at once (CFLOW-AD and HGAD).

Each level ``l`` has a chain of :class:`AllInOneCoupling` blocks over its ``C_l`` channels, conditioned on the 2-D
positional encoding of the position. All ``B * H * W`` fibers of a level go through the flow in one call: no Python
loop over positions or fiber chunks in the hot path.

FrEIA, and the official CFLOW-AD and HGAD code, concatenate the encoding ``c`` to every fiber, so each coupling's
first subnet layer costs ``(C/2 + D) * 2i`` per fiber. The encoding depends only on the position, so its term
``W_c c + b`` (:meth:`AllInOneCoupling.condition_term`) is computed once per position and broadcast over the batch
(:meth:`AllInOneCoupling.forward_with_term`); for EfficientNet-Lite0's 40-channel level that is about 85 % of the
first layer's work. In training mode the subnets' matrix products may run in bfloat16 (:func:`subnet_dtype`).
"""

from collections.abc import Iterator, Sequence
from typing import Literal, cast

import torch
from torch import nn

from .base import is_tracing
from .coupling import AllInOneCoupling
from .positional import positional_encoding_2d
from .sequential import SequentialFlow, allinone_flow

__all__ = ["PositionalFlows", "SubnetPrecision", "subnet_dtype", "use_subnet_precision"]

#: Precision of the coupling subnets' matrix products in training (see :func:`subnet_dtype`).
SubnetPrecision = Literal["auto", "float32", "bfloat16"]


def subnet_dtype(precision: SubnetPrecision, device: torch.device) -> torch.dtype | None:
    """``torch.bfloat16`` or ``None`` (float32) for ``precision`` on ``device``; ``"auto"`` asks the hardware.

    ``"auto"`` picks bfloat16 where it is computed natively (CPUs with AVX512-BF16 or AMX, bfloat16 GPUs), where
    the subnets' matrix products are faster; elsewhere bfloat16 would be emulated and slower.
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

    Example:
        >>> flows = PositionalFlows([8, 16], n_blocks=2, cond_dim=8)
        >>> levels = flows([torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)])
        >>> [(tuple(z.shape), tuple(log_det.shape)) for z, log_det in levels]
        [((2, 4, 4, 8), (2, 4, 4)), ((2, 2, 2, 16), (2, 2, 2))]
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
        if is_tracing():
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
        flow = cast(SequentialFlow, self.flows[index])
        for block in cast("Sequence[AllInOneCoupling]", flow.blocks):  # allinone_flow chains only these
            term = block.condition_term(cond)  # (P, hidden)
            if positions is not None:
                term = term[positions]  # (N, hidden)
            x, block_log_det = block.forward_with_term(x, term, dtype)
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
