# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's training objective, one method per term (arXiv 2403.13349, Sec. 3; official ``model.py``).

For one feature level with latents ``z`` (N, D), log-determinants ``log_det`` (N,) and class labels ``y`` (N,),
with ``d_y = -||z - mu_y||^2 / 2`` the unnormalised inter-class log-densities:

- ``L_g``  inter-class mixture NLL per dimension, ``[-logsumexp_y(d_y + log pi_y) - log_det] / D``;
- ``L_e``  entropy of ``softmax_y(d_y)`` (class weights NOT included, as in the paper and the official code);
- ``L_mi`` mutual-information surrogate ``sum_y y~_y [log softmax_y(d_y + log pi~_y) - log pi~_y]`` with detached
  weights ``pi~`` and label-smoothed one-hot ``y~``; it is *maximised*, hence subtracted;
- ``L_g_intra`` intra-class mixture NLL per dimension of the true class, main centres detached;
- ``L_z``  ``-logsigmoid`` of the per-dimension log-likelihood under that intra-class mixture (Gaussian constant
  included), the CFLOW-style term of the official code.

``total = lambda_inter * L_g - lambda_mi * L_mi + L_e`` and, in the intra-class stage, ``+ L_g_intra + L_z``.
Every term is the mean over the positions given for a level (all of them, or one chunk); the levels are summed.
The densities, the class posterior and its entropy come from the prior
(:class:`~anomalib_nfplus.flows.HierarchicalGaussianMixture`), combined with the log-determinant by
:func:`~anomalib_nfplus.flows.change_of_variables`.
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.flows import HierarchicalGaussianMixture, change_of_variables

__all__ = ["HGADLoss"]


