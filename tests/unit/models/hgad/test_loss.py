# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's loss terms against brute-force computations on a 2-class, 2-centre, 3-dim example."""

import math

import pytest
import torch

from anomalib_nfplus.flows import HierarchicalGaussianMixture
from anomalib_nfplus.models.hgad import HGADLoss

D, Y, K = 3, 2, 2
SMOOTH = 0.02


@pytest.fixture
def case() -> tuple[HierarchicalGaussianMixture, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    prior = HierarchicalGaussianMixture(Y, K, D, scale=2.0, include_const=False, seed=1)
    with torch.no_grad():
        prior.inter_logits.copy_(torch.tensor([0.3, -0.2]))
        prior.intra_logits.copy_(torch.tensor([[0.1, -0.4], [0.5, 0.0]]))
        prior.intra_offsets.mul_(0.7)
    z = torch.randn(5, D)
    log_det = torch.randn(5)
    y = torch.tensor([0, 1, 1, 0, 1])
    return prior, z, log_det, y


def _sq(a: list[float], b: list[float]) -> float:
    return sum((u - v) ** 2 for u, v in zip(a, b, strict=True))


def _lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _brute_force(prior: HierarchicalGaussianMixture, z: torch.Tensor, log_det: torch.Tensor, y: torch.Tensor) -> dict:
    mu = prior.inter_means.tolist()
    offsets = prior.intra_offsets.tolist()
    inter_w = torch.softmax(prior.inter_logits, 0).tolist()
    intra_w = torch.softmax(prior.intra_logits, 1).tolist()
    sums = {"L_g": 0.0, "L_e": 0.0, "L_mi": 0.0, "L_g_intra": 0.0, "L_z": 0.0}
    for n in range(z.shape[0]):
        zn, ld, yn = z[n].tolist(), float(log_det[n]), int(y[n])
        d = [-0.5 * _sq(zn, mu[c]) for c in range(Y)]
        sums["L_g"] += (-_lse([d[c] + math.log(inter_w[c]) for c in range(Y)]) - ld) / D
        p = [math.exp(d[c] - _lse(d)) for c in range(Y)]
        sums["L_e"] += -sum(pc * math.log(pc) for pc in p)
        joint = [d[c] + math.log(inter_w[c]) for c in range(Y)]
        soft = [(1 - SMOOTH) * (c == yn) + SMOOTH / Y for c in range(Y)]
        sums["L_mi"] += sum(soft[c] * (joint[c] - _lse(joint) - math.log(inter_w[c])) for c in range(Y))
        centres = [mu[yn]] + [[m + o for m, o in zip(mu[yn], offsets[yn][k], strict=True)] for k in range(K - 1)]
        intra = _lse([-0.5 * _sq(zn, centres[k]) + math.log(intra_w[yn][k]) for k in range(K)])
        sums["L_g_intra"] += (-intra - ld) / D
        log_p = (-0.5 * D * math.log(2 * math.pi) + intra + ld) / D
        sums["L_z"] += -math.log(1.0 / (1.0 + math.exp(-log_p)))
    return {name: value / z.shape[0] for name, value in sums.items()}


def test_every_term_matches_brute_force(case) -> None:
    prior, z, log_det, y = case
    terms = HGADLoss(label_smoothing=SMOOTH).level_terms(prior, z, log_det, y, intra=True)
    expected = _brute_force(prior, z, log_det, y)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert float(terms[name].detach()) == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_total_combines_terms_with_official_signs_and_stages(case) -> None:
    prior, z, log_det, y = case
    loss = HGADLoss(lambda_inter=2.0, lambda_mi=100.0, label_smoothing=SMOOTH)
    e = _brute_force(prior, z, log_det, y)
    inter_only = float(loss.combine(loss.level_terms(prior, z, log_det, y, intra=False)).detach())
    both = float(loss.combine(loss.level_terms(prior, z, log_det, y, intra=True)).detach())
    assert inter_only == pytest.approx(2.0 * e["L_g"] - 100.0 * e["L_mi"] + e["L_e"], rel=1e-5)
    assert both == pytest.approx(inter_only + e["L_g_intra"] + e["L_z"], rel=1e-5)


def test_intra_terms_detach_main_centres_and_train_offsets(case) -> None:
    prior, z, log_det, y = case
    terms = HGADLoss().level_terms(prior, z, log_det, y, intra=True)
    (terms["L_g_intra"] + terms["L_z"]).backward()
    assert prior.inter_means.grad is None or torch.all(prior.inter_means.grad == 0)
    assert prior.intra_offsets.grad.abs().sum() > 0
    assert prior.intra_logits.grad.abs().sum() > 0


def test_mutual_information_does_not_train_class_weights(case) -> None:
    prior, z, log_det, y = case
    HGADLoss().level_terms(prior, z, log_det, y, intra=False)["L_mi"].backward()
    assert prior.inter_logits.grad is None or torch.all(prior.inter_logits.grad == 0)
    assert prior.inter_means.grad.abs().sum() > 0


def test_forward_sums_levels_with_labels_repeated_over_positions() -> None:
    torch.manual_seed(0)
    priors = [HierarchicalGaussianMixture(2, 2, 4, include_const=False, seed=s) for s in range(2)]
    levels = [(torch.randn(2, 3, 3, 4), torch.randn(2, 3, 3)), (torch.randn(2, 1, 2, 4), torch.randn(2, 1, 2))]
    labels = torch.tensor([1, 0])
    loss = HGADLoss()
    total, logged = loss(priors, levels, labels, intra=True)
    expected = 0.0
    for prior, (z, log_det) in zip(priors, levels, strict=True):
        y = labels.view(2, 1).expand(2, z.shape[1] * z.shape[2]).reshape(-1)
        terms = loss.level_terms(prior, z.reshape(-1, 4), log_det.reshape(-1), y, True)
        expected += float(loss.combine(terms).detach())
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    assert set(logged) == {"L_g", "L_e", "L_mi", "L_g_intra", "L_z"}


def test_bad_label_smoothing_is_rejected() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        HGADLoss(label_smoothing=1.0)


def test_training_terms_do_not_wait_for_the_device_to_check_labels(monkeypatch) -> None:
    """Labels are checked once per image batch; per level and chunk the check would be a host sync each."""
    checks: list[int] = []
    original = HierarchicalGaussianMixture.validate_labels
    monkeypatch.setattr(
        HierarchicalGaussianMixture,
        "validate_labels",
        lambda self, y, n=None: checks.append(len(y)) or original(self, y, n),
    )
    torch.manual_seed(0)
    prior = HierarchicalGaussianMixture(2, 2, 4, include_const=False)
    HGADLoss()([prior], [(torch.randn(2, 3, 4), torch.randn(2, 3))], torch.tensor([1, 0]), intra=True)
    assert checks == []
    prior.class_log_prob(torch.randn(3, 4), torch.tensor([0, 1, 1]))  # direct calls still check
    assert checks == [3]
    with pytest.raises(ValueError, match=r"range \[0, 2\]"):
        prior.validate_labels(torch.tensor([0, 2]))


def test_one_class_makes_the_mutual_information_term_vanish() -> None:
    """With ``Y = 1``: ``log p(y|z) = 0`` and ``log pi_y = 0``, so ``L_mi = 0`` whatever ``z`` and ``lambda_mi``."""
    prior = HierarchicalGaussianMixture(1, K, D, include_const=False, seed=1)
    z = torch.randn(7, D, requires_grad=True)
    terms = HGADLoss(lambda_mi=100.0, label_smoothing=SMOOTH).level_terms(
        prior, z, torch.zeros(7), torch.zeros(7, dtype=torch.long), intra=True
    )
    assert float(terms["L_mi"]) == 0.0
    (gradient,) = torch.autograd.grad(terms["L_mi"], z)
    assert torch.count_nonzero(gradient) == 0
