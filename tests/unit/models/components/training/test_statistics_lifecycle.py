# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""TrainingStatisticsMixin: what the model receives, when statistics are refused, and the model contract."""

import pytest
import torch
from anomalib.data import ImageBatch as AnomalibImageBatch
from anomalib.models import AnomalibModule
from torch import nn

from anomalib_nfplus.models.components import (
    FlowModuleMixin,
    StatisticsModel,
    TrainingStatistics,
    TrainingStatisticsMixin,
)
from tests.unit.models.components.modules import ImageBatch, Scorer, TinyChunked


def test_statistics_come_from_every_training_batch_in_eval_mode():
    module = TinyChunked()
    loader = [ImageBatch(torch.full((2, 3, 4, 4), float(v))) for v in (1.0, 3.0)]
    module.model.train()
    module.collect_training_statistics(loader)
    stats = module.model.statistics
    assert stats.mean.item() == pytest.approx(2.0)
    assert stats.maximum.item() == pytest.approx(3.0)
    assert bool(stats.fitted)
    assert module.model.training  # mode restored
    assert not module.statistics_stale


def test_the_model_receives_the_batch_with_pre_processed_images_and_its_other_fields():
    module = TinyChunked()
    module.pre_processor = nn.Identity()
    module.pre_processor.transform = lambda images: images * 2  # stands in for resize + normalise
    classes = torch.tensor([1, 0])
    batch = ImageBatch(torch.full((2, 3, 4, 4), 1.0, dtype=torch.float16), classes)
    module.collect_training_statistics([batch])
    (seen,) = module.model.seen
    assert seen is not batch
    assert seen.class_index is classes
    assert seen.image.dtype == torch.float32
    torch.testing.assert_close(seen.image, torch.full((2, 3, 4, 4), 2.0))
    assert batch.image.dtype == torch.float16  # the loader's batch is left as it was


def test_anomalib_batches_keep_their_type():
    module = TinyChunked()
    batch = AnomalibImageBatch(image=torch.rand(2, 3, 4, 4))
    module.collect_training_statistics([batch])
    assert isinstance(module.model.seen[0], AnomalibImageBatch)


def test_refresh_without_training_data_or_statistics_is_an_error():
    with pytest.raises(RuntimeError, match="Train it first"):
        TinyChunked()._refresh_statistics()


def test_the_hook_sees_the_share_before_the_sums_are_final():
    module = TinyChunked()
    seen = []
    module.on_statistics_collected = lambda statistics, world: seen.append((statistics.empty_maps(), world))
    module.collect_training_statistics([ImageBatch(torch.rand(1, 3, 4, 4))])
    assert seen == [([], 1)]


def test_a_model_without_the_contract_is_named():
    class _Plain(TrainingStatisticsMixin, FlowModuleMixin, AnomalibModule):
        def __init__(self) -> None:
            super().__init__(pre_processor=False, post_processor=False, evaluator=False, visualizer=False)
            self.model = nn.Linear(1, 1)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters())

    assert isinstance(Scorer(), StatisticsModel)
    assert not isinstance(nn.Linear(1, 1), StatisticsModel)
    with pytest.raises(TypeError, match=r"needs `statistics` and `update_statistics\(batch\)`; Linear has not"):
        _Plain().collect_training_statistics([])


def test_empty_maps_are_named_before_finalize():
    stats = TrainingStatistics(3)
    stats.reset()
    stats.update(1, torch.ones(2))
    assert stats.empty_maps() == [0, 2]
