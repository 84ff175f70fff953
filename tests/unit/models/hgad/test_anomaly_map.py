# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's map keeps its resolution at both ends, equals the paper's map under a monotone transform, and exports."""

import math

import numpy as np
import pytest
import torch

from anomalib_nfplus.models.components import GaussianBlur, upsample_maps
from anomalib_nfplus.models.hgad.anomaly_map import AnomalyMapGenerator, expm1, log1p

SIZE = (8, 8)
ZERO = torch.tensor(0.0)


def _constant(d: float, batch: int = 1) -> list[torch.Tensor]:
    """Two levels (4x4 and 2x2) whose ``v - max`` is ``d`` everywhere."""
    return [torch.full((batch, 4, 4), d), torch.full((batch, 2, 2), d)]


def _map(likelihood: list[torch.Tensor], entropy: list[torch.Tensor] | None = None) -> torch.Tensor:
    zeros = [ZERO] * len(likelihood)
    return AnomalyMapGenerator(1.0).combine(likelihood, zeros, entropy, zeros if entropy else None, SIZE)


def _paper_map(d: list[torch.Tensor], blur: GaussianBlur) -> torch.Tensor:
    """The official form ``blur(clamp(L - sum_l up(exp(d_l)), 0))``, in the dtype of ``d``."""
    summed = upsample_maps([v.exp() for v in d], SIZE).sum(1, keepdim=True)
    return blur((len(d) - summed).clamp_min(0.0))


@pytest.mark.parametrize(("low", "high"), [(-20.0, -22.0), (-1e-8, -2e-8)])
def test_old_form_collapses_new_form_keeps_both_ends(low: float, high: float) -> None:
    """Hand-computed: constant maps give ``S = L exp(d)``, so ``-log(1 - A / L) = -d`` exactly."""
    blur = GaussianBlur(1.0)
    old = [_paper_map(_constant(d), blur) for d in (low, high)]
    assert torch.equal(old[0], old[1])  # float32 cannot tell 2 - 2e-9 from 2 - 3e-10, nor 2e-8 from 4e-8
    new = [_map(_constant(d)) for d in (low, high)]
    for d, result in zip((low, high), new, strict=True):
        torch.testing.assert_close(result, torch.full_like(result, -d), rtol=1e-5, atol=0)


def test_product_with_the_entropy_map_keeps_both_ends() -> None:
    """``-log(1 - a1 a2)`` with ``1 - a = exp(d)``: hand-computed for a far-out and a near-normal entropy."""
    far = _map(_constant(-20.0), _constant(-22.0))
    expected = -math.log(math.exp(-20.0) + math.exp(-22.0) * (1 - math.exp(-20.0)))
    torch.testing.assert_close(far, torch.full_like(far, expected), rtol=1e-5, atol=0)
    near = _map(_constant(-20.0), _constant(-1e-8))
    expected = -math.log1p(-(1 - math.exp(-20.0)) * -math.expm1(-1e-8))
    torch.testing.assert_close(near, torch.full_like(near, expected), rtol=1e-5, atol=0)


def test_monotone_transform_of_the_paper_map() -> None:
    """On varied maps (upsampling, blur, clamping at 0 above the training maximum) ``L (1 - exp(-T))`` is ``A``."""
    generator = torch.Generator().manual_seed(0)
    likelihood = [
        torch.rand(3, 4, 4, generator=generator) * 4 - 3.5,
        torch.rand(3, 2, 2, generator=generator) * 4 - 3.5,
    ]
    entropy = [torch.rand(3, 4, 4, generator=generator) * -2, torch.rand(3, 2, 2, generator=generator) * -2]
    blur = GaussianBlur(1.0).double()
    a_logp = _paper_map([v.double() for v in likelihood], blur) / 2
    a_entropy = _paper_map([v.double() for v in entropy], blur) / 2
    single, product = _map(likelihood).double(), _map(likelihood, entropy).double()
    torch.testing.assert_close(1 - torch.exp(-single), a_logp, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(1 - torch.exp(-product), a_logp * a_entropy, rtol=1e-5, atol=1e-7)
    assert (single >= 0).all()
    above = [v.clone() for v in likelihood]
    for v in above:
        v[0] = 0.5  # the first image is more normal than the training maximum everywhere: clamped to 0 anomaly
    assert torch.equal(_map(above)[0], torch.zeros(1, *SIZE))


def test_exportable_expm1_and_log1p_match_torch() -> None:
    x = torch.tensor(
        [-0.5, -0.1001, -0.1, -0.0999, -1e-3, -1e-8, 0.0, 1e-7, 0.05, 0.0999, 0.1, 0.3], dtype=torch.float64
    )
    torch.testing.assert_close(expm1(x.float()).double(), torch.expm1(x), rtol=1e-6, atol=0)
    torch.testing.assert_close(log1p(x.float()).double(), torch.log1p(x), rtol=1e-6, atol=0)


@pytest.mark.export
def test_openvino_keeps_the_resolution(tmp_path) -> None:
    """ONNX has no Expm1/Log1p and lowers logaddexp naively: the exported map must still tell the values apart."""
    import openvino as ov

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.map = AnomalyMapGenerator(1.0)

        def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            return self.map.combine([first, second], [ZERO, ZERO], [first * 0.5, second], [ZERO, ZERO], SIZE)

    d = torch.tensor([-1e-8, -2e-8, -20.0, -22.0, -150.0]).view(-1, 1, 1)
    inputs = (d.expand(-1, 4, 4).contiguous(), d.expand(-1, 2, 2).contiguous())
    module = Module().eval()
    expected = module(*inputs)
    path = tmp_path / "map.onnx"
    torch.onnx.export(module, inputs, path, dynamo=True, input_names=["first", "second"])
    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled([t.numpy() for t in inputs])[compiled.outputs[0]]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=0)
    assert len(np.unique(got.reshape(len(d), -1)[:, 0])) == len(d)
    assert np.isfinite(got).all()
