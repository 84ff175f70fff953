# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Scoring: training-data statistics, per-image map post-processing, log-domain maps and the float32 scoring steps."""

from .log_maps import complements, expm1, log1p, log_domain, logaddexp, logsumexp
from .maps import GaussianBlur, check_top_k, image_score, upsample_maps
from .statistics import TrainingStatistics, UnfittedStatisticsError, supports_float64
from .steps import ScoringStepsMixin

__all__ = [
    "GaussianBlur",
    "ScoringStepsMixin",
    "TrainingStatistics",
    "UnfittedStatisticsError",
    "check_top_k",
    "complements",
    "expm1",
    "image_score",
    "log1p",
    "log_domain",
    "logaddexp",
    "logsumexp",
    "supports_float64",
    "upsample_maps",
]