class HGADLoss(nn.Module):
    """HGAD's loss over all feature levels.

    Args:
        lambda_inter (float, optional): Weight of ``L_g``. Defaults to ``1.0`` (official ``lambda1``).
        lambda_mi (float, optional): Weight of ``-L_mi``. Defaults to ``100.0`` (official ``lambda2``).
        label_smoothing (float, optional): One-hot smoothing of the MI labels. Defaults to ``0.02``.
    """

    def __init__(self, lambda_inter: float = 1.0, lambda_mi: float = 100.0, label_smoothing: float = 0.02) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            msg = f"label_smoothing must lie in [0, 1), got {label_smoothing}."
            raise ValueError(msg)
        self.lambda_inter, self.lambda_mi, self.label_smoothing = lambda_inter, lambda_mi, label_smoothing

    # --- the terms, each per position (N,) -------------------------------------------------------------------

    @staticmethod
    def inter_nll(prior: HierarchicalGaussianMixture, z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """``L_g`` per position: NLL per dimension under the inter-class mixture."""
        return -change_of_variables(prior.inter_log_prob(z), log_det, prior.dim)

    @staticmethod
    def entropy(prior: HierarchicalGaussianMixture, z: torch.Tensor) -> torch.Tensor:
        """``L_e`` per position: entropy of ``softmax_y(d_y)``, class weights not included."""
        return prior.class_entropy(z, include_prior=False)

    @staticmethod
    def mutual_information(
        prior: HierarchicalGaussianMixture,
        z: torch.Tensor,
        soft_labels: torch.Tensor,
    ) -> torch.Tensor:
        """``L_mi`` per position: ``sum_y y~_y [log p(y|z) - log pi_y]`` with the weights detached."""
        log_posterior = prior.class_log_posterior(z, include_prior=True, detach_weights=True)
        return ((log_posterior - prior.inter_log_weights().detach()) * soft_labels).sum(dim=1)

    @staticmethod
    def intra_nll(class_log_density: torch.Tensor, log_det: torch.Tensor, dim: int) -> torch.Tensor:
        """``L_g_intra`` per position from the class's intra-class mixture density (no constant)."""
        return -change_of_variables(class_log_density, log_det, dim)

    @staticmethod
    def intra_likelihood(class_log_density: torch.Tensor, log_det: torch.Tensor, dim: int) -> torch.Tensor:
        """``L_z`` per position: ``-logsigmoid(log p(x) / D)`` from the class's normalised mixture density."""
        return -F.logsigmoid(change_of_variables(class_log_density, log_det, dim))

    def soft_labels(self, y: torch.Tensor, n_classes: int) -> torch.Tensor:
        """One-hot labels smoothed as in the official code: ``onehot * (1 - s) + s / Y``."""
        onehot = F.one_hot(y, n_classes).to(torch.get_default_dtype())
        return onehot * (1.0 - self.label_smoothing) + self.label_smoothing / n_classes

    # --- composition -------------------------------------------------------------------------------------------

    def level_terms(
        self,
        prior: HierarchicalGaussianMixture,
        z: torch.Tensor,
        log_det: torch.Tensor,
        y: torch.Tensor,
        intra: bool,
    ) -> dict[str, torch.Tensor]:
        """Mean of every active term over the ``N`` positions of one level (``z`` (N, D), ``y`` (N,))."""
        terms = {
            "L_g": self.inter_nll(prior, z, log_det),  # HGAD's prior leaves the Gaussian constant out
            "L_e": self.entropy(prior, z),
            "L_mi": self.mutual_information(prior, z, self.soft_labels(y, prior.n_classes).to(z.dtype)),
        }
        if intra:
            # Labels are checked once per image batch (HGAD.class_labels), not per level and chunk (a host sync).
            # L_z uses the normalised density; main centres are detached (the intra stage moves only the offsets).
            unnormalised = prior.class_log_prob(z, y, detach_main=True, validate=False)
            normalised = prior.class_log_prob(z, y, detach_main=True, validate=False, include_const=True)
            terms["L_g_intra"] = self.intra_nll(unnormalised, log_det, prior.dim)
            terms["L_z"] = self.intra_likelihood(normalised, log_det, prior.dim)
        return {name: value.mean() for name, value in terms.items()}

    @staticmethod
    def unused_parameters(prior: HierarchicalGaussianMixture, intra: bool) -> list[nn.Parameter]:
        """The prior's parameters that a level's terms do not reach: the intra-class ones before their stage."""
        if intra:
            return []
        return [tensor for tensor in (prior.intra_offsets, prior.intra_logits) if isinstance(tensor, nn.Parameter)]

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted total of one level's terms (``L_mi`` is maximised, hence subtracted)."""
        total = self.lambda_inter * terms["L_g"] - self.lambda_mi * terms["L_mi"] + terms["L_e"]
        if "L_g_intra" in terms:
            total = total + terms["L_g_intra"] + terms["L_z"]
        return total

    def forward(
        self,
        priors: Sequence[HierarchicalGaussianMixture],
        levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
        labels: torch.Tensor,
        intra: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over levels of the weighted terms, and each term summed over levels (for logging).

        Args:
            priors (Sequence[HierarchicalGaussianMixture]): One prior per level.
            levels (Sequence[tuple[torch.Tensor, torch.Tensor]]): ``(z (B, ..., D), log_det (B, ...))`` per level,
                e.g. ``(B, H, W, D)`` maps or ``(B, P, D)`` chunks of positions.
            labels (torch.Tensor): Class index per image ``(B,)``.
            intra (bool): Add the intra-class terms (second stage of the schedule).

        Returns:
            tuple[torch.Tensor, dict[str, torch.Tensor]]: The loss and the per-term sums over levels.
        """
        total = labels.new_zeros((), dtype=levels[0][0].dtype)
        logged: dict[str, torch.Tensor] = {}
        for prior, (z, log_det) in zip(priors, levels, strict=True):
            y = labels.repeat_interleave(log_det[0].numel())  # positions per image
            terms = self.level_terms(prior, z.reshape(-1, z.shape[-1]), log_det.reshape(-1), y, intra)
            total = total + self.combine(terms)
            for name, value in terms.items():
                logged[name] = logged.get(name, 0.0) + value.detach()
        return total, logged
