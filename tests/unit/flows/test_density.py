# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""FlowDensity and change_of_variables against torch.distributions; the priors' labels and constant override."""

import math

import pytest
import torch
from torch import distributions as D

from anomalib_nfplus.flows import (
    FlowDensity,
    GaussianMixture,
    HierarchicalGaussianMixture,
    StandardNormal,
    allinone_flow,
    change_of_variables,
    differnet_flow,
    gaussian_log_normalizer,
    log_likelihood,
)


def test_change_of_variables():
    log_pz, log_det = torch.tensor([-3.0, 1.0]), torch.tensor([1.0, 0.5])
    torch.testing.assert_close(change_of_variables(log_pz, log_det), torch.tensor([-2.0, 1.5]))
    torch.testing.assert_close(change_of_variables(log_pz, log_det, dim=2), torch.tensor([-1.0, 0.75]))


def test_log_likelihood_is_a_standard_normal_density_for_any_leading_shape(float64):
    z, log_det = torch.randn(2, 3, 4), torch.randn(2, 3)
    expected = D.Normal(0.0, 1.0).log_prob(z).sum(-1) + log_det
    torch.testing.assert_close(log_likelihood(z, log_det), expected)
    torch.testing.assert_close(log_likelihood(z, log_det, per_dim=True), expected / 4)


def test_flow_density_matches_the_change_of_variables(float64):
    torch.manual_seed(0)
    flow = differnet_flow(4, n_blocks=2, hidden=8, depth=1, seed=0)
    density = FlowDensity(flow, StandardNormal(4))
    x = torch.randn(6, 4)
    z, log_det = flow(x)
    expected = D.Independent(D.Normal(torch.zeros(4), torch.ones(4)), 1).log_prob(z) + log_det
    torch.testing.assert_close(density.log_prob(x), expected)
    torch.testing.assert_close(density.log_prob(x, per_dim=True), expected / 4)
    torch.testing.assert_close(density.nll(x, per_dim=True), -expected / 4)
    torch.testing.assert_close(density.latent_log_prob(z, log_det), expected)
    assert density.dim == 4
    assert [name for name, _ in density.named_parameters()] == [f"flow.{n}" for n, _ in flow.named_parameters()]


def test_flow_density_integrates_to_one(float64):
    """A 2-D density from a trained-looking flow integrates to about 1 on a fine grid."""
    torch.manual_seed(0)
    flow = allinone_flow(2, n_blocks=2, seed=0)
    with torch.no_grad():
        for param in flow.parameters():
            param.add_(0.3 * torch.randn_like(param))
    density = FlowDensity(flow, StandardNormal(2))
    axis = torch.linspace(-9, 9, 361)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = density.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)


def test_flow_density_with_a_condition_and_class_labels(float64):
    torch.manual_seed(0)
    flow = allinone_flow(6, n_blocks=2, cond_dim=4, seed=0)
    prior = HierarchicalGaussianMixture(3, 2, 6, seed=0)
    density = FlowDensity(flow, prior)
    x, cond, y = torch.randn(5, 6), torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    z, log_det = flow(x, cond)
    torch.testing.assert_close(density.log_prob(x, cond, y), prior.class_log_prob(z, y) + log_det)
    torch.testing.assert_close(density.log_prob(x, cond), prior.log_prob(z) + log_det)


def test_flow_density_rejects_mismatched_sizes_and_labels_for_label_free_priors():
    with pytest.raises(ValueError, match="they must match"):
        FlowDensity(allinone_flow(4, n_blocks=1), StandardNormal(5))
    density = FlowDensity(allinone_flow(4, n_blocks=1), StandardNormal(4))
    with pytest.raises(ValueError, match="no classes"):
        density.log_prob(torch.randn(3, 4), y=torch.zeros(3, dtype=torch.long))


def test_include_const_can_be_overridden_per_call(float64):
    z = torch.randn(5, 3)
    shift = gaussian_log_normalizer(3)
    for prior in (StandardNormal(3, include_const=False), GaussianMixture(2, 3, include_const=False)):
        torch.testing.assert_close(prior.log_prob(z, include_const=True), prior.log_prob(z) + shift)
    hgm = HierarchicalGaussianMixture(2, 3, 3, include_const=False)
    y = torch.tensor([0, 1, 1, 0, 1])
    torch.testing.assert_close(hgm.log_prob(z, include_const=True), hgm.log_prob(z) + shift)
    torch.testing.assert_close(hgm.log_prob(z, y, include_const=True), hgm.class_log_prob(z, y) + shift)
    torch.testing.assert_close(hgm.inter_log_prob(z, include_const=True), hgm.inter_log_prob(z) + shift)


def test_gaussian_mixture_labels_select_a_component(float64):
    prior = GaussianMixture(3, 2, seed=0)
    z, y = torch.randn(4, 2), torch.tensor([2, 0, 1, 2])
    expected = torch.stack([D.Independent(D.Normal(prior.means[k], 1.0), 1).log_prob(z[i]) for i, k in enumerate(y)])
    torch.testing.assert_close(prior.log_prob(z, y), expected.detach())
    with pytest.raises(ValueError, match=r"range \[0, 3\]"):
        prior.log_prob(z, torch.tensor([0, 3, 1, 1]))


def test_class_posterior_and_entropy(float64):
    torch.manual_seed(0)
    prior = HierarchicalGaussianMixture(3, 2, 4, scale=2.0, seed=0)
    with torch.no_grad():
        prior.inter_logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    z = 2 * torch.randn(6, 4)
    distances = -0.5 * torch.cdist(z, prior.inter_means.detach()).square()
    for include_prior in (False, True):
        logits = distances + (torch.log_softmax(prior.inter_logits.detach(), 0) if include_prior else 0.0)
        posterior = torch.softmax(logits, 1)
        torch.testing.assert_close(prior.class_posterior(z, include_prior).detach(), posterior)
        torch.testing.assert_close(prior.class_log_posterior(z, include_prior).detach(), posterior.log())
        entropy = D.Categorical(probs=posterior).entropy()
        torch.testing.assert_close(prior.class_entropy(z, include_prior).detach(), entropy)
    assert float(prior.class_entropy(z, include_prior=False).max()) <= math.log(3) + 1e-9


def test_detached_class_weights_get_no_gradient_from_the_log_posterior():
    prior = HierarchicalGaussianMixture(3, 2, 4, seed=0)
    prior.class_log_posterior(torch.randn(5, 4), detach_weights=True).sum(dim=0)[0].backward()
    assert prior.inter_logits.grad is None
    assert prior.inter_means.grad.abs().sum() > 0
