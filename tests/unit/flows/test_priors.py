# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Priors: standard normal, Gaussian mixture, HGAD's hierarchical mixture."""

import math

import pytest
import torch
from torch import distributions as D

from anomalib_nfplus.flows import GaussianMixture, HierarchicalGaussianMixture, StandardNormal, equidistant_centres


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))


def _normal_log_prob(z: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return D.Independent(D.Normal(mean, torch.ones_like(mean)), 1).log_prob(z)


def test_standard_normal(float64):
    z = 3 * torch.randn(8, 4)
    torch.testing.assert_close(StandardNormal(4)(z), D.Normal(0.0, 1.0).log_prob(z).sum(-1))
    torch.testing.assert_close(StandardNormal(4, include_const=False).log_prob(z), -0.5 * (z**2).sum(-1))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        StandardNormal(4).log_prob(torch.randn(8, 5))


def test_gaussian_mixture_matches_mixture_same_family(float64):
    prior = GaussianMixture(4, 3, seed=1)
    _perturb(prior)
    z = 2 * torch.randn(20, 3)
    reference = D.MixtureSameFamily(
        D.Categorical(logits=prior.logits.detach()),
        D.Independent(D.Normal(prior.means.detach(), torch.ones(4, 3)), 1),
    )
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))
    components = torch.stack([_normal_log_prob(z, mu) for mu in prior.means.detach()], dim=1)
    torch.testing.assert_close(prior.component_log_prob(z), components)
    joint = components + torch.log_softmax(prior.logits.detach(), 0)
    torch.testing.assert_close(prior.posterior(z), torch.softmax(joint, 1))
    no_const = GaussianMixture(4, 3, means=prior.means.detach(), include_const=False)
    torch.testing.assert_close(no_const.component_log_prob(z), components + 1.5 * math.log(2 * math.pi))


def test_gaussian_mixture_accuracy_far_from_origin():
    # the ||z||^2 - 2 z.mu + ||mu||^2 expansion in float32 stays accurate for latents with a large norm
    # (without centring on the mean centre the error here is about 4e-3)
    torch.manual_seed(0)
    means = 30 + torch.randn(3, 64, dtype=torch.float64)
    z = means[torch.tensor([0, 1, 2, 0])] + 0.1 * torch.randn(4, 64, dtype=torch.float64)
    exact = GaussianMixture(3, 64, means=means).to(torch.float64).component_log_prob(z)
    fast = GaussianMixture(3, 64, means=means.float()).component_log_prob(z.float())
    torch.testing.assert_close(fast.double(), exact, atol=1e-3, rtol=1e-6)


def test_gaussian_mixture_parameters_and_errors():
    learnable = GaussianMixture(2, 3)
    assert {name for name, _ in learnable.named_parameters()} == {"means", "logits"}
    frozen = GaussianMixture(2, 3, learn_means=False, learn_weights=False)
    assert not list(frozen.parameters())
    assert set(frozen.state_dict()) == {"means", "logits"}
    assert torch.equal(GaussianMixture(2, 3, seed=4).means, GaussianMixture(2, 3, seed=4).means)
    means = torch.ones(2, 3)
    prior = GaussianMixture(2, 3, means=means)
    with torch.no_grad():
        prior.means.add_(1.0)
    assert torch.equal(means, torch.ones(2, 3))  # the given means are copied
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        GaussianMixture(2, 3, means=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(0, 3)


@pytest.mark.parametrize(("n_classes", "dim"), [(15, 200), (3, 6), (4, 5), (5, 5), (7, 20), (1, 4), (2, 3)])
def test_equidistant_centres(n_classes, dim):
    centres = equidistant_centres(n_classes, dim, distance=5.0)
    assert centres.shape == (n_classes, dim)
    distances = torch.cdist(centres.double(), centres.double())
    off_diagonal = distances[~torch.eye(n_classes, dtype=torch.bool)]
    torch.testing.assert_close(off_diagonal, torch.full_like(off_diagonal, 5.0))


def test_equidistant_centres_match_official_hgad_init():
    centres = equidistant_centres(15, 200)
    s = 5 / math.sqrt(26)  # official: 5 / sqrt(floor(2D/Y))
    assert torch.equal(centres[:, :195] != 0, torch.eye(15, dtype=torch.bool).repeat(1, 13))
    torch.testing.assert_close(centres[:, :195].sum(1), torch.full((15,), 13 * s))
    assert torch.equal(centres[:, 195:], torch.zeros(15, 5))


def test_equidistant_centres_rejects_more_classes_than_dims():
    with pytest.raises(ValueError, match="n_classes=5, dim=4"):
        equidistant_centres(5, 4)
    with pytest.raises(ValueError, match="n_classes=5, dim=4"):
        HierarchicalGaussianMixture(5, 2, 4)


def _hgm(**kwargs) -> HierarchicalGaussianMixture:
    prior = HierarchicalGaussianMixture(n_classes=3, n_intra=4, dim=5, **kwargs)
    _perturb(prior, seed=7)
    return prior


def test_hierarchical_shapes_and_init():
    prior = HierarchicalGaussianMixture(n_classes=3, n_intra=4, dim=5, scale=2.0, seed=3)
    assert prior.inter_means.shape == (3, 5)
    assert prior.intra_offsets.shape == (3, 3, 5)
    assert prior.inter_logits.shape == (3,)
    assert prior.intra_logits.shape == (3, 4)
    assert torch.equal(prior.intra_offsets, HierarchicalGaussianMixture(3, 4, 5, seed=3).intra_offsets)
    assert not torch.equal(prior.intra_offsets, HierarchicalGaussianMixture(3, 4, 5, seed=4).intra_offsets)
    centres = prior.intra_centres()
    assert centres.shape == (3, 4, 5)
    assert torch.equal(centres[:, 0], prior.inter_means)
    z, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 2, 1, 0])
    assert prior.inter_component_log_prob(z).shape == (6, 3)
    assert prior.intra_component_log_prob(z, y).shape == (6, 4)
    assert prior.class_log_prob(z, y).shape == (6,)
    assert prior.log_prob(z).shape == (6,)
    assert prior.inter_log_prob(z).shape == (6,)
    assert prior.class_posterior(z).shape == (6, 3)
    frozen = HierarchicalGaussianMixture(3, 4, 5, learn_means=False, learn_weights=False)
    assert not list(frozen.parameters())
    assert len(frozen.state_dict()) == 4


