# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's map keeps its resolution at both ends and its order far out, equals the paper's map under a monotone
transform, and exports."""

import math

import numpy as np
import pytest
import torch

from anomalib_nfplus.flows import HierarchicalGaussianMixture
from anomalib_nfplus.models.components import GaussianBlur, TrainingStatistics, image_score, upsample_maps
from anomalib_nfplus.models.hgad.anomaly_map import (
    AnomalyMapGenerator,
    expm1,
    level_maps,
    log1p,
    map_index,
    statistics_maps,
)
from tests.helpers.compare import torch_and_openvino

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


#: ``v - max`` of the stripes: the most normal position, then anomalies out to where real data reaches (ELPV: -537).
FAR = (0.0, -50.0, -150.0, -300.0, -600.0, -1000.0)
STRIPES = (32, 32 * len(FAR))  # output size: one 32-pixel stripe per value, wider than blur radius + upsampling


def _stripes(scale: float = 1.0) -> list[torch.Tensor]:
    """One image, two levels (factors 2 and 4): vertical stripes of ``scale * FAR``, the first one normal."""
    row = torch.tensor(FAR).mul(scale).repeat_interleave(16)
    return [row.view(1, 1, -1).expand(1, 16, -1).contiguous(), row[::2].view(1, 1, -1).expand(1, 8, -1).contiguous()]


def _centres(anomaly_map: torch.Tensor) -> torch.Tensor:
    """The map at the centre of every stripe, float64."""
    return anomaly_map[0, 0, 16, 16::32].double()


@pytest.mark.parametrize("with_entropy", [False, True], ids=["likelihood", "entropy"])
def test_far_out_positions_keep_their_order(with_entropy: bool) -> None:
    """Positions 50 to 1000 nats below the image's most normal one: ordered, not saturated at ~88 nats.

    Constant stripes: the exact map is ``-d`` (with the entropy map ``-d / 2`` times ``1/2``:
    ``-log(e^d + e^(d/2) (1 - e^d))``), hand-computed in float64.
    """
    likelihood = _stripes()
    entropy = _stripes(0.5) if with_entropy else None
    zeros = [ZERO, ZERO]
    got = _centres(AnomalyMapGenerator(1.0).combine(likelihood, zeros, entropy, zeros if entropy else None, STRIPES))
    d = torch.tensor(FAR, dtype=torch.float64)
    expected = -torch.logaddexp(d, d / 2 + torch.log(-torch.expm1(d))) if with_entropy else -d
    expected[0] = 0.0  # the normal stripe: A = 0 exactly
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert (got.diff() > 0).all()


@pytest.mark.parametrize("with_entropy", [False, True], ids=["likelihood", "entropy"])
def test_far_out_images_keep_their_order_each_on_its_own(with_entropy: bool) -> None:
    """Image scores (max of the map) of images with a normal corner and a far-out rest: ordered, batch-independent."""
    anomalous = FAR[1:]
    first = torch.tensor(anomalous).view(-1, 1, 1).repeat(1, 16, 16)
    first[:, :4, :4] = 0.0  # each image's most normal position: the per-image shift is 0
    second = first[:, ::2, ::2].contiguous()
    likelihood = [first, second]
    entropy = [first / 2, second / 2] if with_entropy else None
    zeros = [ZERO, ZERO]
    generator = AnomalyMapGenerator(1.0)
    maps = generator.combine(likelihood, zeros, entropy, zeros if entropy else None, (32, 32))
    scores = image_score(maps).double()
    assert (scores.diff() > 0).all()
    if not with_entropy:
        torch.testing.assert_close(scores, -torch.tensor(anomalous, dtype=torch.float64), rtol=1e-5, atol=0)
    for i in range(len(anomalous)):
        alone = generator.combine(
            [v[i : i + 1] for v in likelihood],
            zeros,
            [v[i : i + 1] for v in entropy] if entropy else None,
            zeros if entropy else None,
            (32, 32),
        )
        torch.testing.assert_close(alone, maps[i : i + 1], rtol=1e-5, atol=1e-5)  # up to the kernels' rounding


def test_far_out_positions_single_level_without_blur_are_minus_d() -> None:
    """One level at output size, no blur: every position's map is ``-d`` exactly, however far out."""
    d = torch.tensor((*FAR, -537.0, -88.0, -104.0)).view(1, 1, -1)
    got = AnomalyMapGenerator(0.0).combine([d], [ZERO], None, None, (1, d.shape[-1]))
    torch.testing.assert_close(got.flatten(), -d.flatten(), rtol=1e-6, atol=0)


