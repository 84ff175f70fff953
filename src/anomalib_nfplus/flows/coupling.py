# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Affine coupling blocks: FrEIA 0.2's all-in-one block (CFLOW-AD, HGAD) and DifferNet's double coupling."""

import math
from typing import cast

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


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


def _checked_subnet(subnet: nn.Module) -> nn.Sequential:
    """Refuse a subnet the fused path of :class:`AllInOneCoupling` cannot split (see its docstring)."""
    layers = list(subnet) if isinstance(subnet, nn.Sequential) else []
    parametrised = [layer for layer in layers if any(True for _ in layer.parameters(recurse=True))]
    if (
        not isinstance(subnet, nn.Sequential)
        or not layers
        or not isinstance(layers[0], nn.Linear)
        or not all(isinstance(m, nn.Linear) for m in parametrised)
    ):
        msg = (
            "AllInOneCoupling needs an nn.Sequential subnet that starts with nn.Linear and has no parametrised "
            f"layers other than nn.Linear (e.g. allinone_subnet or mlp_subnet_factory), got {subnet}."
        )
        raise TypeError(msg)
    return subnet


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

    The condition enters only the subnet's first (linear) layer, and ``W [x_1; c] + b = W_x x_1 + (W_c c + b)``.
    :meth:`condition_term` computes ``W_c c + b`` and :meth:`forward_with_term` runs the block from it, so a caller
    whose conditions repeat (CFLOW-AD's and HGAD's positional encodings, shared by every image) computes the term
    once per distinct condition and broadcasts it; ``forward`` is exactly these two calls. The subnet must
    therefore be an ``nn.Sequential`` that starts with ``nn.Linear`` and whose other parametrised layers are
    ``nn.Linear`` too (true of :func:`allinone_subnet` and :func:`mlp_subnet_factory`); this is checked once, here.

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

        Fused path: one condition term for 3 positions, shared by a batch of 2 images (inputs ``(2, 3, 6)``):

        >>> term = block.condition_term(torch.randn(3, 4))  # (3, 12)
        >>> y, log_det = block.forward_with_term(torch.randn(2, 3, 6), term)
        >>> y.shape, log_det.shape
        (torch.Size([2, 3, 6]), torch.Size([2, 3]))
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
        self.subnet = _checked_subnet(subnet_factory(self.split[0] + cond_dim, 2 * self.split[1]))

    def global_scaling(self) -> torch.Tensor:
        """Return the positive per-channel scale ``g = 0.1 * softplus_{beta=0.5}(global_scale)``, shape ``(D,)``."""
        return _GLOBAL_SCALE_FACTOR * F.softplus(self.global_scale, beta=_SOFTPLUS_BETA)

    def condition_term(self, cond: torch.Tensor | None) -> torch.Tensor:
        """The condition's contribution ``W_c c + b`` to the subnet's first layer, shape ``(..., hidden)``.

        Args:
            cond (torch.Tensor | None): Conditions ``(..., cond_dim)``, any leading shape; ``None`` for an
                unconditional block (the term is then the bias ``b``).

        Returns:
            torch.Tensor: The term, to be passed (or broadcast) to :meth:`forward_with_term`.
        """
        first = cast(nn.Linear, self.subnet[0])  # checked by _checked_subnet
        if cond is None:
            return first.bias if first.bias is not None else first.weight.new_zeros(first.out_features)
        return F.linear(cond, first.weight[:, self.split[0] :], first.bias)

    def forward_with_term(
        self,
        x: torch.Tensor,
        cond_term: torch.Tensor,
        subnet_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coupling, then global affine, then channel mixing, with the condition given as :meth:`condition_term`.

        Shapes are not checked here (``forward`` checks them), so any leading shape works.

        Args:
            x (torch.Tensor): Inputs ``(..., D)``.
            cond_term (torch.Tensor): ``W_c c + b``, broadcastable to ``(..., hidden)``.
            subnet_dtype (torch.dtype | None, optional): Run the subnet's matrix products in this precision (e.g.
                ``torch.bfloat16`` in training); the coupling, the mixing and ``log|det J|`` stay in ``x``'s
                precision. Defaults to ``None`` (all in ``x``'s precision).

        Returns:
            tuple[torch.Tensor, torch.Tensor]: ``y`` of the shape of ``x`` and ``log|det J|`` of shape
            ``x.shape[:-1]``.
        """
        x1, x2 = x[..., : self.split[0]], x[..., self.split[0] :]
        s, t = self._coefficients(x1, cond_term, subnet_dtype)
        u = torch.cat([x1, x2 * torch.exp(s) + t], dim=-1)
        scale = self.global_scaling()
        # W (g * u + b) as one affine map: saves two elementwise passes over all inputs.
        y = F.linear(u, self.w_perm * scale, self.w_perm @ self.global_offset)
        return y, s.sum(dim=-1) + torch.log(scale).sum()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_with_term` of :meth:`condition_term`."""
        self.check_inputs(x, cond)
        return self.forward_with_term(x, self.condition_term(cond))

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Undo mixing (transpose), global affine, then coupling."""
        self.check_inputs(y, cond)
        scale = self.global_scaling()
        u = (y @ self.w_perm - self.global_offset) / scale  # forward right-multiplies by W^T; W is orthogonal
        x1, u2 = torch.split(u, list(self.split), dim=1)
        s, t = self._coefficients(x1, self.condition_term(cond))
        x = torch.cat([x1, (u2 - t) * torch.exp(-s)], dim=1)
        return x, -(s.sum(dim=1) + torch.log(scale).sum())

    def _coefficients(
        self,
        x1: torch.Tensor,
        cond_term: torch.Tensor,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clamped log-scale ``s`` and shift ``t`` for the passive half, each ``(..., floor(D/2))``."""
        a = self._subnet(x1, cond_term, dtype)
        a_s, a_t = a[..., : self.split[1]], a[..., self.split[1] :]
        return allinone_clamp(a_s, self.clamp_alpha), ALLINONE_COEFF_SCALE * a_t

    def _subnet(self, x1: torch.Tensor, cond_term: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        """The subnet on ``[x1, c]`` from ``x1`` and ``W_c c + b``; with ``dtype``, its matrix products in ``dtype``."""
        first, *rest = self.subnet
        weight = cast(nn.Linear, first).weight[:, : self.split[0]]  # checked by _checked_subnet
        if dtype is None:
            h = F.linear(x1, weight) + cond_term
            for layer in rest:
                h = layer(h)
            return h
        h = F.linear(x1.to(dtype), weight.to(dtype)) + cond_term.to(dtype)
        for layer in rest:
            h = (
                F.linear(h, layer.weight.to(dtype), _cast(layer.bias, dtype))
                if isinstance(layer, nn.Linear)
                else layer(h)
            )
        return h.to(x1.dtype)

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
        x1, x2 = torch.split(x, list(self.split), dim=1)
        s2, t2 = self._coefficients(self.subnet2, x2, cond, self.split[0])
        y1 = x1 * torch.exp(s2) + t2
        s1, t1 = self._coefficients(self.subnet1, y1, cond, self.split[1])
        y2 = x2 * torch.exp(s1) + t1
        return torch.cat([y1, y2], dim=1), s1.sum(dim=1) + s2.sum(dim=1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Recover ``x2`` from ``y1``, then ``x1`` from ``x2``."""
        self.check_inputs(y, cond)
        y1, y2 = torch.split(y, list(self.split), dim=1)
        s1, t1 = self._coefficients(self.subnet1, y1, cond, self.split[1])
        x2 = (y2 - t1) * torch.exp(-s1)
        s2, t2 = self._coefficients(self.subnet2, x2, cond, self.split[0])
        x1 = (y1 - t2) * torch.exp(-s2)
        return torch.cat([x1, x2], dim=1), -(s1.sum(dim=1) + s2.sum(dim=1))

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"{super().extra_repr()}, clamp_alpha={self.clamp_alpha}"
