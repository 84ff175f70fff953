# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Affine coupling blocks: FrEIA 0.2's all-in-one block (CFLOW-AD, HGAD) and DifferNet's double coupling."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import InvertibleBlock
from .functional import ALLINONE_COEFF_SCALE, allinone_clamp, atan_clamp
from .permutations import make_generator, permutation_matrix, random_permutation, random_rotation
from .subnets import SubnetFactory, allinone_subnet, mlp_subnet_factory

__all__ = ["AllInOneCoupling", "DoubleAffineCoupling"]

# FrEIA's SOFTPLUS global scale is 0.1 * softplus_{beta=0.5}(gamma); see AllInOneCoupling.global_scaling().
_SOFTPLUS_BETA = 0.5
_GLOBAL_SCALE_FACTOR = 0.1


def _with_cond(h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the condition to a subnet input (conditioning by concatenation, as FrEIA does)."""
    return h if cond is None else torch.cat([h, cond], dim=1)


def _check_coupling_args(dim: int, clamp_alpha: float) -> None:
    if dim < 2:
        msg = f"A coupling block splits the channels in two and needs dim >= 2, got dim={dim}."
        raise ValueError(msg)
    if not clamp_alpha > 0:
        msg = f"clamp_alpha must be > 0, got {clamp_alpha!r}."
        raise ValueError(msg)


class AllInOneCoupling(InvertibleBlock):
    r"""Affine coupling + global affine ("ActNorm") + fixed channel mixing, as FrEIA 0.2's ``AllInOneBlock``.

    Same maths as ``FrEIA.modules.AllInOneBlock`` (PyPI 0.2) with ``global_affine_type='SOFTPLUS'``, no GIN, no
    learned Householder and no reverse permutation, i.e. the block of CFLOW-AD and HGAD. With
    :math:`x = [x_1, x_2]`, :math:`x_1` the first :math:`\lceil D/2 \rceil` channels and :math:`a` the output
    of the subnet on :math:`[x_1, c]`:

    .. math::

        s &= \alpha \tanh(0.1\, a_s), \qquad t = 0.1\, a_t \\
        u &= [x_1,\; x_2 \odot e^{s} + t] \\
        y &= W (g \odot u + b), \qquad g = 0.1\,\mathrm{softplus}_{\beta=0.5}(\gamma) \\
        \log|\det J| &= \textstyle\sum s + \sum \log g

    :math:`\gamma` is initialised so that :math:`g` = ``global_affine_init``, :math:`b = 0`. :math:`W` is a
    random rotation from :math:`SO(D)` (``permute_soft=True``) or a permutation matrix, stored once as a buffer;
    being orthogonal, its inverse is its transpose, so the inverse pass needs no matrix inversion (and no second
    buffer that checkpoints, and DDP's buffer broadcasts, would carry as well).

    Args:
        dim (int): Channels ``D`` (at least 2).
        cond_dim (int, optional): Condition width, concatenated to the subnet input. Defaults to ``0``.
        subnet_factory (SubnetFactory, optional): Builds the subnet ``(ceil(D/2) + cond_dim) -> 2 floor(D/2)``.
            Defaults to :func:`allinone_subnet`.
        clamp_alpha (float, optional): Log-scale bound ``alpha`` (FrEIA ``affine_clamping``). Defaults to ``1.9``.
        permute_soft (bool, optional): Random rotation instead of a hard permutation. Defaults to ``True``.
        global_affine_init (float, optional): Initial global scale ``g`` (> 0). Defaults to ``1.0``.
        seed (int | None, optional): Seed of ``W`` (from torch's global RNG if neither seed nor generator is
            given). Defaults to ``None``.
        generator (torch.Generator | None, optional): Generator to draw ``W`` from instead. Defaults to ``None``.

    References:
        Ardizzone et al., "Framework for Easily Invertible Architectures (FrEIA)", https://github.com/vislearn/FrEIA.
        Gudovskiy et al., "CFLOW-AD", WACV 2022, https://arxiv.org/abs/2107.12571.

    Example:
        >>> block = AllInOneCoupling(6, cond_dim=4, seed=0)
        >>> x, c = torch.randn(10, 6), torch.randn(10, 4)
        >>> y, log_det = block(x, c)
        >>> torch.allclose(block.inverse(y, c)[0], x, atol=1e-5), log_det.shape
        (True, torch.Size([10]))
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
        *,
        subnet_factory: SubnetFactory = allinone_subnet,
        clamp_alpha: float = 1.9,
        permute_soft: bool = True,
        global_affine_init: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dim, cond_dim)
        _check_coupling_args(dim, clamp_alpha)
        if not global_affine_init > 0:
            msg = f"global_affine_init must be > 0 (it is a scale), got {global_affine_init!r}."
            raise ValueError(msg)
        self.clamp_alpha = float(clamp_alpha)
        self.permute_soft = permute_soft
        self.split = (dim - dim // 2, dim // 2)

        rng = make_generator(seed, generator)
        w = random_rotation(dim, rng) if permute_soft else permutation_matrix(random_permutation(dim, rng))
        self.w_perm: torch.Tensor
        self.register_buffer("w_perm", w)

        # Inverse of g = 0.1 * softplus_{0.5}(gamma) at g = global_affine_init.
        gamma0 = math.log(math.expm1(_SOFTPLUS_BETA * global_affine_init / _GLOBAL_SCALE_FACTOR)) / _SOFTPLUS_BETA
        self.global_scale = nn.Parameter(torch.full((dim,), gamma0))
        self.global_offset = nn.Parameter(torch.zeros(dim))
        self.subnet = subnet_factory(self.split[0] + cond_dim, 2 * self.split[1])

    def global_scaling(self) -> torch.Tensor:
        """Return the positive per-channel scale ``g = 0.1 * softplus_{beta=0.5}(global_scale)``, shape ``(D,)``."""
        return _GLOBAL_SCALE_FACTOR * F.softplus(self.global_scale, beta=_SOFTPLUS_BETA)

    def _coefficients(self, x1: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clamped log-scale ``s`` and shift ``t`` for the active half, each ``(N, floor(D/2))``."""
        a = self.subnet(_with_cond(x1, cond))
        a_s, a_t = a[:, : self.split[1]], a[:, self.split[1] :]
        return allinone_clamp(a_s, self.clamp_alpha), ALLINONE_COEFF_SCALE * a_t

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Coupling, then global affine, then channel mixing."""
        self.check_inputs(x, cond)
        x1, x2 = torch.split(x, self.split, dim=1)
        s, t = self._coefficients(x1, cond)
        u = torch.cat([x1, x2 * torch.exp(s) + t], dim=1)
        scale = self.global_scaling()
        y = F.linear(u * scale + self.global_offset, self.w_perm)
        return y, s.sum(dim=1) + torch.log(scale).sum()

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Undo mixing (transpose), global affine, then coupling."""
        self.check_inputs(y, cond)
        scale = self.global_scaling()
        u = (y @ self.w_perm - self.global_offset) / scale  # forward right-multiplies by W^T; W is orthogonal
        x1, u2 = torch.split(u, self.split, dim=1)
        s, t = self._coefficients(x1, cond)
        x = torch.cat([x1, (u2 - t) * torch.exp(-s)], dim=1)
        return x, -(s.sum(dim=1) + torch.log(scale).sum())

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"{super().extra_repr()}, clamp_alpha={self.clamp_alpha}, permute_soft={self.permute_soft}"


class DoubleAffineCoupling(InvertibleBlock):
    r"""DifferNet's GLOW-style double affine coupling: both halves are transformed in one block.

    With :math:`x = [x_1, x_2]`, :math:`x_1` the first :math:`\lfloor D/2 \rfloor` channels, and
    :math:`c(s) = (2\alpha/\pi)\arctan(s/\alpha)` (paper Eq. 2):

    .. math::

        y_1 &= x_1 \odot e^{c(s_2([x_2, h]))} + t_2([x_2, h]) \\
        y_2 &= x_2 \odot e^{c(s_1([y_1, h]))} + t_1([y_1, h]) \\
        \log|\det J| &= \textstyle\sum c(s_1) + \sum c(s_2)

    ``subnet2`` (on :math:`x_2`) and ``subnet1`` (on :math:`y_1`) each output scale and shift stacked, ``h`` is
    the optional condition. The log-det comes from the same pass (the original code re-ran the subnets). The
    original's hard output clamp to +-1e6 is not reproduced: it breaks invertibility and never binds in practice.

    Args:
        dim (int): Channels ``D`` (at least 2).
        cond_dim (int, optional): Condition width, concatenated to both subnet inputs. Defaults to ``0``.
        subnet_factory (SubnetFactory | None, optional): Builds both subnets. ``None`` gives DifferNet's MLP,
            ``mlp_subnet_factory(hidden=2048, depth=3)``. Defaults to ``None``.
        clamp_alpha (float, optional): Log-scale bound ``alpha``. Defaults to ``3.0``.

    References:
        Rudolph et al., "Same Same But DifferNet", WACV 2021, https://arxiv.org/abs/2008.12577.

    Example:
        >>> block = DoubleAffineCoupling(6, subnet_factory=mlp_subnet_factory(16, 2))
        >>> x = torch.randn(10, 6)
        >>> y, log_det = block(x)
        >>> torch.allclose(block.inverse(y)[0], x, atol=1e-5), log_det.shape
        (True, torch.Size([10]))
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
        *,
        subnet_factory: SubnetFactory | None = None,
        clamp_alpha: float = 3.0,
    ) -> None:
        super().__init__(dim, cond_dim)
        _check_coupling_args(dim, clamp_alpha)
        factory = subnet_factory if subnet_factory is not None else mlp_subnet_factory(hidden=2048, depth=3)
        self.clamp_alpha = float(clamp_alpha)
        self.split = (dim // 2, dim - dim // 2)
        self.subnet1 = factory(self.split[0] + cond_dim, 2 * self.split[1])
        self.subnet2 = factory(self.split[1] + cond_dim, 2 * self.split[0])

    def _coefficients(
        self,
        subnet: nn.Module,
        h: torch.Tensor,
        cond: torch.Tensor | None,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clamped log-scale and shift, each ``(N, width)``, predicted by ``subnet`` from ``[h, cond]``."""
        r = subnet(_with_cond(h, cond))
        return atan_clamp(r[:, :width], self.clamp_alpha), r[:, width:]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform ``x1`` from ``x2``, then ``x2`` from the new ``y1``."""
        self.check_inputs(x, cond)
        x1, x2 = torch.split(x, self.split, dim=1)
        s2, t2 = self._coefficients(self.subnet2, x2, cond, self.split[0])
        y1 = x1 * torch.exp(s2) + t2
        s1, t1 = self._coefficients(self.subnet1, y1, cond, self.split[1])
        y2 = x2 * torch.exp(s1) + t1
        return torch.cat([y1, y2], dim=1), s1.sum(dim=1) + s2.sum(dim=1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Recover ``x2`` from ``y1``, then ``x1`` from ``x2``."""
        self.check_inputs(y, cond)
        y1, y2 = torch.split(y, self.split, dim=1)
        s1, t1 = self._coefficients(self.subnet1, y1, cond, self.split[1])
        x2 = (y2 - t1) * torch.exp(-s1)
        s2, t2 = self._coefficients(self.subnet2, x2, cond, self.split[0])
        x1 = (y1 - t2) * torch.exp(-s2)
        return torch.cat([x1, x2], dim=1), -(s1.sum(dim=1) + s2.sum(dim=1))

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"{super().extra_repr()}, clamp_alpha={self.clamp_alpha}"
