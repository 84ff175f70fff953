# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Model-level pieces shared by DifferNet, CflowAD and HGAD (the flows themselves live in ``flows``).

- :class:`FlowModuleMixin`: Lightning behaviour (statistics, loss guard, strict loading, schedule).
- :class:`TrainingStatistics`: map statistics from training images, stored as buffers.
- :class:`PositionalFlows`: one position-conditioned flow per feature level, all fibers at once.
- :func:`flow_pre_processor`, :func:`check_images`: backbone-aware pre-processing and input checks.
- :func:`upsample_maps`, :func:`image_score`, :class:`GaussianBlur`: per-image map post-processing.
- :func:`float32_scoring`: scores in float32 under a mixed-precision trainer.
- :func:`warmup_cosine_factor`, :func:`warmup_cosine_scheduler`: CFLOW-AD's learning-rate schedule.
"""

from .inputs import check_images, flow_pre_processor
from .lightning import FlowModuleMixin, NonFiniteLossError
from .maps import GaussianBlur, check_top_k, image_score, upsample_maps
from .positional_flows import PositionalFlows
from .precision import float32_scoring
from .schedule import warmup_cosine_factor, warmup_cosine_scheduler
from .statistics import TrainingStatistics

__all__ = [
    "FlowModuleMixin",
    "GaussianBlur",
    "NonFiniteLossError",
    "PositionalFlows",
    "TrainingStatistics",
    "check_images",
    "check_top_k",
    "float32_scoring",
    "flow_pre_processor",
    "image_score",
    "upsample_maps",
    "warmup_cosine_factor",
    "warmup_cosine_scheduler",
]
