# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Fixed random channel mixing: hard permutations and random rotations (soft permutations).

Coupling blocks only transform half of the channels, so flows mix channels between blocks. Both kinds of mixing
here are drawn once from a seeded ``torch.Generator`` (never NumPy/SciPy) and stored as buffers, so that a
checkpoint reproduces them exactly. Both have ``|det| = 1``, hence a zero log-determinant.
"""

import torch

from .base import InvertibleBlock

__all__ = ["FixedPermutation", "make_generator", "permutation_matrix", "random_permutation", "random_rotation"]


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """Return the generator to draw fixed random quantities from.

    Args:
        seed (int | None, optional): Seed of a fresh CPU generator. ``None`` draws the seed from torch's global
            RNG, so blocks built by hand without seeds get different mixings, reproducibly under
            ``torch.manual_seed`` / ``seed_everything``. Defaults to ``None``.
        generator (torch.Generator | None, optional): Use this generator (its state advances). Defaults to
            ``None``.

    Returns:
        torch.Generator: ``generator`` if given, else a new generator seeded with ``seed``.

    Raises:
        ValueError: If both ``seed`` and ``generator`` are given.
    """
    if generator is not None:
        if seed is not None:
            msg = f"Pass either seed ({seed}) or generator, not both."
            raise ValueError(msg)
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator().manual_seed(seed)


def random_permutation(dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw a uniformly random permutation of ``range(dim)``.

    Args:
        dim (int): Number of channels.
        generator (torch.Generator | None, optional): Source of randomness; the global RNG if ``None``.
            Defaults to ``None``.

    Returns:
        torch.Tensor: ``LongTensor`` of shape ``(dim,)``.
    """
    return torch.randperm(dim, generator=generator)


def permutation_matrix(perm: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Matrix ``P`` with ``P @ x == x[perm]``, i.e. ``P[i, perm[i]] = 1``.

    Args:
        perm (torch.Tensor): Permutation indices of shape ``(D,)``.
        dtype (torch.dtype | None, optional): Matrix dtype; the default dtype if ``None``. Defaults to ``None``.

    Returns:
        torch.Tensor: Permutation matrix of shape ``(D, D)``.
    """
    dim = perm.numel()
    matrix = torch.zeros(dim, dim, dtype=dtype or torch.get_default_dtype())
    matrix[torch.arange(dim), perm] = 1.0
    return matrix


def random_rotation(
    dim: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw a Haar-random rotation from ``SO(dim)``.

    The QR decomposition of a standard Gaussian matrix, with the signs of ``diag(R)`` moved into ``Q``, is
    Haar-distributed on ``O(dim)``; flipping the first column when ``det Q = -1`` maps it onto ``SO(dim)``.
    Computed in float64 so that the matrix is orthogonal to float64 precision before the cast.

    Args:
        dim (int): Matrix size ``D``.
        generator (torch.Generator | None, optional): Source of randomness; the global RNG if ``None``.
            Defaults to ``None``.
        dtype (torch.dtype | None, optional): Output dtype; the default dtype if ``None``. Defaults to ``None``.

    Returns:
        torch.Tensor: Orthogonal matrix of shape ``(D, D)`` with determinant +1.
    """
    gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    diag_sign = torch.sign(torch.diagonal(r))
    q = q * torch.where(diag_sign == 0, torch.ones_like(diag_sign), diag_sign)
    if torch.linalg.slogdet(q).sign < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype or torch.get_default_dtype())


class FixedPermutation(InvertibleBlock):
    """Fixed random permutation of the channels, ``y = x[:, perm]``, with ``log_det = 0``.

    DifferNet puts one before every coupling block. The permutation is a buffer; its inverse is computed when
    the inverse pass needs it, so checkpoints carry it once.

    Args:
        dim (int): Number of channels ``D``.
        seed (int | None, optional): Seed of the permutation (from torch's global RNG if neither seed nor
            generator is given).
            Defaults to ``None``.
        generator (torch.Generator | None, optional): Generator to draw from instead of ``seed``. Defaults to
            ``None``.

    Example:
        >>> block = FixedPermutation(4, seed=0)
        >>> y, log_det = block(torch.arange(4.0).unsqueeze(0))
        >>> torch.equal(block.inverse(y)[0], torch.arange(4.0).unsqueeze(0)), log_det.shape
        (True, torch.Size([1]))
    """

    def __init__(self, dim: int, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__(dim, cond_dim=0)
        perm = random_permutation(dim, make_generator(seed, generator))
        self.perm: torch.Tensor
        self.register_buffer("perm", perm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Permute the channels; log-det 0."""
        self.check_inputs(x, cond)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Undo the permutation; log-det 0."""
        self.check_inputs(y, cond)
        return y[:, torch.argsort(self.perm)], y.new_zeros(y.shape[0])