def test_hierarchical_log_prob_matches_double_loop(float64):
    prior = _hgm()
    z = 2 * torch.randn(10, 5)
    log_pi_y = torch.log_softmax(prior.inter_logits, 0)
    log_pi_yk = torch.log_softmax(prior.intra_logits, 1)
    density = torch.zeros(10)
    for y in range(3):
        for k in range(4):
            centre = prior.inter_means[y] + (prior.intra_offsets[y, k - 1] if k > 0 else 0.0)
            density = density + torch.exp(log_pi_y[y] + log_pi_yk[y, k] + _normal_log_prob(z, centre))
    torch.testing.assert_close(prior.log_prob(z), torch.log(density).detach())


def test_hierarchical_class_terms_match_brute_force(float64):
    prior = _hgm()
    z, y = 2 * torch.randn(9, 5), torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1])
    log_pi_yk = torch.log_softmax(prior.intra_logits, 1).detach()
    centres = prior.intra_centres().detach()
    intra = torch.stack([torch.stack([_normal_log_prob(z[n], c) for c in centres[y[n]]]) for n in range(9)])
    torch.testing.assert_close(prior.intra_component_log_prob(z, y), intra)
    torch.testing.assert_close(prior.class_log_prob(z, y), torch.logsumexp(intra + log_pi_yk[y], 1))
    # the full mixture is the class mixture marginalised over classes
    per_class = torch.stack([prior.class_log_prob(z, torch.full((9,), c)) for c in range(3)], dim=1)
    expected = torch.logsumexp(per_class + torch.log_softmax(prior.inter_logits, 0), 1)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_hierarchical_inter_terms_match_brute_force(float64):
    prior = _hgm()
    z = 2 * torch.randn(7, 5)
    inter = torch.stack([_normal_log_prob(z, mu) for mu in prior.inter_means.detach()], dim=1)
    torch.testing.assert_close(prior.inter_component_log_prob(z), inter)
    log_pi = torch.log_softmax(prior.inter_logits, 0).detach()
    torch.testing.assert_close(prior.inter_log_prob(z), torch.logsumexp(inter + log_pi, 1))
    torch.testing.assert_close(prior.class_posterior(z), torch.softmax(inter + log_pi, 1))
    torch.testing.assert_close(prior.class_posterior(z, include_prior=False), torch.softmax(inter, 1))


def test_hierarchical_detach_main():
    prior = _hgm()
    z, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    prior.class_log_prob(z, y, detach_main=True).sum().backward()
    assert prior.inter_means.grad is None
    assert prior.intra_offsets.grad.abs().sum() > 0
    assert prior.intra_logits.grad.abs().sum() > 0
    prior.class_log_prob(z, y).sum().backward()
    assert prior.inter_means.grad.abs().sum() > 0
    torch.testing.assert_close(prior.class_log_prob(z, y, detach_main=True), prior.class_log_prob(z, y))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0, 3]), r"\[0, 3\), got range \[0, 3\]"),
        (torch.tensor([-1, 0]), r"got range \[-1, 0\]"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.tensor([[0, 1]]), "1-D"),
        (torch.tensor([0, 1, 2]), "3 class labels for 2 latents"),
    ],
)
def test_hierarchical_label_validation(labels, match):
    prior = HierarchicalGaussianMixture(3, 2, 4)
    with pytest.raises(ValueError, match=match):
        prior.class_log_prob(torch.randn(2, 4), labels)


def test_hierarchical_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_intra"):
        HierarchicalGaussianMixture(2, 0, 4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        HierarchicalGaussianMixture(2, 2, 4).log_prob(torch.randn(3, 5))


@pytest.mark.parametrize(
    "make",
    [lambda: GaussianMixture(3, 5), lambda: HierarchicalGaussianMixture(3, 4, 5)],
    ids=["gmm", "hierarchical"],
)
def test_gradients_and_state_dict(make):
    prior = make()
    _perturb(prior, seed=1)
    z = torch.randn(6, 5)
    prior.log_prob(z).sum().backward()
    for name, param in prior.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    fresh = make()
    assert not torch.allclose(fresh.log_prob(z), prior.log_prob(z))
    fresh.load_state_dict(prior.state_dict())
    torch.testing.assert_close(fresh.log_prob(z), prior.log_prob(z), rtol=0, atol=0)
