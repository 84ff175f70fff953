# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGADModel: prior set-up, scoring modes, per-image scores, input errors, traceability."""

import itertools
from types import SimpleNamespace

import pytest
import torch

from anomalib_nfplus.models.hgad import HGADModel
from anomalib_nfplus.models.hgad.anomaly_map import level_maps

SIZE = 64


def _model(n_classes: int | None = 2, **kwargs) -> HGADModel:
    torch.manual_seed(0)
    args = {"pyramid_scales": (1.0, 0.5), "n_intra": 3, "coupling_blocks": 2, "condition_dim": 16, "blur_sigma": 1.0}
    args.update(kwargs)
    return HGADModel("tf_efficientnet_lite0", ["blocks.4"], pre_trained=False, n_classes=n_classes, **args)


def _fitted(model: HGADModel, images: torch.Tensor, labels: torch.Tensor) -> HGADModel:
    model.eval()
    model.statistics.reset()
    model.update_statistics(SimpleNamespace(image=images, class_index=labels))
    model.statistics.finalize()
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def two_class(images: torch.Tensor) -> HGADModel:
    return _fitted(_model(2), images, torch.tensor([0, 1, 0, 1]))


def test_class_centres_start_equidistant_per_level() -> None:
    model = _model(3)
    for prior in model.priors:
        means = prior.inter_means.detach()
        for a, b in itertools.combinations(range(3), 2):
            assert torch.linalg.vector_norm(means[a] - means[b]).item() == pytest.approx(5.0, rel=1e-6)
        assert prior.intra_offsets.shape == (3, 2, 112)
    # levels have their own offsets (distinct seeds)
    assert not torch.equal(model.priors[0].intra_offsets, model.priors[1].intra_offsets)


def test_prior_is_built_lazily_with_statistics_for_every_map() -> None:
    model = _model(None)
    assert model.priors is None
    assert model.statistics is None
    assert model.n_classes is None
    model.build_prior(2)
    assert model.n_classes == 2
    assert model.statistics.n_maps == 2 * (2 + 2)  # levels x (entropy, label-free, one per class)


def test_latents_per_level_and_scores(two_class: HGADModel, images: torch.Tensor) -> None:
    with torch.no_grad():
        levels = two_class.latents(images)
    assert [tuple(z.shape) for z, _ in levels] == [(4, 4, 4, 112), (4, 2, 2, 112)]
    out = two_class(images)
    assert out.pred_score.shape == (4,)
    assert out.anomaly_map.shape == (4, 1, SIZE, SIZE)
    assert torch.isfinite(out.anomaly_map).all()
    assert (out.anomaly_map >= 0).all()


def test_scores_are_per_image(two_class: HGADModel, images: torch.Tensor) -> None:
    labels = torch.tensor([0, 1, 0, 1])
    for scoring in ("label_free", "class_conditional"):
        two_class.scoring = scoring
        with torch.no_grad():
            batch = two_class(images, labels)
            alone = two_class(images[2:3], labels[2:3])
        # Multi-threaded GEMMs round differently for different batch sizes (about 1e-4 relative on 2 cores);
        # a real dependence on the other images would show as differences of order 1.
        torch.testing.assert_close(alone.pred_score, batch.pred_score[2:3], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(alone.anomaly_map, batch.anomaly_map[2:3], rtol=1e-4, atol=1e-4)
    two_class.scoring = "label_free"


def test_one_class_label_free_equals_class_conditional(images: torch.Tensor) -> None:
    model = _fitted(_model(1), images, torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        free = model(images)
        model.scoring = "class_conditional"
        conditional = model(images, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(free.pred_score, conditional.pred_score, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(free.anomaly_map, conditional.anomaly_map, rtol=1e-5, atol=1e-6)


def test_label_free_likelihood_bounds_class_conditional(two_class: HGADModel) -> None:
    # log sum_y pi_y p_y(z) >= log pi_c + log p_c(z) for every class c, with equality only if one class dominates
    prior = two_class.priors[0]
    z, log_det = torch.randn(50, 112) * 2, torch.zeros(50)
    free, _ = level_maps(prior, z, log_det, None, 1)
    log_pi = torch.log_softmax(prior.inter_logits, 0).detach()
    for c in range(2):
        conditional, _ = level_maps(prior, z, log_det, torch.full((50,), c), 1)
        assert torch.all(free * 112 >= conditional * 112 + log_pi[c] - 1e-3)


def test_class_conditional_prefers_the_true_class(two_class: HGADModel) -> None:
    prior = two_class.priors[0]
    z = prior.inter_means[0].detach() + 0.3 * torch.randn(20, 112, generator=torch.Generator().manual_seed(1))
    log_det = torch.zeros(20)
    right, _ = level_maps(prior, z, log_det, torch.zeros(20, dtype=torch.long), 1)
    wrong, _ = level_maps(prior, z, log_det, torch.ones(20, dtype=torch.long), 1)
    free, neg_entropy = level_maps(prior, z, log_det, None, 1)
    assert torch.all(right > wrong)
    assert torch.all(free >= right + torch.log_softmax(prior.inter_logits, 0)[0].detach() / 112 - 1e-4)
    assert torch.all(neg_entropy > -0.1)  # near a class centre the class posterior is confident


def test_class_conditional_needs_valid_labels(two_class: HGADModel, images: torch.Tensor) -> None:
    two_class.scoring = "class_conditional"
    try:
        with pytest.raises(ValueError, match="needs the class index"):
            two_class(images)
        with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
            two_class(images, torch.tensor([0, 1, 2, 0]))
        with pytest.raises(ValueError, match="2 class labels for 4 latents"):
            two_class(images, torch.tensor([0, 1]))
    finally:
        two_class.scoring = "label_free"


def test_bad_configuration_errors() -> None:
    with pytest.raises(ValueError, match="scoring must be one of"):
        _model(2, scoring="oracle")
    with pytest.raises(ValueError, match="n_classes <= channels"):
        _model(200)
    model = _model(None)
    model.eval()
    with pytest.raises(RuntimeError, match="prior is not built"):
        model(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(3, SIZE, SIZE))


@pytest.mark.parametrize("scoring", ["label_free", "class_conditional"])
def test_without_the_entropy_map_the_score_is_the_likelihood_map(
    two_class: HGADModel, images: torch.Tensor, scoring: str
) -> None:
    """``use_entropy=False``: ``-log(1 - A_logp / L)`` of the scoring mode's likelihood, the entropy ignored."""
    labels = torch.tensor([0, 1, 0, 1])
    two_class.scoring = scoring
    priors, statistics = two_class.require_prior()
    try:
        with torch.no_grad():
            with_entropy = two_class(images, labels).anomaly_map
            two_class.anomaly_map.use_entropy = False
            without = two_class(images, labels).anomaly_map
            levels = two_class.latents(images)
            likelihood, maxima = [], []
            for level, (prior, (z, log_det)) in enumerate(zip(priors, levels, strict=True)):
                b, h, w, d = z.shape
                given = labels if scoring == "class_conditional" else None
                log_p, _ = level_maps(prior, z.reshape(-1, d), log_det.reshape(-1), given, h * w)
                likelihood.append(log_p.view(b, h, w))
                kind = 2 + labels if given is not None else torch.ones_like(labels)
                maxima.append(statistics.maximum[level * 4 + kind].view(b, 1, 1))
            expected = two_class.anomaly_map.combine(likelihood, maxima, None, None, (SIZE, SIZE))
    finally:
        two_class.anomaly_map.use_entropy = True
        two_class.scoring = "label_free"
    torch.testing.assert_close(without, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(without, with_entropy)
