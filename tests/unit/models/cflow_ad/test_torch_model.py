# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowADModel: shapes, batch independence, statistics, scoring options, input checks."""

from types import SimpleNamespace

import pytest
import torch

from anomalib_nfplus.models.cflow_ad import CflowADModel
from anomalib_nfplus.models.cflow_ad.loss import CflowADLoss


@pytest.fixture(scope="module")
def model() -> CflowADModel:
    torch.manual_seed(0)
    model = CflowADModel("resnet18", ("layer1", "layer2"), pre_trained=False, coupling_blocks=2, condition_dim=16)
    model.statistics.reset()
    model.update_statistics(SimpleNamespace(image=torch.rand(4, 3, 64, 64)))
    model.statistics.finalize()
    return model.eval()


def test_eval_output_shapes(model):
    with torch.no_grad():
        output = model(torch.rand(2, 3, 64, 48))
    assert output.pred_score.shape == (2,)
    assert output.anomaly_map.shape == (2, 1, 64, 48)


def test_one_image_alone_scores_as_inside_a_batch(model):
    images = torch.rand(5, 3, 64, 64)
    images[3] += 2.0  # an outlier must not shift the others' scores
    with torch.no_grad():
        batch = model(images)
        alone = model(images[1:2])
    torch.testing.assert_close(alone.pred_score, batch.pred_score[1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.anomaly_map, batch.anomaly_map[1:2], rtol=1e-5, atol=1e-5)


def test_shifted_images_score_higher(model):
    """Known answer: z-scored against training images, an out-of-distribution image scores higher."""
    normal = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert model(normal + 3.0).pred_score.min() > model(normal).pred_score.max()


def test_grayscale_images_are_accepted(model):
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(gray).pred_score, model(gray.expand(-1, 3, -1, -1)).pred_score)


def test_bad_shapes_name_the_fix(model):
    with pytest.raises(ValueError, match="Add a batch dimension"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="3 or 1 channels"):
        model(torch.rand(1, 4, 64, 64))


def test_training_chunks_train_every_decoder(model):
    model.train()
    try:
        chunks = list(model.training_chunks(torch.rand(2, 3, 64, 64)))
        assert len(chunks) == 1
        assert [(level, c.shape) for level, c in chunks[0]] == [(0, (2, 16, 16)), (1, (2, 8, 8))]
        CflowADLoss()([c for _, c in chunks[0]]).backward()
        for flow in model.flows.flows:
            assert flow.blocks[0].subnet[0].weight.grad is not None
        assert model.feature_extractor.model.conv1.weight.grad is None  # the backbone is frozen
        assert len(list(model.training_chunks(torch.rand(2, 3, 64, 64), 100, per_level=True))) == 5 + 1
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_statistics_are_collected_per_level(model):
    assert bool(model.statistics.fitted)
    assert model.statistics.mean.shape == (2,)
    assert (model.statistics.std > 0).all()


@pytest.mark.parametrize(("scoring", "top_k"), [("likelihood", None), ("zscore", 0.1)])
def test_scoring_options(model, scoring, top_k):
    other = CflowADModel(
        "resnet18",
        ("layer1", "layer2"),
        pre_trained=False,
        coupling_blocks=2,
        condition_dim=16,
        scoring=scoring,
        top_k=top_k,
    ).eval()
    other.load_state_dict(model.state_dict())
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        output = other(images)
        reference = model(images)
    assert torch.isfinite(output.anomaly_map).all()
    if top_k is None:  # other map, maximum score
        assert not torch.allclose(output.anomaly_map, reference.anomaly_map)
        torch.testing.assert_close(output.pred_score, output.anomaly_map.flatten(1).amax(1))
    else:  # same map, mean of the top 10 % <= maximum
        torch.testing.assert_close(output.anomaly_map, reference.anomaly_map)
        assert (output.pred_score < reference.pred_score).all()


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="scoring must be one of"):
        CflowADModel("resnet18", ("layer1",), pre_trained=False, scoring="max")
    with pytest.raises(ValueError, match="top_k"):
        CflowADModel("resnet18", ("layer1",), pre_trained=False, top_k=2.0)


def test_reflect_padding_too_small_images_name_the_fix():
    model = CflowADModel("resnet18", ("layer4",), pre_trained=False, coupling_blocks=1, condition_dim=8).eval()
    with pytest.raises(ValueError, match="reflect_padding=False"):
        model(torch.rand(1, 3, 32, 32))  # layer4 is 1x1: a 3x3 convolution cannot reflect-pad it


def test_loss_value():
    log_probs = [torch.tensor([0.0, 0.0]), torch.tensor([[2.0]])]
    expected = torch.log(torch.tensor(2.0)) + torch.nn.functional.softplus(torch.tensor(-2.0))
    torch.testing.assert_close(CflowADLoss()(log_probs), expected)
    with pytest.raises(ValueError, match="at least one level"):
        CflowADLoss()([])
