# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""TrainingStatistics: streaming moments equal the batch moments; misuse fails loudly."""

import pytest
import torch

from anomalib_nfplus.models.components import TrainingStatistics


def test_streaming_equals_batch_statistics():
    torch.manual_seed(0)
    a, b = torch.randn(1000) * 3 + 2, torch.randn(50, 7) - 5
    stats = TrainingStatistics(2)
    stats.reset()
    for chunk in a.split(97):
        stats.update(0, chunk)
    stats.update(1, b)
    stats.finalize()
    assert torch.allclose(stats.mean, torch.stack([a.mean(), b.mean()]), atol=1e-5)
    assert torch.allclose(stats.std, torch.stack([a.std(unbiased=False), b.std(unbiased=False)]), atol=1e-5)
    assert stats.maximum.tolist() == pytest.approx([a.max().item(), b.max().item()])
    assert stats.minimum.tolist() == pytest.approx([a.min().item(), b.min().item()])
    assert bool(stats.fitted)
    z = stats.standardize(0, a)
    assert z.mean().abs() < 1e-4
    assert (z.std(unbiased=False) - 1).abs() < 1e-4


def test_statistics_travel_in_the_state_dict():
    stats = TrainingStatistics(1)
    stats.reset()
    stats.update(0, torch.tensor([1.0, 5.0]))
    stats.finalize()
    clone = TrainingStatistics(1)
    clone.load_state_dict(stats.state_dict())
    assert clone.mean.item() == 3.0
    assert bool(clone.fitted)


def test_buffers_unchanged_until_finalize():
    stats = TrainingStatistics(1)
    stats.reset()
    stats.update(0, torch.tensor([10.0]))
    assert stats.mean.item() == 0.0
    assert not bool(stats.fitted)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda s: s.update(0, torch.ones(2)), "before reset"),
        (lambda s: (s.reset(), s.finalize()), "no values"),
        (lambda s: (s.reset(), s.update(0, torch.tensor([float("nan")]))), "Non-finite"),
    ],
)
def test_misuse_is_reported(action, message):
    with pytest.raises(RuntimeError, match=message):
        action(TrainingStatistics(1))


def test_needs_a_map():
    with pytest.raises(ValueError, match="at least one map"):
        TrainingStatistics(0)
