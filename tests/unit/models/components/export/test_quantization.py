# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""INT8: calibration on training images (never validation/test), resized; only the backbone feeding the flows."""

import pytest
import torch

from anomalib_nfplus.models.components.export.quantization import (
    backbone_only_scope,
    calibration_batches,
    feature_ops,
    quantize_with_training_images,
)


class _Batch:
    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


class _DataModule:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def setup(self, stage: str) -> None:
        self.stages.append(stage)

    def train_dataloader(self):
        return [_Batch(torch.full((3, 3, 10, 12), 0.25)), _Batch(torch.full((3, 3, 10, 12), 0.75))]

    def val_dataloader(self):
        msg = "calibration must not read the validation set"
        raise AssertionError(msg)


def test_uses_training_images_resized_and_capped():
    dm = _DataModule()
    images = list(calibration_batches(dm, (8, 8), max_images=4))
    assert dm.stages == ["fit"]
    assert len(images) == 4
    assert all(image.shape == (1, 3, 8, 8) for image in images)
    assert [round(float(image.mean()), 2) for image in images] == [0.25, 0.25, 0.25, 0.75]


def test_dynamic_graphs_keep_the_size():
    assert next(calibration_batches(_DataModule(), None)).shape == (1, 3, 10, 12)


def test_quantisation_needs_a_datamodule():
    with pytest.raises(ValueError, match="datamodule"):
        quantize_with_training_images(object(), None)


def _graph_conv_flow_blur():
    """input -> conv (backbone) -> matmul (flow) -> conv (blur) -> output, built with OpenVINO's opset."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    image = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    features = ops.convolution(image, rng.normal(size=(4, 3, 3, 3)).astype(np.float32), [1, 1], [1, 1], [1, 1], [1, 1])
    features.set_friendly_name("backbone_conv")
    fibers = ops.transpose(features, np.array([0, 2, 3, 1], dtype=np.int64))
    flow = ops.matmul(fibers, rng.normal(size=(4, 4)).astype(np.float32), False, False)
    flow.set_friendly_name("flow_matmul")
    nll = ops.reduce_sum(ops.multiply(flow, flow), np.array([3], dtype=np.int64), keep_dims=False)
    amap = ops.unsqueeze(nll, np.array([1], dtype=np.int64))
    blurred = ops.convolution(amap, np.full((1, 1, 3, 3), 1 / 9, np.float32), [1, 1], [1, 1], [1, 1], [1, 1])
    blurred.set_friendly_name("blur_conv")
    blurred.output(0).get_tensor().set_names({"anomaly_map"})
    return ov.Model([blurred.output(0)], [image], "toy")


def _quantised_consumers(model) -> set[str]:
    return {
        target.get_node().get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in {"FakeQuantize", "FakeConvert"}
        for target in op.output(0).get_target_inputs()
    }


def test_feature_ops_are_the_convolutions_upstream_of_the_flow():
    assert feature_ops(_graph_conv_flow_blur()) == ["backbone_conv"]


def test_default_int8_quantises_the_backbone_only():
    dm = _DataModule()
    dm.train_dataloader = lambda: [_Batch(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)))]
    quantised = quantize_with_training_images(_graph_conv_flow_blur(), dm)
    assert _quantised_consumers(quantised) == {"backbone_conv"}


def test_an_empty_scope_quantises_the_flow_too():
    import nncf

    dm = _DataModule()
    dm.train_dataloader = lambda: [_Batch(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)))]
    quantised = quantize_with_training_images(_graph_conv_flow_blur(), dm, ignored_scope=nncf.IgnoredScope())
    assert _quantised_consumers(quantised) - {"backbone_conv"}  # NNCF's default also quantises the flow part


def test_a_graph_without_flow_matmuls_is_refused_with_the_override_named():
    model = _graph_conv_flow_blur()
    with pytest.raises(ValueError, match="int8_ignored_scope"):
        backbone_only_scope(model, flow_types=("Einsum",))


def test_the_mixin_asks_the_model_for_its_scope():
    import nncf

    from anomalib_nfplus.models.components import FlowModuleMixin

    class _Model(FlowModuleMixin):
        def int8_ignored_scope(self, model):
            return nncf.IgnoredScope(names=["backbone_conv"], validate=False)

    dm = _DataModule()
    dm.train_dataloader = lambda: [_Batch(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)))]
    quantised = _Model()._post_training_quantization_ov(_graph_conv_flow_blur(), dm)
    consumers = _quantised_consumers(quantised)
    assert consumers
    assert "backbone_conv" not in consumers


def test_bias_correction_is_per_model(monkeypatch):
    """Off by default (CflowAD, HGAD), on for DifferNet (pooled features); the mixin passes the model's choice."""
    from anomalib_nfplus.models import HGAD, CflowAD, DifferNet
    from anomalib_nfplus.models.components import FlowModuleMixin
    from anomalib_nfplus.models.components.export import mixin

    seen = []
    monkeypatch.setattr(mixin, "quantize_with_training_images", lambda *a, **k: seen.append(k["bias_correction"]))
    monkeypatch.setattr(FlowModuleMixin, "int8_ignored_scope", lambda self, model: None)
    for model_class in (CflowAD, HGAD, DifferNet):
        model_class._post_training_quantization_ov(model_class.__new__(model_class), object(), _DataModule())
    assert seen == [False, False, True]


def test_bias_correction_reaches_nncf(monkeypatch):
    import nncf

    dm = _DataModule()
    seen = []
    monkeypatch.setattr(nncf, "quantize", lambda *a, **k: seen.append(k["advanced_parameters"].disable_bias_correction))
    for bias_correction in (False, True):
        quantize_with_training_images(_graph_conv_flow_blur(), dm, bias_correction=bias_correction)
    assert seen == [True, False]
