# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tiny models built from the components' mixins, for the mixins' unit tests (no Trainer, no backbone)."""

from collections.abc import Iterator
from typing import Any

import torch
from anomalib.data import InferenceBatch
from anomalib.models import AnomalibModule
from torch import nn

from anomalib_nfplus.models.components import (
    ChunkedOptimizationMixin,
    ChunkLoss,
    FlowModuleMixin,
    TrainingStatistics,
    TrainingStatisticsMixin,
)


class Scorer(nn.Module):
    """A :class:`StatisticsModel`: one scale, one map, and the batches ``update_statistics`` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.statistics = TrainingStatistics(1)
        self.seen: list[Any] = []

    def update_statistics(self, batch: Any) -> None:
        self.seen.append(batch)
        self.statistics.update(0, batch.image.mean(dim=1) * self.scale)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        amap = self.statistics.standardize(0, images.mean(dim=1, keepdim=True) * self.scale)
        return InferenceBatch(pred_score=amap.flatten(1).amax(1), anomaly_map=amap)


class Tiny(FlowModuleMixin, AnomalibModule):
    """Only the shared composition, as DifferNet uses it."""

    def __init__(self) -> None:
        super().__init__(pre_processor=False, post_processor=False, evaluator=False, visualizer=False)
        self.model = Scorer()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.check_loss(self.model.scale.sum() * 0)


class TinyChunked(ChunkedOptimizationMixin, TrainingStatisticsMixin, FlowModuleMixin, AnomalibModule):
    """Statistics and chunked training, as CflowAD and HGAD use them: two chunks, the second idles ``idle``."""

    def __init__(self) -> None:
        super().__init__(pre_processor=False, post_processor=False, evaluator=False, visualizer=False)
        self.model = Scorer()
        self.model.idle = nn.Parameter(torch.ones(3))
        self.automatic_optimization = False

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())

    def chunk_losses(self, batch: Any, batch_idx: int) -> Iterator[ChunkLoss]:
        del batch_idx
        yield ChunkLoss((self.model.scale * batch.image.mean()).sum(), [], {"part": 1.0})
        yield ChunkLoss((self.model.scale * 2).sum(), [self.model.idle], {"part": 3.0})


class ImageBatch:
    """The fields a training batch has that the mixins read."""

    def __init__(self, image: torch.Tensor, class_index: torch.Tensor | None = None) -> None:
        self.image = image
        self.class_index = class_index


def stepping(module: AnomalibModule) -> torch.optim.Optimizer:
    """Manual optimisation without a Trainer: the module's own optimizer and a plain backward."""
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1, weight_decay=0.1)
    module.optimizers = lambda: optimizer
    module.manual_backward = lambda loss: loss.backward()
    return optimizer
