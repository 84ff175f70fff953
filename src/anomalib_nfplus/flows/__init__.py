# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Normalizing-flow library shared by DifferNet, CflowAD and HGAD. Depends on torch only.

Every block maps ``x: (N, D)`` (and an optional condition ``cond: (N, Dc)``) to ``(y, log_det)`` with
``log_det: (N,)``; ``inverse`` returns minus the forward log-det (see :class:`InvertibleBlock`). Every prior
returns ``log p(z)`` of shape ``(N,)`` (see :class:`Prior`). A :class:`FlowDensity` puts the two together.

Contract
    - :class:`InvertibleBlock`: abstract base with ``forward``/``inverse`` and shape checks.
    - :func:`is_tracing`: ``True`` under TorchScript, ONNX export, ``torch.export`` or ``torch.compile``.

Coupling blocks
    - :class:`AllInOneCoupling`: FrEIA 0.2 ``AllInOneBlock`` maths (affine coupling, SOFTPLUS global affine,
      fixed rotation or permutation); CFLOW-AD and HGAD. Its fused path, ``condition_term`` then
      ``forward_with_term``, computes the condition's share of the subnet once per distinct condition.
    - :class:`DoubleAffineCoupling`: GLOW-style coupling of both halves with the atan clamp; DifferNet.

Fixed transforms
    - :class:`FixedPermutation`: random hard channel permutation (buffers), log-det 0.
    - :func:`random_permutation`, :func:`permutation_matrix`, :func:`random_rotation` (Haar on ``SO(D)``),
      :func:`make_generator`.

Containers and builders
    - :class:`SequentialFlow`: chain of blocks, summed log-dets, inverse in reverse order.
    - :func:`allinone_flow`: ``n_blocks`` x :class:`AllInOneCoupling` (CFLOW-AD: 8, HGAD: 12).
    - :func:`differnet_flow`: ``n_blocks`` x (:class:`FixedPermutation` + :class:`DoubleAffineCoupling`).

Per-position flows over feature maps (CFLOW-AD, HGAD)
    - :class:`PositionalFlows`: one :func:`allinone_flow` per feature level, conditioned on the positional
      encoding, all fibers in one call (condition term once per position), optional bfloat16 subnets in training.
    - :data:`SubnetPrecision`, :func:`subnet_dtype`, :func:`use_subnet_precision`: that subnet precision.
    - :func:`positional_encoding_2d`: CFLOW-AD's 2-D sin/cos encoding ``(dim, H, W)``.

Subnets
    - :data:`SubnetFactory`, :func:`allinone_subnet` (``Linear(i,2i)-ReLU-Linear(2i,o)``),
      :func:`mlp_subnet_factory` (DifferNet: width 2048, 3 hidden layers).

Priors (``log_prob(z, y=None) -> (N,)``; the only place ``log p(z)`` is computed)
    - :class:`Prior`: abstract base.
    - :class:`StandardNormal`, :func:`standard_normal_log_prob`.
    - :class:`GaussianMixture`: unit covariances, learnable means and logits.
    - :class:`HierarchicalGaussianMixture`: HGAD's inter-/intra-class mixture, with the class posterior and its
      entropy; :func:`equidistant_centres`.

Densities
    - :class:`FlowDensity`: flow + prior, ``log_prob(x, cond=None, y=None, per_dim=False)`` and ``nll``.
    - :func:`change_of_variables`: ``log p(z) + log|det J|`` (per dimension), the one place they are combined.
    - :func:`log_likelihood`: the same under a standard normal prior, for latents of any leading shape.

Functional
    - :data:`LOG_2PI`, :func:`gaussian_log_normalizer` (the only place the Gaussian constant is computed),
      :data:`ALLINONE_COEFF_SCALE`, :func:`allinone_clamp`, :func:`atan_clamp`.

Example:
    >>> from anomalib_nfplus.flows import FlowDensity, StandardNormal, allinone_flow, positional_encoding_2d
    >>> density = FlowDensity(allinone_flow(16, n_blocks=2, cond_dim=8), StandardNormal(16))
    >>> pos = positional_encoding_2d(8, 4, 4).flatten(1).T  # (H*W, 8)
    >>> density.log_prob(torch.randn(16, 16), pos, per_dim=True).shape
    torch.Size([16])
"""

from .base import InvertibleBlock, is_tracing
from .coupling import AllInOneCoupling, DoubleAffineCoupling
from .density import FlowDensity, change_of_variables, log_likelihood
from .functional import ALLINONE_COEFF_SCALE, LOG_2PI, allinone_clamp, atan_clamp, gaussian_log_normalizer
from .permutations import FixedPermutation, make_generator, permutation_matrix, random_permutation, random_rotation
from .positional import positional_encoding_2d
from .positional_flows import PositionalFlows, SubnetPrecision, subnet_dtype, use_subnet_precision
from .priors import (
    GaussianMixture,
    HierarchicalGaussianMixture,
    Prior,
    StandardNormal,
    equidistant_centres,
    standard_normal_log_prob,
)
from .sequential import SequentialFlow, allinone_flow, differnet_flow
from .subnets import SubnetFactory, allinone_subnet, mlp_subnet_factory

__all__ = [
    "ALLINONE_COEFF_SCALE",
    "LOG_2PI",
    "AllInOneCoupling",
    "DoubleAffineCoupling",
    "FixedPermutation",
    "FlowDensity",
    "GaussianMixture",
    "HierarchicalGaussianMixture",
    "InvertibleBlock",
    "PositionalFlows",
    "Prior",
    "SequentialFlow",
    "StandardNormal",
    "SubnetFactory",
    "SubnetPrecision",
    "allinone_clamp",
    "allinone_flow",
    "allinone_subnet",
    "atan_clamp",
    "change_of_variables",
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
    "subnet_dtype",
    "use_subnet_precision",
]
