# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""TrainingStatistics: streaming moments equal the batch moments; misuse fails loudly."""

import pytest
import torch
from torch import nn

from anomalib_nfplus.models.components import TrainingStatistics, UnfittedStatisticsError


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


def _reduce_shard(rank: int, world: int, store: str, values: torch.Tensor, out: str) -> None:
    """One process of :func:`test_shards_reduce_to_the_whole_set_statistics`: its shard, then the reduction."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        stats = TrainingStatistics(2)
        stats.reset()
        for chunk in values[rank::world].split(7):  # every world-th value: shards of different sizes and ranges
            stats.update(0, chunk)
        if rank == 0:  # map 1 gets values on one process only
            stats.update(1, values[:5])
        stats.all_reduce()
        stats.finalize()
        torch.save(stats.state_dict(), f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_shards_reduce_to_the_whole_set_statistics(tmp_path):
    """Two gloo processes, each with a shard: after all_reduce both hold the one-process statistics."""
    torch.manual_seed(0)
    values = torch.cat([torch.randn(61) * 3 + 2, torch.tensor([40.0, -30.0])])
    torch.multiprocessing.start_processes(
        _reduce_shard,
        args=(2, str(tmp_path / "store"), values, str(tmp_path / "stats")),
        nprocs=2,
        start_method="fork",  # no re-import of torch; the processes only run gloo on the CPU
    )
    whole = TrainingStatistics(2)
    whole.reset()
    whole.update(0, values)
    whole.update(1, values[:5])
    whole.finalize()
    for rank in range(2):
        reduced = torch.load(tmp_path / f"stats.{rank}")
        for name, buffer in whole.state_dict().items():
            torch.testing.assert_close(reduced[name], buffer, rtol=1e-6, atol=1e-6, msg=name)


def test_devices_without_float64_reduce_in_float32_and_accumulate_on_the_cpu(monkeypatch):
    """Apple's MPS has no float64: each batch is reduced in float32 and only its sums reach the float64 CPU totals."""
    from anomalib_nfplus.models.components.scoring import statistics

    torch.manual_seed(0)
    values = [torch.randn(5000) * 2 + 7 for _ in range(4)]
    reference = TrainingStatistics(1)
    reference.reset()
    for batch in values:
        reference.update(0, batch)
    reference.finalize()

    asked: list[torch.device] = []
    monkeypatch.setattr(statistics, "supports_float64", lambda device: asked.append(device) or False)
    stats = TrainingStatistics(1)
    stats.reset()
    assert stats._sums.device.type == "cpu"
    assert stats._sums.dtype == torch.float64
    for batch in values:
        stats.update(0, batch)
    stats.finalize()
    assert asked  # the float64 question was asked of the device (MPS answers no)
    torch.testing.assert_close(stats.mean, reference.mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(stats.std, reference.std, rtol=1e-5, atol=0)
    assert torch.equal(stats.minimum, reference.minimum)
    assert torch.equal(stats.maximum, reference.maximum)


class _Standardize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.statistics = TrainingStatistics(1)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        self.statistics.require_fitted("Head")
        return self.statistics.standardize(0, values)


def test_unfitted_statistics_refuse_eager_scoring_but_not_a_trace():
    head = _Standardize()
    with pytest.raises(UnfittedStatisticsError, match=r"Head has no training statistics.*statistics\.finalize\(\)"):
        head(torch.ones(2))
    program = torch.export.export(head, (torch.ones(2),), strict=False)  # the export checks before tracing
    torch.testing.assert_close(program.module()(torch.full((2,), 3.0)), torch.full((2,), 3.0))
    head.statistics.reset()
    head.statistics.update(0, torch.tensor([1.0, 3.0]))
    head.statistics.finalize()
    torch.testing.assert_close(head(torch.full((2,), 3.0)), torch.full((2,), 1.0))
