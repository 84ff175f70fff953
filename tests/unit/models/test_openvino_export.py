# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The direct OpenVINO export's helpers: scoped muting of exporter noise, output names, IR names and shapes."""

from typing import NamedTuple

import openvino as ov
import pytest
import torch

from anomalib_nfplus.models.components.export.openvino_export import (
    convert_exported_program,
    example_input,
    export_program,
    output_names,
)
from anomalib_nfplus.quiet import third_party_noise_filtered


class _Batch(NamedTuple):
    pred_score: torch.Tensor | None
    pred_label: torch.Tensor | None
    anomaly_map: torch.Tensor | None


class _Scorer(torch.nn.Module):
    """A module with an ``InferenceBatch``-like output whose label is ``None``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, images: torch.Tensor) -> _Batch:
        maps = self.conv(images)
        return _Batch(pred_score=maps.amax(dim=(1, 2, 3)), pred_label=None, anomaly_map=maps)


def _fail_inside_export() -> None:
    with third_party_noise_filtered():
        msg = "actionable"
        raise ValueError(msg)


def test_errors_pass_the_noise_filter() -> None:
    with pytest.raises(ValueError, match="actionable"):
        _fail_inside_export()


def test_ir_is_named_like_the_onnx_route_with_a_dynamic_batch() -> None:
    module = _Scorer().eval()
    example = example_input((16, 24))
    names = output_names(module, example)
    assert names == ["pred_score", "anomaly_map"]
    with third_party_noise_filtered():
        model = convert_exported_program(export_program(module, example), names)
    assert [node.get_names() for node in model.inputs] == [{"input"}]
    assert model.inputs[0].partial_shape == ov.PartialShape([-1, 3, 16, 24])
    assert [node.any_name for node in model.outputs] == names
    images = torch.rand(3, 3, 16, 24)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(images.numpy())
    with torch.no_grad():
        expected = module(images)
    torch.testing.assert_close(torch.from_numpy(result["pred_score"]), expected.pred_score, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(result["anomaly_map"]), expected.anomaly_map, atol=1e-5, rtol=1e-5)


def test_convert_refuses_a_mismatched_output_list() -> None:
    module = _Scorer().eval()
    example = example_input((8, 8))
    with pytest.raises(RuntimeError, match="expected one image input"), third_party_noise_filtered():
        convert_exported_program(export_program(module, example), ["pred_score"])
