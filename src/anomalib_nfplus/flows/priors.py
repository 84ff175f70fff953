# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Latent priors ``p(z)`` with identity covariances: standard normal, Gaussian mixture, hierarchical mixture.

This module is the one place where ``log p(z)`` is computed. Every prior is a :class:`Prior` with
``log_prob(z, y=None) -> (N,)`` on ``z`` of shape ``(N, D)``; ``y`` selects a class (or component) where the prior
has them. Mixture weights are stored as logits (``softmax`` gives the weights). Squared distances to the centres use the
expansion ``||z||^2 - 2 z.mu + ||mu||^2`` (one matrix product, no ``(N, K, D)`` tensor) after shifting both by
the mean centre, clamped at 0; its absolute error is about ``eps * (||z - c||^2 + ||mu - c||^2)``.
"""

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from .base import is_tracing
from .functional import gaussian_log_normalizer

__all__ = [
    "GaussianMixture",
    "HierarchicalGaussianMixture",
    "Prior",
    "StandardNormal",
    "equidistant_centres",
    "standard_normal_log_prob",
]


def standard_normal_log_prob(z: torch.Tensor, include_const: bool = True) -> torch.Tensor:
    """Log-density of ``N(0, I)`` summed over the last dimension.

    Args:
        z (torch.Tensor): Latents of shape ``(..., D)``.
        include_const (bool, optional): Add ``-D/2 log(2 pi)``. DifferNet's loss leaves it out; it does not
            change gradients. Defaults to ``True``.

    Returns:
        torch.Tensor: ``log N(z; 0, I)`` of shape ``z.shape[:-1]``.

    Example:
        >>> standard_normal_log_prob(torch.ones(2, 3), include_const=False)
        tensor([-1.5000, -1.5000])
    """
    log_prob = -0.5 * z.pow(2).sum(dim=-1)
    if include_const:
        log_prob = log_prob + gaussian_log_normalizer(z.shape[-1])
    return log_prob


def _check_latent(z: torch.Tensor, dim: int, owner: str) -> None:
    if z.dim() != 2 or z.shape[1] != dim:
        msg = f"{owner} expects z of shape (N, {dim}), got {tuple(z.shape)}."
        raise ValueError(msg)


def _unit_gaussian_log_prob(z: torch.Tensor, means: torch.Tensor, include_const: bool) -> torch.Tensor:
    """``log N(z_n; mu_m, I)`` for every pair: ``(N, D), (M, D) -> (N, M)``."""
    # Distances do not change under a common shift; centring on the mean centre keeps the norms in the
    # expansion small, hence its rounding error, when latents and centres sit far from the origin.
    origin = means.detach().mean(dim=0)
    z, means = z - origin, means - origin
    sq_dist = z.pow(2).sum(dim=1, keepdim=True) - 2.0 * z @ means.T + means.pow(2).sum(dim=1)
    log_prob = -0.5 * sq_dist.clamp_min(0.0)
    return log_prob + gaussian_log_normalizer(z.shape[1]) if include_const else log_prob


def _parameter_or_buffer(module: nn.Module, name: str, value: torch.Tensor, learn: bool) -> None:
    if learn:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def _validate_labels(y: torch.Tensor, n: int | None, n_classes: int) -> None:
    """Check that ``y`` is an integer vector (of length ``n`` if given) with values in ``[0, n_classes)``."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool or y.dim() != 1:
        msg = f"Class labels must be a 1-D integer tensor, got dtype {y.dtype} and shape {tuple(y.shape)}."
        raise ValueError(msg)
    if n is not None and y.shape[0] != n:
        msg = f"Got {y.shape[0]} class labels for {n} latents."
        raise ValueError(msg)
    if y.numel():
        low, high = torch.stack(torch.aminmax(y)).tolist()  # one device-to-host copy
        if low < 0 or high >= n_classes:
            msg = f"Class labels must lie in [0, {n_classes}), got range [{low}, {high}]."
            raise ValueError(msg)