def test_label_free_forward_keeps_far_out_latents_ordered() -> None:
    """Through the prior: latents ever further from the centre score ever higher, up to ~1000 nats per dimension."""
    prior = HierarchicalGaussianMixture(2, 1, 4, learn_means=False, learn_weights=False).eval()
    centre = prior.inter_means[0].detach()
    direction = torch.tensor([1.0, -1.0, 1.0, 1.0]) / 2
    radii = torch.tensor([0.0, 20.0, 35.0, 50.0, 70.0, 90.0])
    z = (centre + radii[:, None] * direction).view(1, 1, -1, 4)
    log_det = torch.zeros(1, 1, len(radii))
    statistics = TrainingStatistics(statistics_maps(1, 2))
    log_p, _ = level_maps(prior, z.view(-1, 4), log_det.view(-1), None, len(radii))
    statistics.maximum[map_index(0, 1, 2)] = log_p[0]  # the centre is the most normal training position
    assert (log_p - log_p[0]).min() < -1000
    got = AnomalyMapGenerator(0.0, use_entropy=False)([(z, log_det)], [prior], statistics, None, (1, len(radii)))
    torch.testing.assert_close(got.flatten(), log_p[0] - log_p, rtol=1e-5, atol=1e-5)
    assert (got.flatten().diff() > 0).all()


def _old_complements(d: list[torch.Tensor], blur: GaussianBlur) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact formula alone (before the far-field estimate), to compare bit for bit in the ordinary range."""
    levels = len(d)
    a = blur(upsample_maps([-expm1(v) for v in d], SIZE).sum(1, keepdim=True).clamp_min(0.0))
    shift = torch.stack([v.flatten(1).amax(dim=1) for v in d], dim=1).amax(dim=1).clamp_max(0.0).view(-1, 1, 1, 1)
    scaled = upsample_maps([torch.exp(v - shift.view(-1, 1, 1)) for v in d], SIZE).sum(1, keepdim=True)
    kept = blur(torch.minimum(scaled, levels * torch.exp(-shift)))
    return a / levels, shift + torch.log(kept.clamp_min(torch.finfo(torch.float32).tiny)) - math.log(levels)


@pytest.mark.parametrize("spread", [1.0, 20.0, 75.0])
def test_bit_identical_to_the_exact_formula_in_the_ordinary_range(spread: float) -> None:
    """Where the exact form resolves the map (down to ``e^-80`` below the image's peak), nothing changes."""
    generator = torch.Generator().manual_seed(1)
    d = [torch.rand(3, 4, 4, generator=generator) * -spread, torch.rand(3, 2, 2, generator=generator) * -spread]
    d[0][0, 0, 0] = 0.3  # above the training maximum: clamped
    blur = GaussianBlur(1.0)
    a, log_s = AnomalyMapGenerator(1.0).complements(d, SIZE)
    old_a, old_log_s = _old_complements(d, blur)
    assert torch.equal(a, old_a)
    assert torch.equal(log_s, old_log_s)


@pytest.mark.export
def test_openvino_keeps_far_out_positions_ordered() -> None:
    """The far-field estimate exports (``torch.export`` -> OpenVINO, f32) and matches torch on far-out stripes."""

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.map = AnomalyMapGenerator(1.0)

        def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            return self.map.combine([first, second], [ZERO, ZERO], [first * 0.5, second * 0.5], [ZERO, ZERO], STRIPES)

    inputs = tuple(_stripes())
    got, expected = torch_and_openvino(Module().eval(), inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (np.diff(got[0, 0, 16, 16::32]) > 0).all()
