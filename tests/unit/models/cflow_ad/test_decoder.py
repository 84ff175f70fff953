# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowDecoders: same maths as the concatenating flows, fiber chunking, deterministic soft permutations."""

import pytest
import torch

from anomalib_nfplus.flows import log_likelihood
from anomalib_nfplus.models.cflow_ad.decoder import CflowDecoders


def _decoders(**kwargs) -> CflowDecoders:
    torch.manual_seed(0)
    args = {"channels": [6, 10], "coupling_blocks": 2, "condition_dim": 8} | kwargs
    return CflowDecoders(**args).double()


def _features(batch: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 6, 4, 5, generator=generator).double(), torch.randn(batch, 10, 2, 3).double()]


def test_bfloat16_subnets_train_close_to_float32_and_leave_eval_exact():
    decoders = _decoders().float()
    features = [f.float() for f in _features()]
    exact = decoders.log_prob_maps(features)
    decoders.subnet_dtype = torch.bfloat16
    low = decoders.log_prob_maps(features)  # training mode: subnets in bfloat16
    for value, reference in zip(low, exact, strict=True):
        assert value.dtype == torch.float32
        assert not torch.equal(value, reference)
        torch.testing.assert_close(value, reference, rtol=0.05, atol=0.05)
        value.sum().backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in decoders.flows[0].parameters())
    decoders.eval()
    for value, reference in zip(decoders.log_prob_maps(features), exact, strict=True):
        torch.testing.assert_close(value, reference, rtol=0, atol=0)


def test_log_prob_map_equals_the_concatenating_flow():
    decoders = _decoders()
    for index, features in enumerate(_features()):
        x, cond = features.permute(0, 2, 3, 1).flatten(0, 2), decoders.encoding(*features.shape[2:], features)
        z, log_det = decoders.flows[index](x, cond.repeat(len(features), 1))  # the blocks' concatenating forward
        expected = log_likelihood(z, log_det, per_dim=True).view(features.shape[0], *features.shape[2:])
        torch.testing.assert_close(decoders.log_prob_map(index, features), expected)


def test_chunks_score_fibers_like_the_map():
    """A chunk's log-likelihoods are the map's values at its positions for all images; chunks cover every fiber."""
    decoders = _decoders()
    features = _features()
    maps = decoders.log_prob_maps(features)
    chunks = list(decoders.fiber_chunks(features, fiber_batch_size=15, per_level=False))
    assert len(chunks) == round((60 + 18) / 15)
    for level in range(2):
        values = torch.cat([value for chunk in chunks for i, value in chunk if i == level], dim=1)  # (B, positions)
        assert values.shape == (3, maps[level][0].numel())
        torch.testing.assert_close(values.sort().values, maps[level].flatten(1).sort().values)


def test_small_levels_join_fewer_chunks():
    """More chunks than a level has positions: that level appears in as many chunks as it has positions."""
    chunks = list(_decoders().fiber_chunks(_features(), fiber_batch_size=5, per_level=False))
    assert len(chunks) == min(round(78 / 5), 20)
    assert sum(value.numel() for chunk in chunks for _, value in chunk) == 78
    assert sorted({len(chunk) for chunk in chunks}) == [1, 2]


def test_per_level_chunks_follow_the_official_scheme():
    """Level 0 has 60 fibers -> 6 chunks of 10; level 1 has 18 -> 1 chunk of 10 (remainder dropped)."""
    chunks = list(_decoders().fiber_chunks(_features(), fiber_batch_size=10, per_level=True))
    assert [len(chunk) for chunk in chunks] == [1] * 7
    assert [len(chunk[0][1]) for chunk in chunks] == [10] * 7
    assert [chunk[0][0] for chunk in chunks] == [0] * 6 + [1]  # the level each trains


def test_too_few_fibers_give_one_smaller_chunk():
    """Documented fallback: a batch with fewer fibers than fiber_batch_size is one chunk, not zero steps."""
    features = [f[:1] for f in _features()]  # 20 and 6 fibers
    chunks = list(_decoders().fiber_chunks(features, fiber_batch_size=256, per_level=True))
    assert [len(chunk[0][1]) for chunk in chunks] == [20, 6]
    joint = list(_decoders().fiber_chunks(features, fiber_batch_size=256, per_level=False))
    assert len(joint) == 1
    assert [(level, values.numel()) for level, values in joint[0]] == [(0, 20), (1, 6)]


def test_soft_permutations_are_seeded_and_orthogonal():
    first, again, other = _decoders(seed=3), _decoders(seed=3), _decoders(seed=4)
    w = first.flows[1].blocks[1].w_perm
    torch.testing.assert_close(w, again.flows[1].blocks[1].w_perm, rtol=0, atol=0)
    assert not torch.allclose(w, other.flows[1].blocks[1].w_perm)
    torch.testing.assert_close(w @ w.T, torch.eye(10, dtype=w.dtype))
    assert "flows.0.blocks.0.w_perm" in first.state_dict()  # buffers: checkpoints carry them


def test_wrong_inputs_are_reported():
    decoders = _decoders()
    with pytest.raises(ValueError, match="expects 6 channels, got 10"):
        decoders.log_prob_map(0, torch.randn(1, 10, 2, 2).double())
    with pytest.raises(ValueError, match="Expected 2 feature levels, got 1"):
        decoders.log_prob_maps(_features()[:1])