class Prior(nn.Module, ABC):
    """Base distribution ``p(z)`` of a flow, the contract every prior follows.

    - ``log_prob(z, y=None, *, include_const=None) -> (N,)`` on ``z`` of shape ``(N, D)``.
    - ``y`` (``(N,)`` integer labels) selects the class-conditional density ``p(z | y)`` of priors that have
      classes; priors without classes refuse it.
    - ``include_const`` overrides, for one call, whether the Gaussian constant ``-D/2 log(2 pi)`` is included; by
      default the prior's own ``include_const`` decides. Leaving it out changes no gradient and no posterior.

    Args:
        dim (int): Latent dimension ``D``.
        include_const (bool, optional): Include the Gaussian constant by default. Defaults to ``True``.
    """

    def __init__(self, dim: int, include_const: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.include_const = include_const

    @abstractmethod
    def log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return ``log p(z)`` (or ``log p(z | y)``), shape ``(N,)``."""

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(z, y)

    def _const(self, include_const: bool | None) -> bool:
        return self.include_const if include_const is None else include_const

    def _plus_const(self, log_prob: torch.Tensor, include_const: bool | None) -> torch.Tensor:
        """Add the Gaussian constant to a mixture's log-density after its log-sum-exp, where it costs no precision."""
        return log_prob + gaussian_log_normalizer(self.dim) if self._const(include_const) else log_prob

    def _gaussians_log_prob(self, z: torch.Tensor, means: torch.Tensor, include_const: bool | None) -> torch.Tensor:
        """``log N(z; mu_m, I)`` for every row ``mu_m`` of ``means``, shape ``(N, M)``, after checking ``z``."""
        _check_latent(z, self.dim, type(self).__name__)
        return _unit_gaussian_log_prob(z, means, self._const(include_const))

    def _refuse_labels(self, y: torch.Tensor | None) -> None:
        if y is not None:
            msg = f"{type(self).__name__} has no classes, so log_prob takes no labels y."
            raise ValueError(msg)


class StandardNormal(Prior):
    """Standard normal prior ``N(0, I)``, the base distribution of DifferNet and CFLOW-AD.

    Args:
        dim (int): Latent dimension ``D``.
        include_const (bool, optional): Include ``-D/2 log(2 pi)``. Defaults to ``True``.

    Example:
        >>> StandardNormal(3, include_const=False).log_prob(torch.ones(2, 3))
        tensor([-1.5000, -1.5000])
    """

    def log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return ``log N(z; 0, I)`` of shape ``(N,)``; takes no labels."""
        self._refuse_labels(y)
        _check_latent(z, self.dim, type(self).__name__)
        return standard_normal_log_prob(z, include_const=self._const(include_const))

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"dim={self.dim}, include_const={self.include_const}"


class GaussianMixture(Prior):
    r"""Mixture of unit-covariance Gaussians, :math:`p(z) = \sum_k \pi_k N(z; \mu_k, I)`.

    With labels ``y``, :meth:`log_prob` is the density of the labelled component, :math:`N(z; \mu_y, I)`
    (a class-conditional Gaussian, one component per class).

    Args:
        n_components (int): Number of components ``K``.
        dim (int): Latent dimension ``D``.
        means (torch.Tensor | None, optional): Initial means ``(K, D)`` (copied). ``None`` draws them from
            ``N(0, I)`` with a generator seeded by ``seed``. Defaults to ``None``.
        learn_means (bool, optional): Means are parameters (else buffers). Defaults to ``True``.
        learn_weights (bool, optional): Logits are parameters (else buffers). Defaults to ``True``.
        include_const (bool, optional): Include the Gaussian constant. Defaults to ``True``.
        seed (int, optional): Seed of the random means. Defaults to ``0``.

    Example:
        >>> prior = GaussianMixture(3, 2)
        >>> prior.log_prob(torch.zeros(4, 2)).shape, prior.posterior(torch.zeros(4, 2)).shape
        (torch.Size([4]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        n_components: int,
        dim: int,
        means: torch.Tensor | None = None,
        learn_means: bool = True,
        learn_weights: bool = True,
        include_const: bool = True,
        seed: int = 0,
    ) -> None:
        if n_components < 1 or dim < 1:
            msg = f"GaussianMixture needs n_components >= 1 and dim >= 1, got {n_components} and {dim}."
            raise ValueError(msg)
        super().__init__(dim, include_const)
        if means is None:
            means = torch.randn(n_components, dim, generator=torch.Generator().manual_seed(seed))
        elif tuple(means.shape) != (n_components, dim):
            msg = f"means must have shape ({n_components}, {dim}), got {tuple(means.shape)}."
            raise ValueError(msg)
        self.n_components = n_components
        self.means: torch.Tensor
        self.logits: torch.Tensor
        _parameter_or_buffer(self, "means", means.detach().clone().to(torch.get_default_dtype()), learn_means)
        _parameter_or_buffer(self, "logits", torch.zeros(n_components), learn_weights)

    def log_weights(self) -> torch.Tensor:
        """Return ``log pi``, shape ``(K,)``."""
        return torch.log_softmax(self.logits, dim=0)

    def component_log_prob(self, z: torch.Tensor, include_const: bool | None = None) -> torch.Tensor:
        """Return ``log N(z; mu_k, I)`` for every component, shape ``(N, K)``."""
        return self._gaussians_log_prob(z, self.means, include_const)

    def _joint(self, z: torch.Tensor, include_const: bool | None = None) -> torch.Tensor:
        return self.component_log_prob(z, include_const) + self.log_weights()

    def log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return ``log sum_k pi_k N(z; mu_k, I)``, or ``log N(z; mu_y, I)`` given labels ``y``; shape ``(N,)``."""
        if y is None:
            return self._plus_const(torch.logsumexp(self._joint(z, False), dim=1), include_const)
        if not is_tracing():
            _validate_labels(y, z.shape[0], self.n_components)
        return self.component_log_prob(z, include_const).gather(1, y.unsqueeze(1)).squeeze(1)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """Return the responsibilities ``p(k | z)``, shape ``(N, K)``."""
        return torch.softmax(self._joint(z), dim=1)

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"n_components={self.n_components}, dim={self.dim}, include_const={self.include_const}"


def equidistant_centres(n_classes: int, dim: int, distance: float = 5.0) -> torch.Tensor:
    """Deterministic centres ``(Y, D)`` whose pairwise Euclidean distances all equal ``distance``.

    HGAD's construction (official ``model.py``): centre ``y`` is ``s`` on the ``m = D // Y`` coordinates
    ``{y + Y*k : k < m}`` and 0 elsewhere, so two centres differ on ``2m`` coordinates by ``s`` and
    ``s = distance / sqrt(2m)``. This matches the official init whenever ``floor(2D/Y) == 2*floor(D/Y)``
    (e.g. D=200, Y=15); the official ``s = 5 / sqrt(floor(2D/Y))`` is only approximately equidistant otherwise.

    Args:
        n_classes (int): Number of centres ``Y`` (at most ``dim``).
        dim (int): Latent dimension ``D``.
        distance (float, optional): Common pairwise distance. Defaults to ``5.0``.

    Returns:
        torch.Tensor: Centres of shape ``(Y, D)`` in the default dtype.

    Raises:
        ValueError: If ``n_classes > dim`` (this one-hot-block construction needs one coordinate per class).
    """
    if n_classes < 1 or n_classes > dim:
        msg = (
            f"Equidistant class centres need 1 <= n_classes <= dim, got n_classes={n_classes}, dim={dim}. "
            "Use a wider latent space (dim >= n_classes) or fewer classes."
        )
        raise ValueError(msg)
    m = dim // n_classes
    centres = torch.zeros(n_classes, dim)
    eye = torch.eye(n_classes) * (distance / math.sqrt(2 * m))
    for k in range(m):
        centres[:, n_classes * k : n_classes * (k + 1)] = eye
    return centres


class HierarchicalGaussianMixture(Prior):
    r"""HGAD's hierarchical prior: a mixture over classes of per-class mixtures, all with unit covariance.

    .. math::

        p(z) = \sum_{y} \pi_y \sum_{k} \pi_{y,k}\, N(z; \mu_{y,k}, I), \qquad
        \mu_{y,0} = \mu_y,\; \mu_{y,k} = \mu_y + \Delta\mu_{y,k}\ (k \ge 1)

    The inter-class centres :math:`\mu_y` start equidistant (:func:`equidistant_centres`, distance ``scale``),
    the offsets :math:`\Delta\mu` start as ``N(0, I)`` draws from a seeded generator and all logits start at 0.
    Per-class terms use one ``(N, Y*K)`` matrix product and then gather the true class, which is cheaper than
    gathering ``(N, K, D)`` centres per sample when ``D`` is large. :meth:`log_prob` is the label-free density, or
    with labels ``y`` the class's intra-class mixture (:meth:`class_log_prob`). The class posterior
    :math:`p(y \mid z)` (:meth:`class_posterior`, :meth:`class_log_posterior`) and its entropy
    (:meth:`class_entropy`) are computed on the class centres :math:`\mu_y` only.

    Args:
        n_classes (int): Number of classes ``Y`` (at most ``dim``).
        n_intra (int): Centres per class ``K`` (the main centre included).
        dim (int): Latent dimension ``D``.
        scale (float, optional): Initial pairwise distance of the class centres. Defaults to ``5.0``.
        learn_means (bool, optional): Centres and offsets are parameters (else buffers). Defaults to ``True``.
        learn_weights (bool, optional): Logits are parameters (else buffers). Defaults to ``True``.
        include_const (bool, optional): Include the Gaussian constant. Defaults to ``True``.
        seed (int, optional): Seed of the offsets. Defaults to ``0``.

    References:
        Yao et al., "Hierarchical Gaussian Mixture Normalizing Flow Modeling for Unified Anomaly Detection",
        ECCV 2024, https://arxiv.org/abs/2403.13349.

    Example:
        >>> prior = HierarchicalGaussianMixture(n_classes=3, n_intra=2, dim=6)
        >>> z, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 0])
        >>> prior.log_prob(z).shape, prior.class_log_prob(z, y).shape, prior.class_posterior(z).shape
        (torch.Size([4]), torch.Size([4]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        n_classes: int,
        n_intra: int,
        dim: int,
        scale: float = 5.0,
        learn_means: bool = True,
        learn_weights: bool = True,
        include_const: bool = True,
        seed: int = 0,
    ) -> None:
        if n_intra < 1:
            msg = f"n_intra (centres per class, main centre included) must be >= 1, got {n_intra}."
            raise ValueError(msg)
        super().__init__(dim, include_const)
        self.n_classes, self.n_intra = n_classes, n_intra
        offsets = torch.randn(n_classes, n_intra - 1, dim, generator=torch.Generator().manual_seed(seed))
        self.inter_means: torch.Tensor
        self.intra_offsets: torch.Tensor
        self.inter_logits: torch.Tensor
        self.intra_logits: torch.Tensor
        _parameter_or_buffer(self, "inter_means", equidistant_centres(n_classes, dim, scale), learn_means)
        _parameter_or_buffer(self, "intra_offsets", offsets.to(torch.get_default_dtype()), learn_means)
        _parameter_or_buffer(self, "inter_logits", torch.zeros(n_classes), learn_weights)
        _parameter_or_buffer(self, "intra_logits", torch.zeros(n_classes, n_intra), learn_weights)

    def validate_labels(self, y: torch.Tensor, n: int | None = None) -> None:
        """Check that ``y`` is an integer vector (of length ``n`` if given) with values in ``[0, Y)``.

        Reads tensor values, so the class methods call it only outside tracing.

        Args:
            y (torch.Tensor): Class indices.
            n (int | None, optional): Expected number of labels. Defaults to ``None`` (not checked).

        Raises:
            ValueError: If ``y`` has the wrong dtype, shape or range.
        """
        _validate_labels(y, n, self.n_classes)

    def inter_log_weights(self) -> torch.Tensor:
        """Return the class log-weights ``log pi_y``, shape ``(Y,)``."""
        return torch.log_softmax(self.inter_logits, dim=0)

    def inter_component_log_prob(self, z: torch.Tensor, include_const: bool | None = None) -> torch.Tensor:
        """Return ``log N(z; mu_y, I)`` for the class centres, shape ``(N, Y)``."""
        return self._gaussians_log_prob(z, self.inter_means, include_const)

    def inter_log_prob(self, z: torch.Tensor, include_const: bool | None = None) -> torch.Tensor:
        """Return the inter-class mixture ``log sum_y pi_y N(z; mu_y, I)``, shape ``(N,)`` (HGAD's L_g term)."""
        joint = self.inter_component_log_prob(z, False) + self.inter_log_weights()
        return self._plus_const(torch.logsumexp(joint, dim=1), include_const)

    def _class_logits(self, z: torch.Tensor, include_prior: bool, detach_weights: bool) -> torch.Tensor:
        logits = self.inter_component_log_prob(z)
        if include_prior:
            log_weights = self.inter_log_weights()
            logits = logits + (log_weights.detach() if detach_weights else log_weights)
        return logits

    def class_posterior(self, z: torch.Tensor, include_prior: bool = True) -> torch.Tensor:
        """Return ``p(y | z)`` over the class centres, shape ``(N, Y)``.

        Args:
            z (torch.Tensor): Latents ``(N, D)``.
            include_prior (bool, optional): Weight by ``pi_y``. HGAD's entropy loss and entropy score use
                ``softmax_y(-||z - mu_y||^2 / 2)``, i.e. ``False``. Defaults to ``True``.
        """
        return torch.softmax(self._class_logits(z, include_prior, detach_weights=False), dim=1)

    def class_log_posterior(
        self,
        z: torch.Tensor,
        include_prior: bool = True,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Return ``log p(y | z)`` over the class centres, shape ``(N, Y)``.

        Args:
            z (torch.Tensor): Latents ``(N, D)``.
            include_prior (bool, optional): Weight by ``pi_y`` (see :meth:`class_posterior`). Defaults to ``True``.
            detach_weights (bool, optional): Stop gradients to ``pi_y``, as HGAD's mutual-information term does so
                that it moves the latents and centres but not the class weights. Defaults to ``False``.
        """
        return torch.log_softmax(self._class_logits(z, include_prior, detach_weights), dim=1)

    def class_entropy(self, z: torch.Tensor, include_prior: bool = True) -> torch.Tensor:
        """Return the entropy ``-sum_y p(y|z) log p(y|z)`` of the class posterior, shape ``(N,)``.

        HGAD trains to lower it (``L_e``) and scores with it, both with ``include_prior=False``.
        """
        log_posterior = self.class_log_posterior(z, include_prior)
        return -(log_posterior.exp() * log_posterior).sum(dim=1)

    def intra_centres(self, detach_main: bool = False) -> torch.Tensor:
        """Return all centres ``(Y, K, D)``: the main centre, then main centre plus each offset.

        Args:
            detach_main (bool, optional): Stop gradients to the main centres, as HGAD does in its intra-class
                losses (stage 2), so that those losses move only the offsets. Defaults to ``False``.
        """
        main = self.inter_means.detach() if detach_main else self.inter_means
        main = main.unsqueeze(1)  # (Y, 1, D)
        return torch.cat([main, main + self.intra_offsets], dim=1)

    def _all_intra_log_prob(self, z: torch.Tensor, detach_main: bool, include_const: bool | None) -> torch.Tensor:
        """``log N(z; mu_{y,k}, I)`` for every class and centre, shape ``(N, Y, K)``."""
        centres = self.intra_centres(detach_main).reshape(-1, self.dim)  # (Y*K, D)
        return self._gaussians_log_prob(z, centres, include_const).unflatten(1, (self.n_classes, self.n_intra))

    def intra_component_log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        detach_main: bool = False,
        validate: bool = True,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return ``log N(z_n; mu_{y_n,k}, I)`` for the centres of each sample's class, shape ``(N, K)``.

        ``validate=False`` skips :meth:`validate_labels` (it waits for the device) for labels already checked, e.g.
        once per image batch rather than once per level and fiber chunk in training.
        """
        if validate and not is_tracing():
            self.validate_labels(y, z.shape[0])
        all_log_prob = self._all_intra_log_prob(z, detach_main, include_const)
        index = y.reshape(-1, 1, 1).expand(-1, 1, self.n_intra)
        return all_log_prob.gather(1, index).squeeze(1)

    def class_log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        detach_main: bool = False,
        validate: bool = True,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return the intra-class mixture of each sample's class, ``log sum_k pi_{y,k} N(z; mu_{y,k}, I)``."""
        component_log_prob = self.intra_component_log_prob(z, y, detach_main, validate, False)
        log_weights = torch.log_softmax(self.intra_logits, dim=1)[y]  # (N, K)
        return self._plus_const(torch.logsumexp(component_log_prob + log_weights, dim=1), include_const)

    def log_prob(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        include_const: bool | None = None,
    ) -> torch.Tensor:
        """Return ``log sum_y pi_y sum_k pi_{y,k} N(z; mu_{y,k}, I)``, shape ``(N,)``.

        Given labels ``y``, return :meth:`class_log_prob` instead (the density of each sample's class).
        """
        if y is not None:
            return self.class_log_prob(z, y, include_const=include_const)
        log_weights = self.inter_log_weights().unsqueeze(1) + torch.log_softmax(self.intra_logits, 1)
        joint = (self._all_intra_log_prob(z, False, False) + log_weights).flatten(1)
        return self._plus_const(torch.logsumexp(joint, dim=1), include_const)

    def extra_repr(self) -> str:
        """Summarise the configuration in ``repr``."""
        return f"n_classes={self.n_classes}, n_intra={self.n_intra}, dim={self.dim}, include_const={self.include_const}"
