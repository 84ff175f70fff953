# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of FeatureExtractor: layer selection by name, metadata, freezing, input gradients, export, pending weights."""

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from anomalib_nfplus.backbones import (
    BackboneWeightsError,
    BackboneWeightsUnavailableError,
    FeatureExtractor,
    available_layers,
    require_backbone_weights,
    weights_from_checkpoint,
)

SIZE = 64


@pytest.fixture(scope="module")
def resnet_extractor() -> FeatureExtractor:
    torch.manual_seed(0)
    return FeatureExtractor("resnet18", layers=("layer2", "layer3"), pre_trained=False)


@pytest.mark.parametrize(
    ("backbone", "layers", "channels", "strides"),
    [
        ("resnet18", ("layer2", "layer3"), [128, 256], [8, 16]),
        ("resnet18", ("layer3", "act1", "layer1"), [256, 64, 64], [16, 2, 4]),
        ("tf_efficientnet_lite0", ("blocks.2", "blocks.4", "blocks.6"), [40, 112, 320], [8, 16, 32]),
    ],
)
def test_metadata_matches_outputs(backbone: str, layers: tuple[str, ...], channels: list, strides: list) -> None:
    extractor = FeatureExtractor(backbone, layers=layers, pre_trained=False)
    assert extractor.channels == channels
    assert extractor.strides == strides
    outputs = extractor(torch.rand(2, 3, SIZE, SIZE))
    assert [o.shape for o in outputs] == [(2, c, SIZE // s, SIZE // s) for c, s in zip(channels, strides, strict=True)]


def test_unknown_layer_lists_available_names() -> None:
    assert available_layers("resnet18") == ["act1", "layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(ValueError, match=r"\['layer9'\].*Available layers: \['act1', 'layer1'"):
        FeatureExtractor("resnet18", layers=("layer2", "layer9"), pre_trained=False)
    with pytest.raises(TypeError, match="sequence of layer names"):
        FeatureExtractor("resnet18", layers="layer2", pre_trained=False)
    with pytest.raises(ValueError, match="duplicates"):
        FeatureExtractor("resnet18", layers=("layer2", "layer2"), pre_trained=False)


def test_frozen_and_stays_in_eval(resnet_extractor: FeatureExtractor) -> None:
    parent = nn.Sequential(resnet_extractor).train()
    assert parent.training
    assert not any(m.training for m in resnet_extractor.modules())
    assert not any(p.requires_grad for p in resnet_extractor.parameters())
    before = {k: v.clone() for k, v in resnet_extractor.state_dict().items()}
    images = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    outputs = parent(images)
    assert not any(o.requires_grad for o in outputs)  # detached by default, even for inputs with grad
    after = resnet_extractor.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats untouched


def test_input_gradient_mode(resnet_extractor: FeatureExtractor) -> None:
    resnet_extractor.requires_input_grad = True
    try:
        images = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
        loss = sum(o.square().mean() for o in resnet_extractor(images))
        loss.backward()
    finally:
        resnet_extractor.requires_input_grad = False
    assert images.grad is not None
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in resnet_extractor.parameters())


def test_backbone_weights_are_loaded(lite0_weights: Path) -> None:
    extractor = FeatureExtractor(
        "tf_efficientnet_lite0", ("blocks.4",), pre_trained=False, backbone_weights=lite0_weights, fold_norms=False
    )
    reference = torch.load(lite0_weights, weights_only=True)
    assert torch.equal(
        extractor.model.state_dict()["blocks.4.0.conv_pw.weight"], reference["blocks.4.0.conv_pw.weight"]
    )


@pytest.mark.parametrize("requires_input_grad", [False, True])
def test_torch_export_non_strict(resnet_extractor: FeatureExtractor, requires_input_grad: bool) -> None:
    resnet_extractor.requires_input_grad = requires_input_grad
    try:
        images = torch.rand(2, 3, SIZE, SIZE)
        program = torch.export.export(resnet_extractor, (images,), strict=False)
        exported = program.module()(images)
        eager = resnet_extractor(images)
    finally:
        resnet_extractor.requires_input_grad = False
    for a, b in zip(exported, eager, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.export
def test_onnx_dynamo_export(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    extractor = FeatureExtractor("tf_efficientnet_lite0", ("blocks.2", "blocks.4"), pre_trained=False)
    torch.onnx.export(extractor, (torch.rand(1, 3, SIZE, SIZE),), tmp_path / "fe.onnx", dynamo=True)
    graph = onnx.load(tmp_path / "fe.onnx").graph
    assert [o.type.tensor_type.shape.dim[1].dim_value for o in graph.output] == [40, 112]


# --- weights a checkpoint supplies -------------------------------------------------------------------------------


def _lite(**kwargs: Any) -> FeatureExtractor:
    return FeatureExtractor("tf_efficientnet_lite0", ("blocks.2",), pre_trained=False, **kwargs)


def test_a_missing_weights_file_fails_at_once_unless_deferred(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gone\.pth"):
        _lite(backbone_weights=tmp_path / "gone.pth")
    extractor = _lite(backbone_weights=tmp_path / "gone.pth", defer_unavailable_weights=True)
    assert "backbone_weights file not found" in (extractor.pending_weights or "")
    with pytest.raises(
        BackboneWeightsError, match=r"no pretrained weights: backbone_weights file not found: .*gone\.pth"
    ):
        extractor(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(BackboneWeightsError, match="load its checkpoint"):
        require_backbone_weights(nn.Sequential(extractor))


def test_weights_that_do_not_fit_fail_at_once_even_when_deferred(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(BackboneWeightsError, match="does not fit"):
        _lite(backbone_weights=tmp_path / "other.pth", defer_unavailable_weights=True)


def test_a_state_dict_holding_the_backbone_fills_pending_weights(lite0_weights: Path, tmp_path: Path) -> None:
    trained = _lite(backbone_weights=lite0_weights)
    images = torch.rand(2, 3, SIZE, SIZE)
    expected = trained(images)
    holder = nn.Sequential(_lite(backbone_weights=tmp_path / "gone.pth", defer_unavailable_weights=True))
    partial = {k: v for i, (k, v) in enumerate(nn.Sequential(trained).state_dict().items()) if i}
    holder.load_state_dict(partial, strict=False)
    assert holder[0].pending_weights is not None, "a state dict without every backbone tensor cleared the mark"
    holder.load_state_dict(nn.Sequential(trained).state_dict())
    assert holder[0].pending_weights is None
    require_backbone_weights(holder)
    for got, want in zip(holder[0](images), expected, strict=True):
        assert torch.equal(got, want)


def test_an_unreachable_hub_is_deferred(block_hub: list[str]) -> None:
    with pytest.raises(BackboneWeightsUnavailableError, match="backbone_weights=PATH"):
        FeatureExtractor("resnet18", ("layer2",))
    extractor = FeatureExtractor("resnet18", ("layer2",), defer_unavailable_weights=True)
    assert block_hub, "timm's download path was not reached"
    with pytest.raises(BackboneWeightsError, match="Could not get pretrained weights for backbone 'resnet18'"):
        extractor(torch.rand(1, 3, SIZE, SIZE))


def test_built_for_a_checkpoint_touches_neither_file_nor_hub(block_hub: list[str], tmp_path: Path) -> None:
    with weights_from_checkpoint():
        from_hub = FeatureExtractor("resnet18", ("layer2",))
        from_file = _lite(backbone_weights=tmp_path / "gone.pth")  # no FileNotFoundError, even without deferral
        random = FeatureExtractor("resnet18", ("layer2",), pre_trained=False)
    assert block_hub == []
    assert from_hub.pending_weights is not None
    assert from_file.pending_weights is not None
    assert random.pending_weights is None  # pre_trained=False asks for random weights: nothing to wait for
    with pytest.raises(BackboneWeightsError, match="built to load a checkpoint"):
        from_file(torch.rand(1, 3, SIZE, SIZE))
    assert _lite().pending_weights is None  # outside the block: as before
