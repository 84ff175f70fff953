# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""TrainingStatisticsMixin: what the model receives, when statistics are refused, and the model contract."""

import logging

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
    UnfittedStatisticsError,
)
from tests.unit.models.components.modules import ImageBatch, Scorer, Tiny, TinyChunked

LOGGER = "anomalib_nfplus.models.components.training.statistics_lifecycle"


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
    pattern = r"TinyChunked cannot score without a datamodule that has training images: .* were never collected"
    with pytest.raises(UnfittedStatisticsError, match=pattern):
        TinyChunked()._refresh_statistics()


def test_unfitted_statistics_are_collected_before_testing_with_one_info_line(caplog):
    module = TinyChunked()
    module._training_loader = lambda: [ImageBatch(torch.full((2, 3, 4, 4), 2.0))]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        module.on_test_start()
    assert bool(module.model.statistics.fitted)
    assert module.model.statistics.mean.item() == pytest.approx(2.0)
    messages = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert messages == [
        "TinyChunked: training statistics were never collected for these weights; collecting them from the "
        "datamodule's training images."
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        module.on_predict_start()  # fitted and unchanged: nothing collected, nothing said
    assert not [record for record in caplog.records if record.name == LOGGER]
    assert len(module.model.seen) == 1


@pytest.mark.parametrize("export", ["to_torch", "to_onnx", "to_openvino", "ov_model"])
def test_every_export_refuses_unfitted_statistics_before_tracing(export, tmp_path):
    module = TinyChunked()
    calls = {
        "to_torch": lambda: module.to_torch(tmp_path),
        "to_onnx": lambda: module.to_onnx(tmp_path, input_size=(4, 4)),
        "to_openvino": lambda: module.to_openvino(tmp_path, input_size=(4, 4)),
        "ov_model": lambda: module.ov_model((4, 4)),
    }
    fix = r"engine\.validate\(model, datamodule=datamodule\)"
    with pytest.raises(UnfittedStatisticsError, match=rf"TinyChunked cannot be exported: .*never collected.*{fix}"):
        calls[export]()
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


def test_fitted_statistics_export(tmp_path):
    module = TinyChunked()
    module.collect_training_statistics([ImageBatch(torch.rand(2, 3, 4, 4))])
    module.check_fitted()
    assert module.to_torch(tmp_path).is_file()


def test_the_last_finite_checkpoint_is_described_where_statistics_are_used():
    note = TinyChunked().last_finite_note()
    assert "holds no training statistics" in note
    assert "engine.validate(model, datamodule=datamodule, ckpt_path=<that file>)" in note
    assert Tiny().last_finite_note() == ""  # no statistics, nothing missing


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
