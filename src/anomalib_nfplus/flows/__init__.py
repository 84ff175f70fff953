# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Normalizing-flow toolkit shared by DifferNet, CflowAD and HGAD. Depends on torch only.

Every block maps ``x: (N, D)`` (and an optional condition ``cond: (N, Dc)``) to ``(y, log_det)`` with
``log_det: (N,)``; ``inverse`` returns minus the forward log-det (see :class:`InvertibleBlock`).

Contract
    - :class:`InvertibleBlock`: abstract base with ``forward``/``inverse`` and shape checks.

Coupling blocks
    - :class:`AllInOneCoupling`: FrEIA 0.2 ``AllInOneBlock`` maths (affine coupling, SOFTPLUS global affine,
      fixed rotation or permutation); CFLOW-AD and HGAD.
    - :class:`DoubleAffineCoupling`: GLOW-style coupling of both halves with the atan clamp; DifferNet.

Fixed transforms
    - :class:`FixedPermutation`: random hard channel permutation (buffers), log-det 0.
    - :func:`random_permutation`, :func:`permutation_matrix`, :func:`random_rotation` (Haar on ``SO(D)``),
      :func:`make_generator`.

Containers and builders
    - :class:`SequentialFlow`: chain of blocks, summed log-dets, inverse in reverse order.
    - :func:`allinone_flow`: ``n_blocks`` x :class:`AllInOneCoupling` (CFLOW-AD: 8, HGAD: 12).
    - :func:`differnet_flow`: ``n_blocks`` x (:class:`FixedPermutation` + :class:`DoubleAffineCoupling`).

Subnets
    - :data:`SubnetFactory`, :func:`allinone_subnet` (``Linear(i,2i)-ReLU-Linear(2i,o)``),
      :func:`mlp_subnet_factory` (DifferNet: width 2048, 3 hidden layers).

Priors (``log_prob(z) -> (N,)``)
    - :class:`StandardNormal`.
    - :class:`GaussianMixture`: unit covariances, learnable means and logits.
    - :class:`HierarchicalGaussianMixture`: HGAD's inter-/intra-class mixture; :func:`equidistant_centres`.

Functional
    - :data:`LOG_2PI`, :func:`gaussian_log_normalizer` (the only place the Gaussian constant is computed),
      :func:`standard_normal_log_prob`, :func:`log_likelihood`, :func:`allinone_clamp`, :func:`atan_clamp`.

Conditioning
    - :func:`positional_encoding_2d`: CFLOW-AD's 2-D sin/cos encoding ``(dim, H, W)``.

Example:
    >>> import torch
    >>> from anomalib_nfplus.flows import StandardNormal, allinone_flow, positional_encoding_2d
    >>> flow = allinone_flow(16, n_blocks=2, cond_dim=8)
    >>> pos = positional_encoding_2d(8, 4, 4).flatten(1).T  # (H*W, 8)
    >>> z, log_det = flow(torch.randn(16, 16), pos)
    >>> (StandardNormal(16).log_prob(z) + log_det).shape
    torch.Size([16])
"""

from .base import InvertibleBlock, is_tracing
from .coupling import AllInOneCoupling, DoubleAffineCoupling
from .functional import (
    ALLINONE_COEFF_SCALE,
    LOG_2PI,
    allinone_clamp,
    atan_clamp,
    gaussian_log_normalizer,
    log_likelihood,
    standard_normal_log_prob,
)
from .permutations import FixedPermutation, make_generator, permutation_matrix, random_permutation, random_rotation
from .positional import positional_encoding_2d
from .priors import GaussianMixture, HierarchicalGaussianMixture, StandardNormal, equidistant_centres
from .sequential import SequentialFlow, allinone_flow, differnet_flow
from .subnets import SubnetFactory, allinone_subnet, mlp_subnet_factory

__all__ = [
    "ALLINONE_COEFF_SCALE",
    "LOG_2PI",
    "AllInOneCoupling",
    "DoubleAffineCoupling",
    "FixedPermutation",
    "GaussianMixture",
    "HierarchicalGaussianMixture",
    "InvertibleBlock",
    "SequentialFlow",
    "StandardNormal",
    "SubnetFactory",
    "allinone_clamp",
    "allinone_flow",
    "allinone_subnet",
    "atan_clamp",
    "differnet_flow",
    "equidistant_centres",
    "gaussian_log_normalizer",
    "is_tracing",
    "log_likelihood",
    "make_generator",
    "mlp_subnet_factory",
    "permutation_matrix",
    "positional_encoding_2d",
    "random_permutation",
    "random_rotation",
    "standard_normal_log_prob",
]
