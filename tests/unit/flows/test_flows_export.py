# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Flows and priors trace with torch.export and run unchanged through ONNX (dynamo) and OpenVINO."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

from anomalib_nfplus.flows import HierarchicalGaussianMixture, SequentialFlow, allinone_flow, differnet_flow

pytestmark = [
    pytest.mark.export,
    # torch-internal notices of the dynamo exporter, not about our graphs
    pytest.mark.filterwarnings("ignore:# The axis name:UserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
]


class _FlowHead(nn.Module):
    """What a model's eval graph does with a flow: latents and log-dets."""

    def __init__(self, flow: SequentialFlow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flow(x, cond)


class _HGADHead(nn.Module):
    """Flow + hierarchical prior, class-conditional and label-free scores."""

    def __init__(self) -> None:
        super().__init__()
        self.flow = differnet_flow(6, n_blocks=2, hidden=8, depth=1, cond_dim=4)
        self.prior = HierarchicalGaussianMixture(n_classes=3, n_intra=2, dim=6)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, log_det = self.flow(x, cond)
        return self.prior.class_log_prob(z, y) + log_det, self.prior.log_prob(z), self.prior.class_posterior(z)


@pytest.fixture(scope="module")
def flow_head() -> _FlowHead:
    torch.manual_seed(0)
    head = _FlowHead(allinone_flow(8, n_blocks=2, cond_dim=4, permute_soft=True, seed=0)).eval()
    with torch.no_grad():  # move away from the identity-like init
        for param in head.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return head


def _inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return torch.randn(n, 8, generator=generator), torch.randn(n, 4, generator=generator)


def test_torch_export_non_strict_dynamic_batch(flow_head):
    batch = Dim("batch")
    program = torch.export.export(
        flow_head, _inputs(5), dynamic_shapes={"x": {0: batch}, "cond": {0: batch}}, strict=False
    )
    x, cond = _inputs(9)
    for got, expected in zip(program.module()(x, cond), flow_head(x, cond), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.fixture(scope="module")
def hgad_head() -> _HGADHead:
    torch.manual_seed(0)
    return _HGADHead().eval()


def _hgad_inputs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return torch.randn(n, 6, generator=generator), torch.randn(n, 4, generator=generator), torch.arange(n) % 3


def _hgad_dynamic_shapes() -> dict:
    batch = Dim("batch")
    return {"x": {0: batch}, "cond": {0: batch}, "y": {0: batch}}


def test_torch_export_hgad_head(hgad_head):
    # the label range check reads tensor values, so it must be skipped while tracing
    program = torch.export.export(hgad_head, _hgad_inputs(5), dynamic_shapes=_hgad_dynamic_shapes(), strict=False)
    inputs = _hgad_inputs(7)
    for got, expected in zip(program.module()(*inputs), hgad_head(*inputs), strict=True):
        torch.testing.assert_close(got, expected)


def test_hgad_head_onnx_to_openvino(hgad_head, tmp_path):
    ov = pytest.importorskip("openvino")
    path = tmp_path / "hgad.onnx"
    torch.onnx.export(hgad_head, _hgad_inputs(5), str(path), dynamo=True, dynamic_shapes=_hgad_dynamic_shapes())
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    inputs = _hgad_inputs(8)
    result = compiled([t.numpy() for t in inputs])
    with torch.no_grad():
        expected = hgad_head(*inputs)
    for k, tensor in enumerate(expected):
        np.testing.assert_allclose(result[compiled.output(k)], tensor.numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_dynamo_to_openvino_matches_torch(flow_head, tmp_path):
    ov = pytest.importorskip("openvino")
    path = tmp_path / "flow.onnx"
    batch = Dim("batch")
    torch.onnx.export(
        flow_head,
        _inputs(5),
        str(path),
        dynamo=True,
        input_names=["x", "cond"],
        output_names=["z", "log_det"],
        dynamic_shapes={"x": {0: batch}, "cond": {0: batch}},
    )
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for n in (5, 13):  # the exported batch size and another one
        x, cond = _inputs(n)
        with torch.no_grad():
            z, log_det = flow_head(x, cond)
        result = compiled([x.numpy(), cond.numpy()])
        np.testing.assert_allclose(result[compiled.output("z")], z.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result[compiled.output("log_det")], log_det.numpy(), rtol=1e-4, atol=1e-5)
