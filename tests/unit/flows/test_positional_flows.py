# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""PositionalFlows: equal to running each fiber through the level's flow with its encoding; deterministic."""

import pytest
import torch

from anomalib_nfplus.flows import (
    AllInOneCoupling,
    PositionalFlows,
    positional_encoding_2d,
    subnet_dtype,
    use_subnet_precision,
)


def test_matches_per_fiber_application():
    torch.manual_seed(0)
    flows = PositionalFlows([8, 12], n_blocks=2, cond_dim=8).eval()
    feats = [torch.randn(2, 8, 3, 4), torch.randn(2, 12, 2, 2)]
    (z0, ld0), _ = flows(feats)
    pos = positional_encoding_2d(8, 3, 4)
    b, h, w = 1, 2, 3
    z, ld = flows.flows[0](feats[0][b, :, h, w].unsqueeze(0), pos[:, h, w].unsqueeze(0))
    assert torch.allclose(z0[b, h, w], z[0], atol=1e-6)
    assert torch.allclose(ld0[b, h, w], ld[0], atol=1e-6)


def test_position_chunks_cover_every_fiber_once_with_the_level_values():
    torch.manual_seed(0)
    flows = PositionalFlows([8, 12], n_blocks=2, cond_dim=8).double().eval()
    feats = [torch.randn(3, 8, 4, 5).double(), torch.randn(3, 12, 2, 3).double()]
    chunks = list(flows.position_chunks(feats, fiber_batch_size=15))
    assert len(chunks) == round((60 + 18) / 15)
    for level, (z, log_det) in enumerate(flows(feats)):
        parts = [(zc, ldc) for chunk in chunks for index, zc, ldc in chunk if index == level]
        z_chunks, det_chunks = torch.cat([zc for zc, _ in parts], 1), torch.cat([ld for _, ld in parts], 1)
        assert det_chunks.shape == (3, log_det[0].numel())  # every position of every image, once
        torch.testing.assert_close(det_chunks.sort().values, log_det.flatten(1).sort().values)
        torch.testing.assert_close(z_chunks.sum(-1).sort().values, z.flatten(1, 2).sum(-1).sort().values)


def test_condition_term_is_the_conditions_share_of_the_concatenating_subnet():
    """``subnet([x1, c]) == rest(W_x x1 + condition_term(c))``: the fused path computes the concatenating subnet."""
    torch.manual_seed(0)
    block = AllInOneCoupling(6, 8, seed=0).double()
    x, cond = torch.randn(7, 6).double(), torch.randn(7, 8).double()
    first, activation, last = block.subnet
    x1 = x[:, :3]
    fused = last(activation(torch.nn.functional.linear(x1, first.weight[:, :3]) + block.condition_term(cond)))
    torch.testing.assert_close(fused, block.subnet(torch.cat([x1, cond], dim=1)))


def test_broadcast_condition_term_equals_one_term_per_row():
    torch.manual_seed(0)
    block = AllInOneCoupling(6, 8, seed=0).double()
    x, cond = torch.randn(3, 5, 6).double(), torch.randn(5, 8).double()  # 3 images x 5 positions
    y, log_det = block.forward_with_term(x, block.condition_term(cond))
    rows = [block(x[i], cond) for i in range(3)]
    torch.testing.assert_close(y, torch.stack([r[0] for r in rows]))
    torch.testing.assert_close(log_det, torch.stack([r[1] for r in rows]))


def test_bfloat16_subnets_only_in_training_mode():
    torch.manual_seed(0)
    flows = PositionalFlows([8], n_blocks=2, cond_dim=8)
    features = [torch.randn(2, 8, 3, 4)]
    ((exact, _),) = flows(features)
    use_subnet_precision(torch.nn.Sequential(flows), "bfloat16", torch.device("cpu"))
    assert flows.subnet_dtype is torch.bfloat16
    ((low, _),) = flows(features)
    assert low.dtype == torch.float32
    assert not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.05)
    ((evaluated, _),) = flows.eval()(features)
    torch.testing.assert_close(evaluated, exact, rtol=0, atol=0)


def test_seeded_rotations_are_reproducible_and_differ_per_level():
    a, b = (
        PositionalFlows([8, 8], n_blocks=1, cond_dim=8, seed=3),
        PositionalFlows([8, 8], n_blocks=1, cond_dim=8, seed=3),
    )
    sa, sb = a.state_dict(), b.state_dict()
    rotations = [k for k in sa if "weight" not in k and sa[k].dim() == 2 and sa[k].shape == (8, 8)]
    assert rotations
    assert all(torch.equal(sa[k], sb[k]) for k in rotations)
    level0 = [k for k in rotations if k.startswith("flows.0.")]
    level1 = [k.replace("flows.0.", "flows.1.", 1) for k in level0]
    assert not all(torch.equal(sa[k0], sa[k1]) for k0, k1 in zip(level0, level1, strict=True))


def test_errors_name_the_problem():
    flows = PositionalFlows([8], n_blocks=1, cond_dim=8)
    with pytest.raises(ValueError, match="1 feature levels"):
        flows([torch.randn(1, 8, 2, 2)] * 2)
    with pytest.raises(ValueError, match="expects 8 channels"):
        flows([torch.randn(1, 4, 2, 2)])
    with pytest.raises(ValueError, match="at least one"):
        PositionalFlows([])


def test_encoding_first_built_in_inference_mode_still_trains():
    """Testing or predicting before fitting builds the cached encodings; autograd must accept them afterwards."""
    torch.manual_seed(0)
    flows = PositionalFlows([8], n_blocks=2, cond_dim=8)
    features = [torch.randn(2, 8, 3, 4)]
    with torch.inference_mode():
        flows.eval()(features)
    ((z, log_det),) = flows.train()(features)
    (z.square().sum() - log_det.sum()).backward()
    assert all(p.grad is not None for p in flows.parameters() if p.requires_grad)


def test_low_precision_encoding_is_the_float32_encoding_rounded():
    """Built in bfloat16, the sines of large positions are off by up to 0.34 (256 channels, 128x128)."""
    flows = PositionalFlows([8], n_blocks=1, cond_dim=256)
    low = flows.encoding(128, 128, torch.zeros(1, dtype=torch.bfloat16))
    exact = positional_encoding_2d(256, 128, 128).flatten(1).T
    assert low.dtype == torch.bfloat16
    assert torch.equal(low, exact.bfloat16())
    double = flows.encoding(4, 4, torch.zeros(1, dtype=torch.float64))  # never below float32, never rounded to it
    assert torch.equal(double, positional_encoding_2d(256, 4, 4, dtype=torch.float64).flatten(1).T)


def test_auto_subnet_precision_ignores_emulated_bfloat16(monkeypatch):
    """T4/V100 emulate bfloat16 (slower than float32); torch counts that as support unless told not to."""
    asked: list[bool] = []

    def emulated_only(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated_only)
    assert subnet_dtype("auto", torch.device("cuda")) is None
    assert asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert subnet_dtype("auto", torch.device("cuda")) is torch.bfloat16
