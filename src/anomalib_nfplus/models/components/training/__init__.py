# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Training plumbing: loss guard, chunked manual optimisation, statistics lifecycle, schedule, argument checks."""

from .chunked import ChunkedOptimizationMixin, ChunkLoss
from .loss_guard import LossGuardMixin, NonFiniteLossError
from .schedule import (
    OFFICIAL_WARMUP_FRACTION,
    schedule_epochs,
    warmup_cosine,
    warmup_cosine_factor,
    warmup_cosine_scheduler,
)
from .statistics_lifecycle import StatisticsModel, TrainingStatisticsMixin
from .subnet_precision import check_subnet_precision

__all__ = [
    "OFFICIAL_WARMUP_FRACTION",
    "ChunkLoss",
    "ChunkedOptimizationMixin",
    "LossGuardMixin",
    "NonFiniteLossError",
    "StatisticsModel",
    "TrainingStatisticsMixin",
    "check_subnet_precision",
    "schedule_epochs",
    "warmup_cosine",
    "warmup_cosine_factor",
    "warmup_cosine_scheduler",
]
