# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNetModel: shapes, score definition, batch independence, TTA determinism, gradient maps, bad input."""

import pytest
import torch

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.models.differnet import DifferNetModel

from .conftest import tiny_model


def test_feature_vector_concatenates_pooled_levels(model: DifferNetModel) -> None:
    assert model.feature_dim == 3 * 40  # 3 pyramid levels x 40 channels of blocks.2
    assert model.features(torch.randn(2, 3, 64, 64)).shape == (2, 120)


def test_eval_output_shapes_and_score_definition(model: DifferNetModel) -> None:
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    assert out.pred_score.shape == (2,)
    assert out.anomaly_map.shape == (2, 1, 64, 48)
    with torch.no_grad():
        z, _ = model.embed(model.features(model.rotations(x)))
    expected = z.pow(2).mean(dim=1).view(2, 4).mean(dim=1)  # mean over T of ||z||^2 / D
    assert torch.allclose(out.pred_score, expected, rtol=1e-5)


def test_one_image_alone_scores_as_in_a_batch(model: DifferNetModel) -> None:
    x = torch.randn(3, 3, 64, 64)
    batch = model(x)
    alone = model(x[1:2])
    assert torch.allclose(alone.pred_score, batch.pred_score[1:2], rtol=1e-5)
    assert torch.allclose(alone.anomaly_map, batch.anomaly_map[1:2], rtol=1e-4, atol=1e-8)


def test_test_time_augmentation_is_deterministic(model: DifferNetModel) -> None:
    x = torch.randn(2, 3, 64, 64)
    first, second = model(x), model(x)
    assert torch.equal(first.pred_score, second.pred_score)
    assert torch.equal(first.anomaly_map, second.anomaly_map)


def test_works_under_inference_mode_and_with_grayscale(model: DifferNetModel) -> None:
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        out = model(x)
    assert torch.allclose(out.pred_score, model(x.expand(-1, 3, -1, -1)).pred_score)
    assert out.anomaly_map.abs().sum() > 0


def test_single_transform_and_score_only_mode() -> None:
    model = tiny_model(n_test_transforms=1, compute_map=False)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.pred_score.shape == (2,)
    assert out.anomaly_map is None


def test_training_forward_returns_flow_output(model: DifferNetModel) -> None:
    model.train()
    try:
        z, log_det = model(torch.randn(5, 3, 64, 64))
    finally:
        model.eval()
    assert z.shape == (5, model.feature_dim)
    assert log_det.shape == (5,)
    assert z.requires_grad  # the flow trains
    assert not any(p.requires_grad for p in model.feature_extractor.parameters())  # the backbone does not


@pytest.mark.parametrize(
    ("shape", "match"),
    [((3, 64, 64), "batch dimension"), ((1, 4, 64, 64), "channels"), ((1, 3, 16, 16), "too small")],
)
def test_bad_input_is_rejected_with_a_clear_message(model: DifferNetModel, shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_gradient_map_peaks_on_a_synthetic_defect() -> None:
    """Fit the flow on features of plain noisy images, then the map of an image with a square defect peaks there."""
    torch.manual_seed(0)
    model = DifferNetModel(
        "tf_efficientnet_lite0",
        ("blocks.2",),
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        coupling_blocks=2,
        hidden=64,
        depth=1,
        n_test_transforms=4,
        blur_sigma=2.0,
    )
    normal = 0.1 * torch.randn(48, 3, 64, 64)
    with torch.no_grad():
        features = model.features(normal)
    optimizer = torch.optim.Adam(model.flow.parameters(), lr=1e-3)
    for _ in range(150):
        z, log_det = model.embed(features)
        loss = (0.5 * z.pow(2).sum(1) - log_det).mean() / model.feature_dim
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    defect = 0.1 * torch.randn(1, 3, 64, 64)
    defect[..., 8:20, 36:48] = 1.0
    out = model(torch.cat([defect, 0.1 * torch.randn(1, 3, 64, 64)]))
    assert out.pred_score[0] > out.pred_score[1]
    peak = int(out.anomaly_map[0, 0].argmax())
    row, col = divmod(peak, 64)
    assert 4 <= row < 24
    assert 32 <= col < 52


def test_backbone_passes_do_not_change_results(model: DifferNetModel) -> None:
    """Small channels-last passes (the CPU speed-up) give what one pass over all views gives."""
    x = torch.randn(3, 3, 64, 64)
    saved = model.max_pass_pixels
    try:
        model.max_pass_pixels = None
        whole = model(x)
        model.max_pass_pixels = 5 * 64 * 64  # 12 views -> passes of 5, 5, 2
        split = model(x)
        model.max_pass_pixels = 2 * 64 * 64  # 3 training views -> passes of 2, 1
        model.train()
        split_train = model(x)
        model.max_pass_pixels = None
        whole_train = model(x)
    finally:
        model.max_pass_pixels = saved
        model.eval()
    assert torch.allclose(split.pred_score, whole.pred_score, rtol=1e-5)
    assert torch.allclose(split.anomaly_map, whole.anomaly_map, rtol=1e-4, atol=1e-8)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(split_train, whole_train, strict=True))


def test_invalid_pass_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_pass_pixels"):
        tiny_model(max_pass_pixels=0)
