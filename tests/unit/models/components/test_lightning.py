# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""FlowModuleMixin: loss guard, strict loading message, statistics collection, schedule wiring."""

import pytest
import torch
from anomalib.data import InferenceBatch
from anomalib.models import AnomalibModule
from torch import nn

from anomalib_nfplus.models.components import FlowModuleMixin, NonFiniteLossError, TrainingStatistics


class _Scorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.statistics = TrainingStatistics(1)

    def update_statistics(self, images: torch.Tensor) -> None:
        self.statistics.update(0, images.mean(dim=1) * self.scale)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        amap = self.statistics.standardize(0, images.mean(dim=1, keepdim=True) * self.scale)
        return InferenceBatch(pred_score=amap.flatten(1).amax(1), anomaly_map=amap)


class _Tiny(FlowModuleMixin, AnomalibModule):
    def __init__(self) -> None:
        super().__init__(pre_processor=False, post_processor=False, evaluator=False, visualizer=False)
        self.model = _Scorer()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())

    def training_step(self, batch, *args, **kwargs):
        return self.check_loss(self.model.scale.sum() * 0)


class _Batch:
    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


def test_is_a_direct_anomalib_subclass_with_flow_defaults():
    assert AnomalibModule in _Tiny.__bases__
    module = _Tiny()
    assert module.learning_type.value == "one_class"
    assert module.trainer_arguments["num_sanity_val_steps"] == 0


def test_non_finite_loss_stops_with_a_clear_error():
    module = _Tiny()
    assert module.check_loss(torch.tensor(1.5)).item() == 1.5
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss.*outside a Trainer.*Lower the learning rate"):
        module.check_loss(torch.tensor(float("nan")))


def test_strict_loading_names_missing_and_unexpected_keys():
    module = _Tiny()
    state = module.state_dict()
    state["model.extra"] = torch.zeros(1)
    del state["model.scale"]
    with pytest.raises(
        RuntimeError, match=r"1 missing key\(s\) \['model.scale'\], 1 unexpected key\(s\) \['model.extra'\]"
    ):
        module.load_state_dict(state)
    module.load_state_dict(state, strict=False)  # non-strict stays available to those who ask for it


def test_statistics_collection_uses_training_images_and_caps_batches():
    module = _Tiny()
    loader = [_Batch(torch.full((2, 3, 4, 4), float(v))) for v in (1.0, 3.0, 100.0)]
    module.statistics_batches = 2
    module.model.train()
    module.collect_training_statistics(loader)
    stats = module.model.statistics
    assert stats.mean.item() == pytest.approx(2.0)
    assert stats.maximum.item() == pytest.approx(3.0)
    assert module.model.training  # mode restored


def test_refresh_without_training_data_or_statistics_is_an_error():
    with pytest.raises(RuntimeError, match="Train it first"):
        _Tiny()._refresh_statistics()


def test_strict_loading_names_wrong_shapes():
    module = _Tiny()
    state = module.state_dict()
    state["model.scale"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"model.scale \(shape \(3,\), expected \(1,\)\)"):
        module.load_state_dict(state)
