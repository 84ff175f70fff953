# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Scoring: training-data statistics, per-image map post-processing, and the float32 scoring steps."""

from .maps import GaussianBlur, check_top_k, image_score, upsample_maps
from .statistics import TrainingStatistics, supports_float64
from .steps import ScoringStepsMixin

__all__ = [
    "GaussianBlur",
    "ScoringStepsMixin",
    "TrainingStatistics",
    "check_top_k",
    "image_score",
    "supports_float64",
    "upsample_maps",
]
